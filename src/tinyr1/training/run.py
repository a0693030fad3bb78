"""The run around a training loop: create the run folder (or resume from its last checkpoint), log
every step, evaluate and checkpoint every K steps, then the final evaluation, model, summary and
plots. Every recipe (SFT, GRPO, PPO, reward models) drives one the same way:

    run = policy_run(job, run_dir, resume, State(model, tokenizer, optimizer, scheduler, data.stream), data, sampler)
    for step in run.steps():
        ...                            # 1. rollout  2. reward  3. advantages  4. update
        run.end_step(step, metrics)    # 5. log (+ eval every K, checkpoint every K)
    return run.finish()

Under several processes every process makes the same calls with the same (reduced) metrics;
only rank 0 writes files and shows the progress bar (see `tinyr1.distributed`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyr1 import distributed as D
from tinyr1 import eval_files, faults
from tinyr1.config import TrainJob
from tinyr1.errors import UserError
from tinyr1.evaluation import evaluate, greedy_summary
from tinyr1.io import append_jsonl, write_json_atomic
from tinyr1.plots import plot_run
from tinyr1.tracking import MetricsLogger, Progress
from tinyr1.training.checkpoint import (
    clear_logs,
    create_run_dir,
    latest_checkpoint,
    load_checkpoint,
    lock_run_dir,
    read_summary,
    remove_leftovers,
    save_checkpoint,
    save_final,
    truncate_logs,
    unlock_run_dir,
    write_config,
)
from tinyr1.training.problems import Problems
from tinyr1.types import Problem, Rollout


def heldout_eval(model, tokenizer, problems: list[Problem], job: TrainJob,
                 shots: list[Problem] = ()) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Greedy accuracy on held-out problems as `eval/` metrics, and the per-problem rows (model
    left in eval mode).

    With several processes each one evaluates its contiguous slice (`distributed.shard`) and the
    per-problem rows are gathered: every process returns the metrics and rows of all the problems.
    """
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
        rows = [row for part in D.gather_objects(rows) for row in part]
        s = greedy_summary(rows) | {"seconds": seconds}
    lo, hi = s["accuracy_ci95"]
    return {
        "eval/accuracy": s["accuracy"], "eval/accuracy_ci_low": lo, "eval/accuracy_ci_high": hi, "eval/n": s["n"],
        "eval/response_length": s["mean_response_tokens"], "eval/parsed_rate": s["parsed_rate"],
        "eval/truncated": s["truncated_rate"], "eval/self_check": s["self_check_rate"], "eval/seconds": s["seconds"],
    }, rows


def eval_record(metrics: dict[str, float], step: int) -> dict[str, Any]:
    """The summary.json form of one held-out evaluation; `rows_file` holds its per-problem rows."""
    return {
        "accuracy": metrics["eval/accuracy"],
        "accuracy_ci95": [metrics["eval/accuracy_ci_low"], metrics["eval/accuracy_ci_high"]],
        "n": metrics["eval/n"],
        "parsed_rate": metrics["eval/parsed_rate"],
        "mean_response_tokens": metrics["eval/response_length"],
        "self_check_rate": metrics.get("eval/self_check", 0.0),
        "rows_file": eval_files.rows_file(step),
    }


def log_samples(run_dir: Path, step: int, rollout: Rollout, advantages, k: int) -> None:
    """Append the first `k` completions of the step, with their rewards and their first response
    token's advantage (N,), to samples.jsonl (rank 0's). Under process supervision that token's
    advantage sums every step of the response."""
    if not D.is_main():
        return
    rewards = rollout.rewards
    for i in range(min(k, rollout.num_sequences)):
        append_jsonl(run_dir / "samples.jsonl", {
            "step": step, "id": rollout.problems[i].id, "question": rollout.problems[i].question,
            "reference": rollout.problems[i].answer, "response": rollout.texts[i], "reward": float(rewards.total[i]),
            **{f"reward/{name}": float(v[i]) for name, v in rewards.parts.items()},
            "advantage": float(advantages[i]), "truncated": bool(rollout.truncated[i]),
        })


