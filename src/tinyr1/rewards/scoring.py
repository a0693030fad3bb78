"""Reward-model inputs and read-outs: one prompt and its pieces as tokens, a label at each piece's end.

An ORM example and a PRM example have one shape: a `prompt` (the question as plain text) and its
pieces, the reasoning steps for a PRM or `[response]` for an ORM. The sequence is

    prompt + "\\n\\n" + piece_1 + "\\n" + piece_2 + "\\n" + ... + piece_S + "\\n"

with each piece (and its closing newline) tokenised on its own, so a piece always ends on a token
of its own: its last token (the one holding the closing newline) is where its label goes in
training and where its score is read, every other token is ignored (label -100). This is the
layout of TRL's `PRMTrainer` (step separator "\\n") and of Math-Shepherd's step tags, without a
special tag token; a file of PRM800K or Math-Shepherd steps encodes the same way as ours.

    >>> ids, ends = encode(tokenizer, "What is 2+3?", ["2 + 3 = 5", "So 5."])  # doctest: +SKIP
    >>> [tokenizer.decode(ids[e]) for e in ends]                               # doctest: +SKIP
    ['\\n', '.\\n']

`max_length` keeps the *last* tokens (the end of the response, which an ORM needs), dropping the
labels of steps that fall before the cut. Scores are the model's logits at the ends; the reward
functions (`rewards.orm`, `rewards.prm`) turn them into probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

PROMPT_SEPARATOR = "\n\n"
STEP_SEPARATOR = "\n"
IGNORE = -100.0


def encode(tokenizer, prompt: str, pieces: Sequence[str], max_length: int | None = None) -> tuple[list[int], list[int | None]]:
    """Token ids of `prompt` and `pieces`, and the index of each piece's last token.

    Returns `(ids, ends)`: `ends[k]` indexes `ids`, or is None when piece k was cut off by
    `max_length` (only the last `max_length` tokens are kept).
    """
    ids = list(tokenizer(prompt + PROMPT_SEPARATOR, add_special_tokens=False)["input_ids"])
    ends: list[int | None] = []
    for piece in pieces:
        ids += tokenizer(piece + STEP_SEPARATOR, add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    cut = max(0, len(ids) - max_length) if max_length else 0
    return ids[cut:], [e - cut if e - cut >= 0 else None for e in ends]


def collate(rows: Sequence[tuple[list[int], list[int | None]]], pad_id: int, labels: Sequence[Sequence[float]] | None = None):
    """Right-pad encoded rows into `input_ids`, `attention_mask` (n, T) and, with `labels`
    (one target in [0, 1] per piece), a float target tensor (n, T): the target at each kept
    piece end, -100 everywhere else."""
    width = max(len(ids) for ids, _ in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    targets = torch.full((n, width), IGNORE)
    for i, (ids, ends) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, : len(ids)] = 1
        if labels is not None:
            for end, y in zip(ends, labels[i], strict=True):
                if end is not None:
                    targets[i, end] = float(y)
    return input_ids, attention, (targets if labels is not None else None)


def token_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """The scorer's logit at every position, (n, T) float32, on the model's device."""
    device = next(model.parameters()).device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False).logits
    return logits[..., 0].float()


@torch.no_grad()
def score_pieces(model, tokenizer, prompts: Sequence[str], pieces: Sequence[Sequence[str]], batch_size: int = 16,
                 progress: bool = False) -> list[list[float]]:
    """Logit at the end of every piece: N prompts with S_i pieces each -> N lists of S_i floats.

    Rows are batched by length (less padding); no truncation. A row without pieces gives [].
    `progress`: a bar counting the rows scored (`rm eval` on a thousand responses takes minutes).
    """
    encoded = [encode(tokenizer, p, s) for p, s in zip(prompts, pieces, strict=True)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out: list[list[float]] = [[] for _ in encoded]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(order), desc="scoring", unit="response", disable=not progress)
    for start in range(0, len(order), batch_size):
        batch = [i for i in order[start : start + batch_size] if encoded[i][1]]
        if batch:
            input_ids, attention, _ = collate([encoded[i] for i in batch], pad)
            logits = token_logits(model, input_ids, attention).cpu()
            for row, i in enumerate(batch):
                out[i] = [float(logits[row, e]) for e in encoded[i][1]]
        bar.update(len(order[start : start + batch_size]))
    bar.close()
    return out
