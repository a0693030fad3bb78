"""Micro-batches: which rows go through the model together.

Every function returns lists of row indices (or rows of examples), never tensors: the caller
slices its own tensors. `optim.micro_batch_size` counts sequences everywhere; rows of similar
length go together so little compute is spent on padding.
"""

from __future__ import annotations

import torch


def micro_batches(n: int, size: int, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Row indices split into micro-batches of about `size`, similar lengths together (less padding)."""
    order = torch.argsort(lengths, descending=True)
    return [order[i : i + size] for i in range(0, n, size)]


def group_micro_batches(n: int, group_size: int, size: int, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Row indices in micro-batches of whole groups (about `size` rows, at least one group), groups
    of similar longest rows together; each micro-batch keeps its groups' rows contiguous."""
    per = max(1, size // group_size)
    longest = lengths.view(-1, group_size).max(-1).values
    order = torch.argsort(longest, descending=True)
    return [torch.cat([torch.arange(j * group_size, (j + 1) * group_size) for j in order[i : i + per].tolist()])
            for i in range(0, len(order), per)]


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indices grouped into rows of at most `capacity` tokens, longest examples placed first."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        j = next((j for j, free in enumerate(room) if free >= lengths[i]), len(rows))
        if j == len(rows):
            rows.append([])
            room.append(capacity)
        rows[j].append(i)
        room[j] -= lengths[i]
    return rows


def example_micro_batches(examples_per_row: list[int], size: int, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Row indices in micro-batches holding at most `size` examples each (at least one row), rows of
    similar `lengths` together. Rows of packed examples count every example they hold; with one
    example per row this is exactly `micro_batches`."""
    order = torch.argsort(lengths, descending=True)
    batches, current, count = [], [], 0
    for r in order.tolist():
        if current and count + examples_per_row[r] > size:
            batches.append(torch.tensor(current, dtype=torch.long))
            current, count = [], 0
        current.append(r)
        count += examples_per_row[r]
    if current:
        batches.append(torch.tensor(current, dtype=torch.long))
    return batches
