"""Reward-model training items: preference pairs and the resumable item order."""

from tinyr1.rm.data import orm_examples, preference_pairs


def test_bradley_terry_pairs_stay_within_a_problem(responses_file):
    import random

    examples = orm_examples(responses_file)
    pairs = preference_pairs(examples, max_pairs=16, rng=random.Random(0))
    assert sorted(pairs) == [(0, 1), (2, 3), (4, 5), (6, 7)]  # (right, wrong) of q1 .. q4


def test_item_order_resumes_with_the_batches_of_an_uninterrupted_run():
    from tinyr1.rm.data import ItemOrder

    items = list(range(7))
    whole = ItemOrder(items, seed=3, batch_size=3)
    batches = [whole.take() for _ in range(8)]  # epochs of 3 + 3 + 1 items
    assert [len(b) for b in batches] == [3, 3, 1, 3, 3, 1, 3, 3]
    assert sorted(sum(batches[:3], [])) == items and sum(batches[:3], []) != sum(batches[3:6], [])  # reshuffled
    cut = ItemOrder(items, seed=3, batch_size=3)
    for _ in range(4):
        cut.take()
    resumed = ItemOrder(items, seed=3, batch_size=3)
    resumed.load_state_dict(cut.state_dict())  # epoch 1, after its first batch
    assert [resumed.take() for _ in range(4)] == batches[4:]
