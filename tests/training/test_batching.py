"""Micro-batches count sequences: packed rows count every example they hold."""

import torch

from tinyr1.training.batching import example_micro_batches, first_fit_decreasing, micro_batches


def test_one_example_per_row_is_exactly_micro_batches():
    lengths = torch.tensor([5, 9, 3, 9, 7, 1, 4])
    got = example_micro_batches([1] * 7, 3, lengths)
    want = micro_batches(7, 3, lengths)
    assert [b.tolist() for b in got] == [b.tolist() for b in want]


def test_packed_rows_never_exceed_the_example_budget():
    # rows holding 3, 1, 2, 2, 5 examples; lengths put them in the order 0, 4, 2, 3, 1
    examples, lengths = [3, 1, 2, 2, 5], torch.tensor([50, 10, 30, 20, 40])
    batches = [b.tolist() for b in example_micro_batches(examples, 4, lengths)]
    assert batches == [[0], [4], [2, 3], [1]]  # 3 | 5 (over budget: alone) | 2 + 2 | 1
    assert all(sum(examples[r] for r in b) <= 4 or len(b) == 1 for b in batches)


def test_first_fit_decreasing_fills_rows_up_to_capacity():
    # lengths 5, 4, 3, 3, 2 into rows of 8: 5 -> row0 (3 free), 4 -> row1 (4 free), 3 -> row0 (0 free),
    # 3 -> row1 (1 free), 2 -> row2
    assert first_fit_decreasing([3, 5, 2, 4, 3], 8) == [[1, 0], [3, 4], [2]]
