"""Reward-model training, ORM and PRM in one loop: examples -> token scorer -> losses at piece ends -> save.

    tinyr1 rm train --data runs/rm_data/responses.jsonl --out runs/rm            # ORM, pointwise BCE
    tinyr1 rm train --objective bradley_terry --out runs/rm-bt               # ORM, pairs
    tinyr1 prm train --data runs/rm_data/steps.jsonl --out runs/prm               # PRM, a label per step

Both train one token-scoring model (`models.heads`, a linear head on a small LM, LoRA or full)
on `Example`s: a prompt, its pieces, and a target in [0, 1] at each piece's last token
(`rewards.scoring`); every other token is ignored. The ORM's pieces are `[response]`, one label
at the last token (Cobbe et al. 2021's verifier, DeepSeekMath's ORM); the PRM's are the steps,
a label at each step's end (Math-Shepherd's per-step classification, Wang et al. 2024).

Losses, chosen in one place (`LOSSES`):
- `bce`: binary cross-entropy at every labelled position, summed over the optimizer step and
  divided by the step's count of labelled positions (micro-batching gives the full-batch loss).
  Soft targets (the fraction of Math-Shepherd continuations that were right) are allowed.
- `bradley_terry` (ORM): for pairs (correct, incorrect) responses to the same problem,
  -log sigmoid(s_correct - s_incorrect), averaged over the step's pairs (a reward-model loss on
  the grader's verdicts instead of human preferences).

Under `accelerate launch` / `torchrun` (W processes, `tinyr1.distributed`): every process reads
the whole file, builds the same scorer (same seed) and draws the same shuffled order; of each
step's `train.batch_size` examples (or pairs) it keeps its contiguous slice (`distributed.shard`),
divides its loss by the step's GLOBAL count over W (`distributed.loss_divisor`), and DDP averages
the W gradients, which gives exactly the 1-process full-batch gradient. Metrics are reduced over
processes; only rank 0 prints and writes `train.out`.

Departures: no value head on the policy (the reward model is its own model, as in DeepSeekMath);
no special step tag token (a newline closes each step); examples longer than `max_length` keep
their last tokens.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyr1 import distributed as D
from tinyr1.errors import UserError
from tinyr1.io import read_jsonl
from tinyr1.models.heads import META_FILE, build_scorer, save_scorer
from tinyr1.rewards.scoring import IGNORE, collate, encode, token_logits
from tinyr1.rm_config import RMTrainJob


@dataclass
class Example:
    """One scored sequence: a target per piece, `group` = the problem (pairs stay within it)."""

    prompt: str
    pieces: list[str]  # S steps (PRM) or [response] (ORM)
    targets: list[float]  # S targets in [0, 1]
    group: str


# ----------------------------------------------------------------------------- 1. data


def read_responses(path) -> list[dict]:
    """Lines {prompt, completion, label[, problem_id, extracted]} (what `rm collect` writes)."""
    rows = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        for key, kind in (("prompt", str), ("completion", str), ("label", bool)):
            if not isinstance(row.get(key), kind):
                what = "true or false" if kind is bool else "a string"
                raise UserError(f'{where}: key "{key}" must be {what}; each line needs "prompt", "completion", "label"')
        rows.append(row)
    if not rows:
        raise UserError(f'{path}: no lines (expected JSON lines with "prompt", "completion", "label")')
    return rows


def orm_examples(path) -> list[Example]:
    return [Example(r["prompt"], [r["completion"]], [float(r["label"])], str(r.get("problem_id", r["prompt"])))
            for r in read_responses(path)]


def prm_examples(path, soft: bool = False) -> list[Example]:
    from tinyr1.rewards.prm import read_stepwise

    return [Example(r["prompt"], r["completions"], [float(y) for y in (r["soft_labels"] if soft else r["labels"])],
                    str(r.get("problem_id", r["prompt"]))) for r in read_stepwise(path, need_soft=soft)]


def preference_pairs(examples: list[Example], max_pairs: int, rng: random.Random) -> list[tuple[int, int]]:
    """(correct, incorrect) index pairs of ORM examples of the same problem, at most `max_pairs` each."""
    groups: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, ex in enumerate(examples):
        groups[ex.group][0 if ex.targets[0] >= 0.5 else 1].append(i)
    pairs = []
    for good, bad in groups.values():
        combos = [(g, b) for g in good for b in bad]
        pairs += rng.sample(combos, min(max_pairs, len(combos)))
    return pairs


# ----------------------------------------------------------------------------- 2. losses


def bce_loss(model, encoded, examples: list[Example], pad_id: int, count: float, bf16: bool = False) -> torch.Tensor:
    """Sum of BCE over the labelled positions of these rows, divided by `count` (the step's total)."""
    input_ids, attention, targets = collate(encoded, pad_id, [ex.targets for ex in examples])
    logits = token_logits(model, input_ids, attention, bf16)
    targets = targets.to(logits.device)
    mask = targets != IGNORE
    return F.binary_cross_entropy_with_logits(logits[mask], targets[mask], reduction="sum") / count


def bradley_terry_loss(model, chosen, rejected, pad_id: int, count: float, bf16: bool = False) -> torch.Tensor:
    """Sum over pairs of -log sigmoid(s_chosen - s_rejected), divided by `count`; scores at the last piece end."""
    rows = [*chosen, *rejected]
    input_ids, attention, _ = collate(rows, pad_id)
    logits = token_logits(model, input_ids, attention, bf16)
    ends = torch.tensor([ends[-1] for _, ends in rows], device=logits.device)
    scores = logits[torch.arange(len(rows), device=logits.device), ends]
    n = len(chosen)
    return -F.logsigmoid(scores[:n] - scores[n:]).sum() / count


def _bce_items(job, examples, encoded):
    return list(range(len(examples)))


def _bt_items(job, examples, encoded):
    pairs = preference_pairs(examples, job.train.max_pairs, random.Random(job.train.seed))
    if not pairs:
        raise UserError(f"{job.train.data}: no problem has both a correct and an incorrect response; "
                        "bradley_terry needs such pairs (sample more per problem, or use objective bce)")
    return pairs


def _chunks(items: list, size: int) -> list[list]:
    return [items[k : k + size] for k in range(0, len(items), size)]


# A step function gets this process's share of the step's items (all of them in one process) and
# accumulates the gradient of its part of the step's loss. The loss divisor is the step's GLOBAL
# count (every process's labelled positions, or pairs) divided by W, because DDP AVERAGES the W
# processes' gradients (`distributed.loss_divisor`): (1/W) * sum_r W * loss_r / global = the full-
# batch loss. `ghost`: this process has no item this step (a last batch smaller than W); it still
# runs one forward and backward (on a stand-in item, scaled by 0) so that it joins the all-reduce.
# Only the last micro-batch's backward all-reduces (`distributed.sync_last`).


def _bce_step(model, job, items, examples, encoded, pad, ghost: bool = False):
    count = D.loss_divisor(0 if ghost else sum(e is not None for i in items for e in encoded[i][1]))
    total = 0.0
    for mb in D.sync_last(model, _chunks(items, job.optim.micro_batch_size)):
        loss = bce_loss(model, [encoded[i] for i in mb], [examples[i] for i in mb], pad, count, job.optim.bf16)
        loss = loss * 0.0 if ghost else loss
        D.backward(loss)
        total += loss.item()
    return total


def _bt_step(model, job, items, examples, encoded, pad, ghost: bool = False):
    count = D.loss_divisor(0 if ghost else len(items))
    total = 0.0
    for mb in D.sync_last(model, _chunks(items, max(1, job.optim.micro_batch_size // 2))):  # two sequences per pair
        loss = bradley_terry_loss(model, [encoded[c] for c, _ in mb], [encoded[r] for _, r in mb], pad, count, job.optim.bf16)
        loss = loss * 0.0 if ghost else loss
        D.backward(loss)
        total += loss.item()
    return total


# The objective, chosen in this one place: (training items, one optimizer step's loss and backward).
LOSSES = {"bce": (_bce_items, _bce_step), "bradley_terry": (_bt_items, _bt_step)}


@torch.no_grad()
def dataset_loss(model, tokenizer, examples: list[Example], max_length: int = 512, batch_size: int = 8) -> float:
    """Mean BCE over every labelled position of `examples` (model in eval mode)."""
    encoded = [encode(tokenizer, ex.prompt, ex.pieces, max_length) for ex in examples]
    count = float(sum(e is not None for _, ends in encoded for e in ends)) or 1.0
    model.eval()
    return sum(bce_loss(model, encoded[k : k + batch_size], examples[k : k + batch_size], tokenizer.pad_token_id, count).item()
               for k in range(0, len(examples), batch_size))


# ----------------------------------------------------------------------------- 3. the loop


def _schedule(optimizer, job: RMTrainJob, total: int):
    o = job.optim

    def factor(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / (o.warmup_steps + 1)
        if o.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _out_of_time(t0: float, max_minutes: float | None) -> bool:
    """The time limit, decided alike on every process (one all-reduce), so that all stop together."""
    if max_minutes is None:
        return False
    return bool(D.all_reduce_max(int(time.perf_counter() - t0 >= 60 * max_minutes)))


def train_reward_model(job: RMTrainJob, kind: str) -> dict:
    """Train an ORM (`kind="orm"`) or PRM (`"prm"`) as `job` says; returns the summary it saves
    (rank 0 writes it; under several processes every process returns it)."""
    from tqdm.auto import tqdm

    from tinyr1.io import write_json_atomic, write_jsonl

    t = job.train
    out = Path(t.out)
    if (out / META_FILE).is_file():
        raise UserError(f"{out} already holds a reward model; pick another train.out (--out) or delete it")
    objective = t.objective if kind == "orm" else "bce"
    if t.batch_size < D.world_size():
        raise UserError(f"train.batch_size ({t.batch_size}) is smaller than the number of processes ({D.world_size()}): "
                        "each process needs at least one example (or pair) per step")
    # 1. data (read and checked before any model loads)
    examples = orm_examples(t.data) if kind == "orm" else prm_examples(t.data, soft=t.target == "soft")
    # 2. model: a token scorer on the base LM
    torch.manual_seed(t.seed)
    with D.main_first():  # rank 0 first: a model converted or downloaded once is cached before the others look
        model, tokenizer = build_scorer(job.model, job.lora)
    encoded = [encode(tokenizer, ex.prompt, ex.pieces, t.max_length) for ex in examples]
    make_items, step_fn = LOSSES[objective]
    items = make_items(job, examples, encoded)
    per_epoch = math.ceil(len(items) / t.batch_size)
    total = min(per_epoch * t.epochs, t.max_steps or per_epoch * t.epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=job.optim.lr, weight_decay=job.optim.weight_decay)
    scheduler = _schedule(optimizer, job, total)
    model, optimizer = D.prepare(model, optimizer)  # DDP (or the accelerate config's engine) under several processes
    # 3. loop: shuffled batches (the same order on every process), one optimizer step each
    rng, metrics, step, t0 = random.Random(t.seed), [], 0, time.perf_counter()
    bar = tqdm(total=total, desc=f"{kind} train", unit="step", disable=not (t.progress and D.is_main()))
    model.train()
    while step < total and not _out_of_time(t0, t.max_minutes):
        order = rng.sample(items, len(items))
        for k in range(0, len(order), t.batch_size):
            optimizer.zero_grad(set_to_none=True)
            batch = order[k : k + t.batch_size]
            mine = list(D.shard(batch))  # this process's contiguous share of the step's examples (or pairs)
            loss = step_fn(model, job, mine or batch[:1], examples, encoded, tokenizer.pad_token_id, ghost=not mine)
            grad_norm = D.clip_grad_norm_(params, job.optim.grad_clip if job.optim.grad_clip > 0 else float("inf"))
            optimizer.step()
            scheduler.step()
            step += 1
            # each process's loss is its share x W: their mean is the step's loss
            loss = D.reduce_dict({"loss": loss}, "mean")["loss"]
            metrics.append({"step": step, "loss": loss, "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0],
                            "time/elapsed": round(time.perf_counter() - t0, 2)})
            bar.set_postfix_str(f"loss={loss:.3f}", refresh=False)
            bar.update(1)
            if step >= total or _out_of_time(t0, t.max_minutes):
                break
    bar.close()
    # 4. save (rank 0): the scorer, its tokenizer and metadata, then the loss curve and summary
    model = D.unwrap(model)
    model.eval()
    base = str(Path(job.model.name).resolve()) if Path(job.model.name).expanduser().exists() else job.model.name
    first, last = metrics[0]["loss"], sum(m["loss"] for m in metrics[-5:]) / len(metrics[-5:])
    summary = {"kind": kind, "objective": objective, "target": t.target if kind == "prm" else "hard", "base": base,
               "lora_rank": job.lora.rank, "data": str(t.data), "examples": len(examples), "items": len(items), "steps": step,
               "loss_first_step": first, "loss_last_5_steps": last, "train_seconds": round(time.perf_counter() - t0, 1)}
    weights = D.full_state_dict(model, main_only=True)  # every process: sharded weights are gathered
    if D.is_main():
        save_scorer(model, tokenizer, out, summary, state_dict=weights)
        write_jsonl(out / "metrics.jsonl", metrics)
        write_json_atomic(out / "summary.json", summary)
    D.barrier()  # the folder is complete before any process returns
    return summary
