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

A run folder like every recipe's (`training.run`): config.yaml, metrics.jsonl (`loss/<objective>`,
grad norm, learning rate per step), checkpoint-<step>/ every `train.save_every` steps,
summary.json, and the reward model in final/ (the folder itself names it: `orm:runs/rm`).
`tinyr1 rm train --resume runs/rm` continues exactly from the last checkpoint.

Departures: no value head on the policy (the reward model is its own model, as in DeepSeekMath);
no special step tag token (a newline closes each step); examples longer than `max_length` keep
their last tokens.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyr1 import distributed as D
from tinyr1.config import RMTrainJob
from tinyr1.errors import UserError
from tinyr1.models.heads import META_FILE, build_scorer, save_scorer
from tinyr1.rewards.scoring import IGNORE, collate, encode, token_logits
from tinyr1.rm.data import Example, ItemOrder, orm_examples, preference_pairs, prm_examples
from tinyr1.tracking import METRICS_FILE, read_metrics
from tinyr1.training.optim import NonFiniteGuard, build_optimizer
from tinyr1.training.precision import resolve_bf16
from tinyr1.training.run import Run, Settings, State

# ----------------------------------------------------------------------------- losses


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


def out_of_time(run: Run, max_minutes: float | None) -> bool:
    """The time limit, decided alike on every process (one all-reduce), so that all stop together."""
    if max_minutes is None:
        return False
    return bool(D.all_reduce_max(int(run.elapsed >= 60 * max_minutes)))


def train_reward_model(job: RMTrainJob, kind: str, resume: bool = False) -> dict:
    """Train an ORM (`kind="orm"`) or PRM (`"prm"`) as `job` says in the run folder `train.out`
    (or continue it from its last checkpoint); returns the summary (every process)."""
    t = job.train
    objective = t.objective if kind == "orm" else "bce"
    out = Path(t.out)
    if not resume and ((out / "config.yaml").is_file() or (out / META_FILE).is_file()):
        raise UserError(f"{out} already holds a reward model run; continue it with `tinyr1 {'rm' if kind == 'orm' else 'prm'} "
                        f"train --resume {out}` or pick another train.out (--out)")
    # setup: data first (read and checked before any model loads), then a token scorer on the base LM
    examples = orm_examples(t.data) if kind == "orm" else prm_examples(t.data, soft=t.target == "soft")
    job = resolve_bf16(job)  # optim.bf16=auto: bfloat16 autocast only where the hardware has it
    torch.manual_seed(t.seed)
    with D.main_first():  # rank 0 first: a model converted or downloaded once is cached before the others look
        model, tokenizer = build_scorer(job.model, job.lora)
    encoded = [encode(tokenizer, ex.prompt, ex.pieces, t.max_length) for ex in examples]
    make_items, step_fn = LOSSES[objective]
    items = make_items(job, examples, encoded)
    per_epoch = math.ceil(len(items) / t.batch_size)
    total = min(per_epoch * t.epochs, t.max_steps or per_epoch * t.epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = build_optimizer(params, job.optim, total)
    model, optimizer = D.prepare(model, optimizer)  # DDP (or the accelerate config's engine) under several processes
    order = ItemOrder(items, t.seed, t.batch_size)  # the same shuffled batches on every process
    settings = Settings(steps=total, seed=t.seed, save_every=t.save_every, progress=t.progress, desc=f"{kind} train")
    run = Run(out, job, settings, State(model, tokenizer, optimizer, scheduler, order), resume)
    if resume and run.extra.get("kind", kind) != kind:
        raise UserError(f"--resume {t.out}: that run trains a {run.extra['kind']} reward model, not a {kind}")
    losses = [row[f"loss/{objective}"] for row in read_metrics(out / METRICS_FILE)] if resume and D.is_main() else []
    guard = NonFiniteGuard(job.optim.on_nonfinite)  # NaN / inf losses, gradient norms (optim.on_nonfinite)
    model.train()
    for step in run.steps():
        # 1. batch: this process's contiguous share of the step's examples (or pairs)
        batch = order.take()
        mine = list(D.shard(batch))
        # 2. loss and backward at the labelled positions (a process without items still joins the all-reduce)
        optimizer.zero_grad(set_to_none=True)
        loss = step_fn(model, job, mine or batch[:1], examples, encoded, tokenizer.pad_token_id, ghost=not mine)
        # 3. update
        grad_norm = D.clip_grad_norm_(params, job.optim.grad_clip if job.optim.grad_clip > 0 else float("inf"))
        skipped = guard.skipped
        if guard.allows(step, {f"loss/{objective}": loss}, grad_norm):  # optim.on_nonfinite
            optimizer.step()
            guard.check_weights(step, params)
        scheduler.step()
        # 4. log: each process's loss is its share x W, so their mean is the step's loss
        loss = D.reduce_dict({"loss": loss}, "mean")["loss"]
        losses.append(loss)
        run.end_step(step, {f"loss/{objective}": loss, "loss/grad_norm": float(grad_norm), "optim/lr": scheduler.get_last_lr()[0],
                            "optim/skipped": guard.skipped - skipped}, extra={"kind": kind})
        if out_of_time(run, t.max_minutes):
            break
    # save: the scorer, its tokenizer and metadata in final/ (rank 0), then summary.json
    base = str(Path(job.model.name).resolve()) if Path(job.model.name).expanduser().exists() else job.model.name
    describe = {"kind": kind, "objective": objective, "target": t.target if kind == "prm" else "hard", "base": base,
                "lora_rank": job.lora.rank, "data": str(t.data), "examples": len(examples), "items": len(items),
                "loss_first_step": losses[0] if losses else None,
                "loss_last_5_steps": sum(losses[-5:]) / len(losses[-5:]) if losses else None}

    def save(summary: dict) -> None:
        weights = D.full_state_dict(model, main_only=True)  # every process: sharded weights are gathered
        if D.is_main():
            scorer = D.unwrap(model).eval()
            save_scorer(scorer, tokenizer, out / "final", summary | {"train_seconds": summary["wall_time_s"]}, state_dict=weights)

    summary = run.finish(save=save, summary=describe)
    return summary | {"train_seconds": summary["wall_time_s"]}
