"""Reward-model inputs: labels only at each piece's last token (PRM steps, the ORM's response), -100 elsewhere."""

import pytest
import torch

from tinyr1.rewards.scoring import IGNORE, collate, encode, score_pieces


@pytest.fixture
def tok(tiny_model):
    return tiny_model[1]


def test_each_step_label_sits_on_the_steps_last_token(tok):
    prompt, steps = "Calculate 3 + 4.", ["3 + 4 = 7", "The answer is 7."]
    ids, ends = encode(tok, prompt, steps)
    # the text up to each end is exactly the prompt and the steps so far, each closed by its newline
    assert tok.decode(ids[: ends[0] + 1]) == "Calculate 3 + 4.\n\n3 + 4 = 7\n"
    assert tok.decode(ids[: ends[1] + 1]) == "Calculate 3 + 4.\n\n3 + 4 = 7\nThe answer is 7.\n"
    assert ends[1] == len(ids) - 1
    _, _, targets = collate([(ids, ends)], tok.pad_token_id, [[1.0, 0.0]])
    labelled = (targets[0] != IGNORE).nonzero().flatten().tolist()
    assert labelled == ends  # two labels, nowhere else
    assert targets[0, ends[0]] == 1.0 and targets[0, ends[1]] == 0.0


def test_orm_label_is_on_the_last_token_only_and_padding_is_ignored(tok):
    long = encode(tok, "Calculate 3 + 4.", ["3 + 4 = 7\nThe answer is 7."])
    short = encode(tok, "Calculate 1 + 1.", ["2"])
    input_ids, attention, targets = collate([long, short], tok.pad_token_id, [[1.0], [0.0]])
    assert input_ids.shape == targets.shape == (2, len(long[0]))
    assert (targets != IGNORE).sum(-1).tolist() == [1, 1]
    assert targets[0, len(long[0]) - 1] == 1.0 and targets[1, len(short[0]) - 1] == 0.0
    assert attention[1].sum() == len(short[0]) and (input_ids[1, len(short[0]) :] == tok.pad_token_id).all()


def test_max_length_keeps_the_end_and_drops_labels_before_the_cut(tok):
    full, full_ends = encode(tok, "Calculate 3 + 4.", ["3 + 4 = 7", "The answer is 7."])
    keep = len(full) - full_ends[0] - 1  # the cut falls just after the first step's end token
    ids, ends = encode(tok, "Calculate 3 + 4.", ["3 + 4 = 7", "The answer is 7."], max_length=keep)
    assert ids == full[-keep:]
    assert ends == [None, keep - 1]
    _, _, targets = collate([(ids, ends)], tok.pad_token_id, [[1.0, 0.0]])
    assert (targets != IGNORE).sum() == 1 and targets[0, keep - 1] == 0.0


def test_scores_are_the_logits_at_piece_ends_whatever_the_batching(tiny_model, tok):
    from tinyr1.models.heads import scorer_from_causal
    from tinyr1.rewards.scoring import token_logits

    torch.manual_seed(0)
    model = scorer_from_causal(tiny_model[0]).eval()
    prompts, pieces = ["Calculate 1 + 1.", "Calculate 3 + 4."], [["1 + 1 = 2", "so 2"], ["3 + 4 = 7"]]
    batched = score_pieces(model, tok, prompts, pieces, batch_size=2)
    alone = score_pieces(model, tok, prompts[1:], pieces[1:], batch_size=1)
    ids, ends = encode(tok, prompts[0], pieces[0])
    with torch.no_grad():
        logits = token_logits(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
    assert batched[0] == pytest.approx([logits[e].item() for e in ends], abs=1e-5)
    assert batched[1] == pytest.approx(alone[0], abs=1e-5)  # right padding changes nothing
    assert score_pieces(model, tok, ["q"], [[]]) == [[]]
