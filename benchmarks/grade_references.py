"""Sanity check of the grader on real data: reference solutions graded against their own answer
(should be ~100% correct) and against another problem's answer (should be ~0%).

    .venv/bin/python benchmarks/grade_references.py [--gsm8k ../shared/data/GSM8K] [--math ../shared/data/MATH] [--limit N]

Prints a table: dataset, n, own-answer accuracy, other-answer accuracy, seconds. Responses are
the reference solutions written in the dataset's own answer style (GSM8K `#### `, MATH \\boxed{}).
For the "other" column each response is paired with the answer of the next problem whose answer
differs as a string, so a pass there is a grader error (or two equivalent spellings).
"""

from __future__ import annotations

import argparse
import time

from tinyr1.config import DataConfig
from tinyr1.data import load_problems
from tinyr1.data.prompts import format_response
from tinyr1.rewards.answers import grade_many


def check(name: str, source: str, style: str, limit: int | None) -> dict:
    cfg = DataConfig(source=source, test_size=0)
    problems = load_problems(cfg, "train")[:limit]
    responses = [format_response(p, style) for p in problems]
    t0 = time.perf_counter()
    own = grade_many(responses, [p.answer for p in problems], style=style, fallback=False)
    others = []
    for i, p in enumerate(problems):
        j = next(k % len(problems) for k in range(i + 1, i + len(problems)) if problems[k % len(problems)].answer != p.answer)
        others.append(problems[j].answer)
    other = grade_many(responses, others, style=style, fallback=False)
    seconds = time.perf_counter() - t0
    wrong_own = [p.id for p, g in zip(problems, own) if not g.correct]
    return dict(dataset=name, n=len(problems), own=sum(g.correct for g in own) / len(problems),
                other=sum(g.correct for g in other) / len(problems), seconds=seconds, examples=wrong_own[:5])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gsm8k", default="../shared/data/GSM8K")
    ap.add_argument("--math", default="../shared/data/MATH")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    rows = [check("GSM8K train", f"gsm8k:{args.gsm8k}", "gsm8k", args.limit),
            check("MATH train", f"math:{args.math}", "boxed", args.limit)]
    print(f"| {'dataset':<12} | {'n':>5} | {'own answer':>10} | {'other answer':>12} | {'seconds':>7} |")
    print(f"|{'-' * 14}|{'-' * 7}|{'-' * 12}|{'-' * 14}|{'-' * 9}|")
    for r in rows:
        print(f"| {r['dataset']:<12} | {r['n']:>5} | {r['own']:>10.2%} | {r['other']:>12.2%} | {r['seconds']:>7.1f} |")
    for r in rows:
        if r["examples"]:
            print(f"{r['dataset']}: own-answer misses, e.g. {', '.join(r['examples'])}")


if __name__ == "__main__":
    main()
