"""Shared builders for every training recipe: policy, optimizer, data stream, run folder, checkpoints.

Only the loop differs between algorithms (`grpo.py`, ...); everything a loop needs before its
first step, and the saving / resuming of its state, lives here.

Run folder layout (`runs/<name>/`):
    config.yaml            the resolved config of the run
    metrics.jsonl          one flat dict per step (and per held-out evaluation)
    samples.jsonl          a few completions per step with their rewards
    checkpoint-<step>/     save_pretrained model or adapter + tokenizer + trainer_state.pt
    final/                 the trained model or adapter (what `tinyr1 eval --model runs/<name>` loads)
    plots/*.png            reward, held-out accuracy, response length, KL against step
    summary.json           eval_before, eval_after, wall time

Under several processes (`tinyr1.distributed`) only rank 0 writes this folder; every process
takes its share of each step's problems (`take_share`) and loads checkpoints on resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from tinyr1 import distributed as D
from tinyr1.config import TrainJob, load_config, to_dict
from tinyr1.errors import UserError
from tinyr1.types import Problem, Rollout

# ----------------------------------------------------------------------------- model


def build_policy(job: TrainJob):
    """The trainable policy (float32 master weights) and its tokenizer.

    With `lora.rank > 0` the base weights are frozen and peft adapters train; the reference
    policy is then the same model with adapters disabled (`reference_logprobs`), never a copy.
    """
    from tinyr1.models.load import load_model

    # an adapter (e.g. a previous SFT run) is merged into its base, so new adapters train on top;
    # rank 0 loads first, so a model converted or downloaded once is cached before the others look
    with D.main_first():
        model, tokenizer = load_model(dataclasses.replace(job.model, dtype="float32"), merge_adapter=True)
    if job.lora.rank > 0:
        from peft import LoraConfig, get_peft_model

        targets = job.lora.target_modules
        peft_cfg = LoraConfig(
            r=job.lora.rank, lora_alpha=job.lora.alpha, lora_dropout=job.lora.dropout,
            target_modules="all-linear" if targets == ["all-linear"] else targets, task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, peft_cfg)
        except ValueError as e:
            raise UserError(f"config key 'lora.target_modules': {e}") from None
        if job.optim.bf16:
            frozen_base_to_bf16(model)
    else:
        model.requires_grad_(True)
    if job.optim.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if job.lora.rank > 0:
            model.enable_input_require_grads()
    model.config.use_cache = True
    return model, tokenizer


def frozen_base_to_bf16(model) -> int:
    """Store the frozen base weights under LoRA adapters in bfloat16, once; returns how many.

    Under bf16 autocast these weights are cast to bfloat16 anyway, but autocast does not cache
    casts of frozen weights: it recasts all of them in every forward of every micro-batch (~10%
    of an update step on the 135M model). The casts it would make are exactly these, so the
    results are identical, and the base takes half the memory. Outside autocast, hooks run these
    layers in bfloat16 and return the input's dtype, so every forward still works. The adapters,
    norms and embeddings stay float32.
    """
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in model.modules():
        if isinstance(module, LoraLayer):
            base = module.get_base_layer()
            if isinstance(base, torch.nn.Linear) and base.weight.dtype == torch.float32:
                base.to(torch.bfloat16)
                base.register_forward_pre_hook(_cast_in)
                base.register_forward_hook(_cast_out)
                count += 1
    return count


def _cast_in(module, args):
    x = args[0]
    if torch.is_autocast_enabled(x.device.type) or x.dtype == module.weight.dtype:
        return None  # autocast makes exactly this cast itself
    module._input_dtype = x.dtype
    return (x.to(module.weight.dtype), *args[1:])


def _cast_out(module, args, out):
    dtype = module.__dict__.pop("_input_dtype", None)
    return out.to(dtype) if dtype is not None else None


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model, job: TrainJob, extra_params: list[torch.nn.Parameter] = ()):
    """AdamW over the trainable parameters (plus `extra_params`, e.g. a value head) and a
    warm-up + constant/cosine LR schedule."""
    o = job.optim
    optimizer = torch.optim.AdamW([*trainable_parameters(model), *extra_params], lr=o.lr, weight_decay=o.weight_decay)
    steps, warm = job.run.steps, o.warmup_steps

    def factor(step: int) -> float:  # `step` counts optimizer steps already taken
        if step < warm:
            return (step + 1) / (warm + 1)
        if o.schedule == "cosine":
            progress = (step - warm) / max(1, steps - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------- data


class ProblemStream:
    """Training problems in a seeded order, reshuffled every epoch; its position is checkpointed."""

    def __init__(self, problems: list[Problem], seed: int):
        if not problems:
            raise UserError("the training split is empty; choose a larger data source or a smaller data.test_size")
        self.problems, self.seed = problems, seed
        self.epoch, self.pos = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[Problem]:
        out = []
        for _ in range(k):
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            out.append(self.problems[self._order[self.pos]])
            self.pos += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._shuffled(self.epoch)


def take_share(stream: ProblemStream, k: int) -> list[Problem]:
    """This process's `k` problems of the step (see `tinyr1.distributed`).

    Every process takes the step's problems of ALL processes from the stream, so every stream
    stays at the same position, and keeps its contiguous slice in rank order: rank 0 the first
    `k_0`, rank 1 the next `k_1`, ... In one process this is `stream.take(k)`.
    """
    counts = D.gather_objects(k)
    problems = stream.take(sum(counts))
    start = sum(counts[: D.rank()])
    return problems[start : start + k]


# ----------------------------------------------------------------------------- rollout and reward


def generate_rows(model, tokenizer, problems: list[Problem], job: TrainJob, shots, n: int, temperature: float) -> dict[str, list]:
    """Sample `n` responses per problem; returns row-aligned lists (N rows, grouped by problem)."""
    from tinyr1.data.prompts import render_prompt
    from tinyr1.rollout.sampler import SamplingParams, sample

    prompts = [render_prompt(p, job.prompt, tokenizer, shots) for p in problems]
    params = SamplingParams(job.sampling.max_new_tokens, temperature, job.sampling.top_p, n, job.sampling.batch_size)
    model.eval()
    out = sample(model, tokenizer, prompts, params)
    rows = dict(
        prompt_ids=[out.prompt_ids[i // n] for i in range(len(out.texts))], response_ids=out.response_ids,
        finished=out.finished, texts=out.texts, problems=[problems[i // n] for i in range(len(out.texts))],
    )
    if out.logprobs is not None:
        rows["sampler_logprobs"] = out.logprobs
    return rows


def score(rows: dict[str, list], reward_fns, timer: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total reward (N,) and each function's raw reward (N,); adds its seconds to `timer`."""
    t0 = time.perf_counter()
    per_fn = {name: torch.tensor(fn(rows["problems"], rows["texts"]), dtype=torch.float32) for name, (fn, _) in reward_fns.items()}
    total = sum(w * per_fn[name] for name, (_, w) in reward_fns.items())
    timer["reward"] = timer.get("reward", 0.0) + time.perf_counter() - t0
    return total, per_fn