@dataclass
class Settings:
    """How a run is driven, read from its job's config (`policy_settings` for SFT / GRPO / PPO)."""

    steps: int  # optimizer steps to run
    seed: int  # seed of sampling and initialisation (each process adds its rank)
    save_every: int = 0  # checkpoint every K steps (0 = none)
    eval_every: int = 0  # evaluate every K steps besides before and after (0 = only those), when there is an evaluation
    eval_before: bool = True  # evaluate the start model (step 0) too
    progress: bool = True  # show a progress bar (rank 0)
    report_to: list[str] = field(default_factory=list)  # experiment trackers mirroring metrics.jsonl
    project: str | None = None  # their project name
    desc: str = "train"  # the progress bar's label


@dataclass
class State:
    """Everything a checkpoint saves and restores, besides the RNG."""

    model: Any  # the trained module (possibly DDP-wrapped or sharded)
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    stream: Any  # the data position: `state_dict()` / `load_state_dict()` (a ProblemStream, an item order)


class Run:
    """Everything around a loop's steps: the run folder, resume, periodic evals and checkpoints,
    metrics and progress, then the final eval, model, summary and plots.

    `config`: the job, written to config.yaml; `evaluate(step)`: held-out metrics (`eval/...`) of
    the model at `step` (its rows saved as `eval_files.rows_file(step)`), or None for runs without
    one (reward models); `describe`: fields added to summary.json.

    The folder is locked (rank 0) before anything is read or written in it. A checkpoint is
    written every `save_every` steps and after the last step, so a finished run can go on
    (`--resume` with more steps); a run stopped before its first checkpoint starts again from
    step 0 on `--resume`, with its saved config.
    """

    def __init__(self, run_dir: Path, config, settings: Settings, state: State, resume: bool,
                 evaluate: Callable[[int], dict[str, float]] | None = None, describe: dict[str, Any] | None = None):
        self.run_dir, self.settings, self.state, self._evaluate = run_dir, settings, state, evaluate
        self.describe = describe or {}
        self.start, elapsed, self.extra, self.summary = 0, 0.0, {}, {}
        self._extra_fn, restart = None, False
        if resume:
            if D.is_main():
                lock_run_dir(run_dir)
                remove_leftovers(run_dir)
            ckpt = latest_checkpoint(run_dir)
            restart = ckpt is None and self._restart(run_dir, config)
            resume = not restart
        if resume:
            self.start, elapsed, self.extra, sizes = load_checkpoint(ckpt, state.model, state.optimizer, state.scheduler, state.stream)
            self.summary = read_summary(run_dir)
            if D.is_main():
                truncate_logs(run_dir, self.start, sizes)
                eval_files.prune(run_dir, self.start)  # evaluations the resumed run will redo
                write_config(run_dir, config)  # with the overrides the resume accepted
        else:
            if D.is_main() and not restart:
                create_run_dir(run_dir, config)
            D.seed_per_rank(settings.seed)  # several processes: each samples with its own noise
        self.last_step = self.saved_step = self.start
        self.logger = MetricsLogger(run_dir, enabled=D.is_main(), elapsed_offset=elapsed, report_to=settings.report_to,
                                    project=settings.project)
        self.t0 = time.perf_counter() - elapsed
        if not resume and evaluate is not None and settings.eval_before:
            before = evaluate(0)
            self.logger.log(before, step=0)
            self.summary = {"eval_before": eval_record(before, 0)}
            if D.is_main():
                write_json_atomic(run_dir / "summary.json", self.summary)

    @staticmethod
    def _restart(run_dir: Path, config) -> bool:
        """`--resume` on a folder without a checkpoint: start the run again from step 0 (returns True)."""
        summary = read_summary(run_dir)
        if (run_dir / "final").is_dir() and "eval_after" in summary:
            raise UserError(f"--resume {run_dir}: a finished run without a checkpoint (written by an older tinyr1); "
                            f"train on from its model in a new run with --model.name={run_dir}")
        if D.is_main():
            print(f"tinyr1: {run_dir} holds no checkpoint (the run stopped before its first one): starting it again "
                  "from step 0 with its config", file=sys.stderr, flush=True)
            clear_logs(run_dir)
            eval_files.prune(run_dir, -1)
            write_config(run_dir, config)
        return True

    @property
    def elapsed(self) -> float:
        """Seconds of training so far, earlier sessions of a resumed run included."""
        return time.perf_counter() - self.t0

    def steps(self):
        """Step numbers still to run, with a progress bar showing reward and accuracy. Before each
        step the data stream learns its number (`begin_step`: a curriculum's phase), when it asks."""
        s = self.settings
        self.progress = Progress(s.steps, initial=self.start, desc=s.desc, enabled=s.progress and D.is_main())
        begin = getattr(self.state.stream, "begin_step", None)
        for step in range(self.start + 1, s.steps + 1):
            faults.step = step
            if begin is not None:
                begin(step)
            yield step

    def end_step(self, step: int, metrics: dict[str, float], extra=None) -> None:
        """Log the step; evaluate every `eval_every` and checkpoint every `save_every` steps.

        `extra`: a dict saved in the checkpoint, or a function returning it, called (on every
        process) only when a checkpoint is written: gathering sharded weights is not free."""
        s = self.settings
        self.logger.log(metrics, step)
        faults.reached("logged")  # tests: a line for a step its checkpoint does not hold yet
        self.last_step, self._extra_fn = step, extra
        if self._evaluate is not None and s.eval_every and step % s.eval_every == 0 and step != s.steps:
            ev = self._evaluate(step)
            self.logger.log(ev, step)
            metrics = metrics | ev
        if s.save_every and step % s.save_every == 0:
            self._checkpoint(step)
        self.progress.update(metrics)

    def _checkpoint(self, step: int) -> None:
        st, extra = self.state, self._extra_fn
        save_checkpoint(self.run_dir, step, st.model, st.tokenizer, st.optimizer, st.scheduler, st.stream,
                        self.elapsed, extra=extra() if callable(extra) else extra)
        self.saved_step = step

    def finish(self, save: Callable[[dict[str, Any]], None] | None = None, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Final held-out eval, the trained model (`final/`, or `save(summary)` on every process),
        summary.json and plots; returns the summary. `summary`: more fields for summary.json."""
        self.progress.close()
        if self.last_step != self.saved_step:  # the last step's checkpoint: what a longer run would resume from
            self._checkpoint(self.last_step)
        if self._evaluate is not None:
            after = self._evaluate(self.last_step)
            self.logger.log(after, step=self.last_step)
            self.summary |= {"eval_after": eval_record(after, self.last_step)}
        self.summary |= {"steps": self.last_step, "wall_time_s": round(self.elapsed, 1)} | self.describe | (summary or {})
        if save is None:
            save_final(self.run_dir, self.state.model, self.state.tokenizer)  # every process: sharded weights are gathered
        else:
            save(self.summary)
        faults.reached("final")  # tests: final/ written, summary.json not yet
        if D.is_main():
            write_json_atomic(self.run_dir / "summary.json", self.summary)
            plot_run(self.run_dir)
            unlock_run_dir(self.run_dir)
        self.logger.close()
        D.barrier()  # every process returns once final/ and summary.json exist
        return self.summary


def policy_run(job: TrainJob, run_dir: Path, resume: bool, state: State, data: Problems, sampler) -> Run:
    """The Run of an SFT / GRPO / PPO job: held-out greedy accuracy (on the sampling copy) before
    training (unless `run.eval_before` is false), every `run.eval_every` steps and after, each
    evaluation's rows in `eval/step-<k>.jsonl`."""
    r = job.run
    settings = Settings(steps=r.steps, seed=r.seed, save_every=r.save_every, eval_every=r.eval_every,
                        eval_before=r.eval_before, progress=r.progress,
                        report_to=r.report_to, project=r.project, desc=job.algorithm)

    def evaluate(step: int) -> dict[str, float]:
        metrics, rows = heldout_eval(sampler.refresh(D.unwrap(state.model)), state.tokenizer, data.heldout, job, data.shots)
        if D.is_main():
            eval_files.write_rows(run_dir, step, rows)
        return metrics

    return Run(run_dir, job, settings, state, resume, evaluate,
               describe={"model": job.model.name, "data": job.data.source, "algorithm": job.algorithm})