def rollout_from_rows(rows: dict[str, list], group_size: int, pad_id: int) -> Rollout:
    rollout = build_rollout(rows["prompt_ids"], rows["response_ids"], rows["finished"], rows["problems"], rows["texts"],
                            group_size, pad_id)
    if "sampler_logprobs" in rows:  # the engine's log-probs, placed on the response positions
        rollout.sampler_logprobs = torch.zeros(rollout.input_ids.shape)
        for i, (p, lp) in enumerate(zip(rows["prompt_ids"], rows["sampler_logprobs"])):
            rollout.sampler_logprobs[i, len(p) : len(p) + len(lp)] = torch.tensor(lp, dtype=torch.float32)
    return rollout


def empty_rollout(pad_id: int) -> Rollout:
    """One row of a single pad token and no response token (loss and gradient 0): what a process
    left without groups trains on, so that it still joins the step's gradient all-reduce."""
    return build_rollout([[pad_id]], [[]], [True], [], [""], 1, pad_id)


def reference_logprobs(model, ref_model, rollout: Rollout, job: TrainJob) -> torch.Tensor:
    """Log-probs (N, T) of the reference policy: the adapters switched off, or the frozen copy."""
    out = torch.zeros(rollout.input_ids.shape)
    lengths = rollout.attention_mask.sum(-1)
    model = D.unwrap(model)  # no gradient here: the plain model, whose adapters can be switched off
    with torch.no_grad():
        for mb in micro_batches(rollout.num_sequences, job.optim.micro_batch_size, lengths):
            if ref_model is None:
                with model.disable_adapter():
                    lp, _ = sequence_logprobs(model, rollout.input_ids[mb], rollout.attention_mask[mb], job.optim.bf16,
                                              start=response_start(rollout.response_mask[mb]))
            else:
                lp, _ = sequence_logprobs(ref_model, rollout.input_ids[mb], rollout.attention_mask[mb], job.optim.bf16,
                                          start=response_start(rollout.response_mask[mb]))
            out[mb] = lp.cpu()
    return out


# ----------------------------------------------------------------------------- tensors


def build_rollout(prompt_ids: list[list[int]], response_ids: list[list[int]], finished: list[bool],
                  problems: list[Problem], texts: list[str], group_size: int, pad_id: int) -> Rollout:
    """Right-pad prompt+response rows into a `Rollout` (N, T). `prompt_ids` has one entry per row."""
    rows = [p + r for p, r in zip(prompt_ids, response_ids)]
    width = max(len(r) for r in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, width), dtype=torch.float32)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attention[i, : len(p) + len(r)] = 1
        response_mask[i, len(p) : len(p) + len(r)] = 1.0
    truncated = torch.tensor([not f for f in finished], dtype=torch.bool)
    return Rollout(input_ids, attention, response_mask, truncated, problems, texts, group_size)


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                      with_entropy: bool = False, start: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (N, T) aligned with `input_ids`, and entropies (N, T) or None.

    Only positions `start..` are computed (the others are 0): pass the first response position
    of the micro-batch and the 49k-vocabulary head and log-softmax never run over the prompts.
    The forward runs only up to the last real token (no compute on a padded tail), under
    bfloat16 autocast when `bf16`; log-probs are computed in float32.
    """
    from tinyr1.algorithms.logprobs import token_logprobs, token_logprobs_and_entropy

    lengths = attention_mask.sum(-1)
    width = int(lengths.max())
    start = max(1, min(start, width - 1))
    ids, mask = input_ids[:, :width], attention_mask[:, :width]
    # Right padding (every row's real tokens first, as in a Rollout) needs no mask: causal attention
    # already keeps real tokens off the padding after them, and positions count from 0 either way.
    # Without a mask, attention runs the causal kernel, which skips the masked half of the scores.
    right_padded = bool((mask == (torch.arange(width)[None] < lengths[:, None]).to(mask.dtype)).all())
    device = next(model.parameters()).device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        # logits for positions start-1 .. width-1: they predict tokens start .. width-1 (the last is unused)
        logits = model(input_ids=ids.to(device), attention_mask=None if right_padded else mask.to(device),
                       use_cache=False, logits_to_keep=width - start + 1).logits
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
    entropy = None
    if with_entropy:  # one pass over the logits for both
        out[:, start:width], ent = token_logprobs_and_entropy(logits[:, :-1], ids[:, start:].to(device))
        entropy = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
        entropy[:, start:width] = ent
    else:
        out[:, start:width] = token_logprobs(logits[:, :-1], ids[:, start:].to(device))
    return out, entropy


def shared_prompt_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor,
                           group_size: int, bf16: bool = False, with_entropy: bool = False,
                           prompt_model=None, rows_per_pass: int = 4) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sequence_logprobs` for whole groups of `group_size` rows that share one prompt (GRPO):
    each prompt runs through the model ONCE and the responses continue from its keys/values.
    Same numbers (up to float rounding) and same gradients (selecting cache rows is
    differentiable), with 1/G of the prompt compute.

    The responses run in passes of `rows_per_pass` rows of similar length, each over the cache
    rows of its prompts: one pass per group would pad every response to the group's longest,
    which costs about what sharing the prompt saves (measured: 8 x 8 rows, ~60-token prompts,
    40-128-token responses).

    Rows are grouped contiguously (rows g*G .. g*G+G-1 share a prompt), right-padded as in a
    Rollout. `prompt_model`: the module the prompt pass runs through (the plain module under DDP,
    so that the wrapper sees one forward per backward); `model` by default.
    """
    from transformers import DynamicCache

    from tinyr1.algorithms.logprobs import token_logprobs, token_logprobs_and_entropy
    from tinyr1.rollout.engine import last_position

    n, g = input_ids.shape[0], group_size
    lengths = attention_mask.sum(-1)
    resp_len = response_mask.sum(-1).long()
    prompt_len = (lengths - resp_len)[::g]  # (k,) one prompt per group
    k, p_max = n // g, int(prompt_len.max())
    device = next(model.parameters()).device
    # prompts left-padded to a common length (positions count from each prompt's first token)
    p_ids = torch.zeros((k, p_max), dtype=torch.long)
    p_mask = torch.zeros((k, p_max), dtype=torch.long)
    for j, p in enumerate(prompt_len.tolist()):
        p_ids[j, p_max - p :] = input_ids[j * g, :p]
        p_mask[j, p_max - p :] = 1
    uneven = bool((prompt_len != p_max).any())
    width = input_ids.shape[1]
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
    entropy = torch.zeros(input_ids.shape, dtype=torch.float32, device=device) if with_entropy else None
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        first = (prompt_model or model)(input_ids=p_ids.to(device), attention_mask=p_mask.to(device) if uneven else None,
                                         position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0).to(device), use_cache=True,
                                         logits_to_keep=last_position(p_ids))
        order = torch.argsort(resp_len, descending=True, stable=True)
        for chunk in order.split(rows_per_pass):
            rows, of = chunk.tolist(), (chunk // g).tolist()  # response rows and their prompts
            r_max = max(1, int(resp_len[chunk].max()))
            r_ids = torch.zeros((len(rows), r_max), dtype=torch.long)
            for a, i in enumerate(rows):
                p, r = int(prompt_len[of[a]]), int(resp_len[i])
                r_ids[a, :r] = input_ids[i, p : p + r]
            cache = DynamicCache()
            pick = torch.tensor(of, device=device)
            for layer, kv in enumerate(first.past_key_values.layers):  # each row's prompt keys/values
                cache.update(kv.keys.index_select(0, pick), kv.values.index_select(0, pick), layer)
            # left padding of a shorter prompt stays masked; right padding of responses needs no mask
            mask = torch.cat([p_mask[of], torch.ones((len(rows), r_max), dtype=torch.long)], 1) if uneven else None
            r_pos = prompt_len[of][:, None] + torch.arange(r_max)[None]
            logits = model(input_ids=r_ids.to(device), attention_mask=None if mask is None else mask.to(device),
                           position_ids=r_pos.to(device), past_key_values=cache, use_cache=True).logits
            # the prompt's last logits predict the first response token; the response's predict the rest
            heads = [first.logits.index_select(0, pick)[:, -1:], logits[:, :-1]]
            targets = [r_ids[:, :1].to(device), r_ids[:, 1:].to(device)]
            if with_entropy:
                parts = [token_logprobs_and_entropy(h, t) for h, t in zip(heads, targets)]
                lp, ent = torch.cat([x for x, _ in parts], 1), torch.cat([y for _, y in parts], 1)
            else:
                lp = torch.cat([token_logprobs(h, t) for h, t in zip(heads, targets)], 1)
            for a, i in enumerate(rows):  # response token t of row i sits at prompt_len + t
                p, r = int(prompt_len[of[a]]), min(int(resp_len[i]), width - int(prompt_len[of[a]]))
                out[i, p : p + r] = lp[a, :r]
                if with_entropy:
                    entropy[i, p : p + r] = ent[a, :r]
    return out, entropy


def shares_prompts(rollout: Rollout) -> bool:
    """True when each group's rows start with the same prompt (so `shared_prompt_logprobs` applies)."""
    g, n = rollout.group_size, rollout.num_sequences
    if g < 2 or n % g:
        return False
    prompt_len = rollout.attention_mask.sum(-1) - rollout.response_mask.sum(-1).long()
    for j in range(0, n, g):
        p = int(prompt_len[j])
        if bool((prompt_len[j : j + g] != p).any()) or bool((rollout.input_ids[j : j + g, :p] != rollout.input_ids[j, :p]).any()):
            return False
    return True


def group_micro_batches(n: int, group_size: int, size: int, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Row indices in micro-batches of whole groups (about `size` rows, at least one group), groups
    of similar longest rows together; each micro-batch keeps its groups' rows contiguous."""
    per = max(1, size // group_size)
    longest = lengths.view(-1, group_size).max(-1).values
    order = torch.argsort(longest, descending=True)
    return [torch.cat([torch.arange(j * group_size, (j + 1) * group_size) for j in order[i : i + per].tolist()])
            for i in range(0, len(order), per)]


def packed_sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                             with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sequence_logprobs` without padding: the micro-batch's sequences packed into rows as long
    as the longest (first-fit), one forward, results scattered back to the (N, T) layout.

    transformers keeps packed sequences apart when given position ids that restart at 0 and no
    attention mask (block-diagonal causal attention); `sft.check_packing` verifies a model does.
    Position 0 of every sequence gets 0, as in `sequence_logprobs`.
    """
    from tinyr1.algorithms.logprobs import token_logprobs, token_logprobs_and_entropy
    from tinyr1.recipes.sft import first_fit_decreasing

    lengths = attention_mask.sum(-1).tolist()
    width = max(lengths)
    rows = first_fit_decreasing(lengths, width)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros_like(ids)
    place = []  # (sequence, packed row, offset)
    for k, row in enumerate(rows):
        col = 0
        for i in row:
            ids[k, col : col + lengths[i]] = input_ids[i, : lengths[i]]
            positions[k, col : col + lengths[i]] = torch.arange(lengths[i])
            place.append((i, k, col))
            col += lengths[i]
        positions[k, col:] = torch.arange(width - col)  # the tail is a segment of its own
    device = next(model.parameters()).device
    ids = ids.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, position_ids=positions.to(device), use_cache=False).logits
    if with_entropy:
        lp, ent = token_logprobs_and_entropy(logits[:, :-1], ids[:, 1:])
    else:
        lp, ent = token_logprobs(logits[:, :-1], ids[:, 1:]), None
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=device)
    entropy = torch.zeros(input_ids.shape, dtype=torch.float32, device=device) if with_entropy else None
    for i, k, col in place:  # lp[k, j] is the log-prob of packed token j + 1
        out[i, 1 : lengths[i]] = lp[k, col : col + lengths[i] - 1]
        if with_entropy:
            entropy[i, 1 : lengths[i]] = ent[k, col : col + lengths[i] - 1]
    return out, entropy


def response_start(response_mask: torch.Tensor) -> int:
    """The first position holding a response token in any row of (N, T) `response_mask` (1 if none)."""
    has = response_mask.sum(-1) > 0
    return int(response_mask[has].argmax(-1).min()) if has.any() else 1


def micro_batches(n: int, size: int, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Row indices split into micro-batches of about `size`, similar lengths together (less padding)."""
    order = torch.argsort(lengths, descending=True)
    return [order[i : i + size] for i in range(0, n, size)]


# ----------------------------------------------------------------------------- run folder


def new_run_dir(job: TrainJob) -> Path:
    name = job.run.name or f"{job.algorithm}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(job.run.output_dir) / name
    if (run_dir / "config.yaml").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(job), sort_keys=False))
    return run_dir


def load_run_config(run_dir: Path, overrides: dict[str, Any]) -> TrainJob:
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: no config.yaml there (not a tinyr1 run folder)")
    return load_config(TrainJob, run_dir / "config.yaml", overrides)


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.pt").is_file()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[1])) if ckpts else None


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, stream: ProblemStream,
                    elapsed: float, keep: int = 2, extra: dict[str, Any] | None = None) -> Path:
    """Model/adapter + tokenizer (save_pretrained) and everything needed to continue exactly.

    Called on every process: their RNG states are gathered (`rng_ranks`, several processes only),
    so are sharded weights and optimizer state (FSDP2, ZeRO-3: the files hold the whole tensors,
    as one process writes them), and rank 0 writes; the others wait until the checkpoint is complete.
    """
    path = run_dir / f"checkpoint-{step}"
    rng = dict(torch=torch.get_rng_state(), python=random.getstate(),
               cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    rng_ranks = D.gather_objects(rng)
    weights = D.full_state_dict(model, main_only=True)
    optimizer_state = D.full_optimizer_state(optimizer, main_only=True)
    if D.is_main():
        tmp = run_dir / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        D.unwrap(model).save_pretrained(tmp, state_dict=weights)  # peft keeps the adapter's keys of it
        tokenizer.save_pretrained(tmp)
        state = dict(
            step=step, elapsed=elapsed, optimizer=optimizer_state, scheduler=scheduler.state_dict(),
            stream=stream.state_dict(), rng_torch=rng["torch"], rng_python=rng["python"], rng_cuda=rng["cuda"],
            extra=extra or {}, **({"rng_ranks": rng_ranks} if len(rng_ranks) > 1 else {}),
        )
        torch.save(state, tmp / "trainer_state.pt")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)  # a crash mid-save never leaves a half checkpoint that resume would pick
        for old in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    D.barrier()
    return path


def load_checkpoint(path: Path, model, optimizer, scheduler, stream: ProblemStream) -> tuple[int, float, dict[str, Any]]:
    """Restore weights, optimizer, schedule, data position and RNG; returns (step, elapsed, extra).

    Every process loads the same file; each takes back its own RNG state when the checkpoint was
    saved by as many processes (otherwise rank r > 0 reseeds from the step and r). Sharded models
    (FSDP2) keep their shard of the whole weights and optimizer state the file holds.
    """
    from safetensors.torch import load_file

    model = D.unwrap(model)
    weights = path / ("adapter_model.safetensors" if (path / "adapter_config.json").is_file() else "model.safetensors")
    with D.loading_full(model):
        if hasattr(model, "peft_config"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, load_file(weights))
        else:
            model.load_state_dict(load_file(weights), strict=False)
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    D.load_optimizer_state(optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stream.load_state_dict(state["stream"])
    rng = dict(torch=state["rng_torch"], python=state["rng_python"], cuda=state["rng_cuda"])
    if len(state.get("rng_ranks", [rng])) == D.world_size():
        rng = state.get("rng_ranks", [rng])[D.rank()]
    elif D.rank() > 0:  # resumed on another number of processes: fresh, distinct noise per rank
        torch.manual_seed(state["step"] * 1009 + D.rank())
        random.seed(state["step"] * 1009 + D.rank())
        rng = None
    if rng is not None:
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return state["step"], state["elapsed"], state.get("extra", {})


# ----------------------------------------------------------------------------- evaluation


def heldout_eval(model, tokenizer, problems: list[Problem], job: TrainJob, shots: list[Problem] = ()) -> dict[str, float]:
    """Greedy accuracy on held-out problems as `eval/` metrics (model left in eval mode).

    With several processes each one evaluates its contiguous slice (`distributed.shard`) and the
    per-problem rows are gathered: every process returns the metrics of all the problems.
    """
    from tinyr1.evaluate import evaluate, greedy_summary

    model.eval()
    share = D.shard(problems)
    if share:
        result = evaluate(model, tokenizer, share, job.prompt, job.sampling, job.grading, shots=shots,
                          progress=job.run.progress and D.is_main())
        s, rows = result.summary, result.rows
    else:  # fewer problems than processes: this one has none
        s, rows = greedy_summary([]) | {"seconds": 0.0}, []
    if D.world_size() > 1:
        seconds = D.all_reduce_max(float(s["seconds"]))
        s = greedy_summary([row for part in D.gather_objects(rows) for row in part]) | {"seconds": seconds}
    lo, hi = s["accuracy_ci95"]
    return {
        "eval/accuracy": s["accuracy"], "eval/accuracy_ci_low": lo, "eval/accuracy_ci_high": hi, "eval/n": s["n"],
        "eval/response_length": s["mean_response_tokens"], "eval/parsed_rate": s["parsed_rate"], "eval/seconds": s["seconds"],
    }


def eval_record(metrics: dict[str, float]) -> dict[str, Any]:
    """The summary.json form of one held-out evaluation."""
    return {
        "accuracy": metrics["eval/accuracy"],
        "accuracy_ci95": [metrics["eval/accuracy_ci_low"], metrics["eval/accuracy_ci_high"]],
        "n": metrics["eval/n"],
        "parsed_rate": metrics["eval/parsed_rate"],
        "mean_response_tokens": metrics["eval/response_length"],
    }


def frozen_copy(model):
    """A frozen copy of a fully fine-tuned policy, the KL reference when there are no adapters."""
    import copy

    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def save_final(run_dir: Path, model, tokenizer) -> Path:
    """The trained model (or adapter) in save_pretrained format under `final/`.

    Called on every process: they all take part in gathering sharded weights (FSDP2, ZeRO-3);
    rank 0 writes.
    """
    weights = D.full_state_dict(model, main_only=True)
    if not D.is_main():
        return run_dir / "final"
    tmp = run_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    D.unwrap(model).save_pretrained(tmp, state_dict=weights)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    tmp.rename(run_dir / "final")
    return run_dir / "final"


def truncate_logs(run_dir: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint: those steps are about to be redone."""
    from tinyr1.io import read_jsonl, write_jsonl

    for name in ("metrics.jsonl", "samples.jsonl"):
        path = run_dir / name
        if path.is_file():
            path_text = path.read_text(encoding="utf-8")
            if path_text and not path_text.endswith("\n"):  # a crash mid-line: drop the partial line
                path.write_text(path_text[: path_text.rfind("\n") + 1], encoding="utf-8")
            write_jsonl(path, [row for _, row in read_jsonl(path) if row.get("step", 0) <= step])


def read_summary(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def log_samples(run_dir: Path, step: int, rollout: Rollout, rewards, per_fn, advantages, k: int) -> None:
    """Append the first `k` completions of the step, with their rewards, to samples.jsonl (rank 0's)."""
    from tinyr1.io import append_jsonl

    if not D.is_main():
        return
    for i in range(min(k, rollout.num_sequences)):
        append_jsonl(run_dir / "samples.jsonl", {
            "step": step, "id": rollout.problems[i].id, "question": rollout.problems[i].question,
            "reference": rollout.problems[i].answer, "response": rollout.texts[i], "reward": float(rewards[i]),
            **{f"reward/{k_}": float(v[i]) for k_, v in per_fn.items()},
            # per-token advantages (process supervision): the first response token's, which sums every step
            "advantage": float(advantages[i] if advantages.dim() == 1 else advantages[i][rollout.response_mask[i] > 0][:1].sum()),
            "truncated": bool(rollout.truncated[i]),
        })


def dry_run_job(job: TrainJob, tmp: Path) -> TrainJob:
    """The same job shrunk to one step on CPU with a tiny random model standing in for the real one.

    The tokenizer is the embedded SmolLM2's (the family of the SmolLM2 configs), so prompts,
    chat template and stopping run as configured; data, rewards and every option are the job's.
    """
    from tinyr1.config import ModelConfig
    from tinyr1.models.load import load_tokenizer
    from tinyr1.models.tiny import build_tiny_llama

    tokenizer = load_tokenizer(ModelConfig(name="smollm2-135m-instruct"))
    model_dir = build_tiny_llama(tokenizer, tmp / "tiny-model")
    g, w = job.grpo.group_size, D.world_size()  # w: the shrunk batches still split over the processes
    return dataclasses.replace(
        job,
        model=dataclasses.replace(job.model, name=str(model_dir), device="cpu"),
        sampling=dataclasses.replace(job.sampling, max_new_tokens=min(16, job.sampling.max_new_tokens)),
        run=dataclasses.replace(job.run, name="dry-run", output_dir=str(tmp), steps=1, eval_size=min(4, job.run.eval_size),
                                save_every=0, progress=False),
        grpo=dataclasses.replace(job.grpo, batch_size=2 * g * w),
        ppo=dataclasses.replace(job.ppo, batch_size=2 * w, mini_batch_size=2 * w),
        sft=dataclasses.replace(job.sft, batch_size=min(4, job.sft.batch_size) * w),
    )


# ----------------------------------------------------------------------------- the run around a loop


@dataclass
class Problems:
    """The problems a loop trains and evaluates on: few-shot examples never train or evaluate."""

    stream: ProblemStream  # training problems, seeded order, checkpointed position
    heldout: list[Problem]  # the first `run.eval_size` problems of the test split
    shots: list[Problem]  # few-shot examples shown in every prompt


def load_data(job: TrainJob) -> Problems:
    """Training stream, held-out problems and few-shot examples (loaded before any model: fail fast)."""
    from tinyr1.data import load_problems

    torch.manual_seed(job.run.seed)
    train_problems = load_problems(job.data, "train")
    heldout = load_problems(job.data, "test")[: job.run.eval_size]
    shots = train_problems[: job.prompt.few_shot]
    return Problems(ProblemStream(train_problems[job.prompt.few_shot :], job.run.seed), heldout, shots)


class Run:
    """Everything around a loop's steps: resume or evaluate before, periodic evals and checkpoints,
    metrics and progress, then the final eval, model, summary and plots.

        run = Run(job, run_dir, resume, model, tokenizer, optimizer, scheduler, data, sampler)
        for step in run.steps():
            ...                      # 1. rollout  2. reward  3. advantages  4. update
            run.end_step(step, metrics)   # 5. log (+ eval every K, checkpoint every K)
        return run.finish()

    Under several processes every process makes the same calls with the same (reduced) metrics;
    only rank 0 writes files and shows the progress bar (see `tinyr1.distributed`).
    """

    def __init__(self, job: TrainJob, run_dir: Path, resume: bool, model, tokenizer, optimizer, scheduler,
                 data: Problems, sampler):
        from tinyr1.io import write_json_atomic
        from tinyr1.tracking import MetricsLogger

        self.job, self.run_dir, self.model, self.tokenizer = job, run_dir, model, tokenizer
        self.optimizer, self.scheduler, self.data, self.sampler = optimizer, scheduler, data, sampler
        self.start, elapsed, self.extra, self.summary = 0, 0.0, {}, {}
        if resume:
            ckpt = latest_checkpoint(run_dir)
            if ckpt is None:
                raise UserError(f"--resume {run_dir}: no checkpoint to continue from (set run.save_every to save them)")
            self.start, elapsed, self.extra = load_checkpoint(ckpt, model, optimizer, scheduler, data.stream)
            self.summary = read_summary(run_dir)
            if D.is_main():
                truncate_logs(run_dir, self.start)
        else:
            D.seed_per_rank(job.run.seed)  # several processes: each samples with its own noise
        self.logger = MetricsLogger(run_dir, enabled=D.is_main(), tensorboard=job.run.tensorboard, elapsed_offset=elapsed)
        self.t0 = time.perf_counter() - elapsed
        if not resume:
            before = self.evaluate()
            self.logger.log(before, step=0)
            self.summary = {"eval_before": eval_record(before)}
            if D.is_main():
                write_json_atomic(run_dir / "summary.json", self.summary)

    def evaluate(self) -> dict[str, float]:
        return heldout_eval(self.sampler.refresh(D.unwrap(self.model)), self.tokenizer, self.data.heldout, self.job, self.data.shots)

    def steps(self):
        """Step numbers still to run, with a progress bar showing reward and accuracy."""
        from tinyr1.tracking import Progress

        self.progress = Progress(self.job.run.steps, initial=self.start, desc=self.job.algorithm,
                                 enabled=self.job.run.progress and D.is_main())
        return range(self.start + 1, self.job.run.steps + 1)

    def end_step(self, step: int, metrics: dict[str, float], extra=None) -> None:
        """Log the step; evaluate every `run.eval_every` and checkpoint every `run.save_every` steps.

        `extra`: a dict saved in the checkpoint, or a function returning it, called (on every
        process) only when a checkpoint is written: gathering sharded weights is not free."""
        r = self.job.run
        self.logger.log(metrics, step)
        if r.eval_every and step % r.eval_every == 0 and step != r.steps:
            ev = self.evaluate()
            self.logger.log(ev, step)
            metrics = metrics | ev
        if r.save_every and step % r.save_every == 0:
            save_checkpoint(self.run_dir, step, self.model, self.tokenizer, self.optimizer, self.scheduler,
                            self.data.stream, time.perf_counter() - self.t0, extra=extra() if callable(extra) else extra)
        self.progress.update(metrics)

    def finish(self) -> dict[str, Any]:
        """Final held-out eval, `final/` model, summary.json and plots; returns the summary."""
        from tinyr1.io import write_json_atomic
        from tinyr1.plots import plot_run

        self.progress.close()
        after = self.evaluate()
        self.logger.log(after, step=self.job.run.steps)
        j = self.job
        self.summary |= {"eval_after": eval_record(after), "steps": j.run.steps, "wall_time_s": round(time.perf_counter() - self.t0, 1),
                         "model": j.model.name, "data": j.data.source, "algorithm": j.algorithm}
        save_final(self.run_dir, self.model, self.tokenizer)  # every process: sharded weights are gathered
        if D.is_main():
            write_json_atomic(self.run_dir / "summary.json", self.summary)
            plot_run(self.run_dir)
        self.logger.close()
        D.barrier()  # every process returns once final/ and summary.json exist
        return self.summary
