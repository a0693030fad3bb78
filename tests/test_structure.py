"""The package's shape: no import cycles, every module importable in dependency order, doctests that
run, imports inside functions only for optional or slow dependencies, and light top-level imports.

The import graph is read from the source (AST), not from a running interpreter, so a cycle hidden
behind an import inside a function counts too. `from tinyr1.data import gsm8k` (a submodule
named from its package) is an edge to the submodule only.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "tinyr1"


def module_files() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


MODULES = module_files()
# Run as scripts, not imported: a worker process that edits its own sys.path, and `python -m` entry points.
NOT_IMPORTED = {"tinyr1.rewards._verify_worker", "tinyr1.cli.__main__"}
# Imports allowed inside functions, each for a reason: optional extras, slow imports needed only on one
# path, a worker process's own import, or a model's reward function that loads torch and transformers.
LAZY_OK = {
    "datasets": "hub datasets only",
    "reasoning_gym": "synthetic problems only; a second to import",
    "accelerate": "only under a launcher; slow to import",
    "deepspeed": "optional extra",
    "torch.distributed.tensor": "sharded engines only",
    "math_verify": "imported by the verifier's worker process, not the parent",
    "resource": "not on every platform",
    "logging": "the worker's own logging",
    "torch.utils.tensorboard": "optional extra",
    "torch.utils.cpp_extension": "only when the sampler's kernel must be built",
    "tinyr1.rewards.orm": "a reward model: torch and transformers, only when configured",
    "tinyr1.rewards.prm": "a reward model: torch and transformers, only when configured",
    "tinyr1.rewards._verifier": "starts the verifier worker's machinery only when answers are checked",
    "tinyr1.rollout": "the compiled kernel module, only on the kernel path",
    "vllm": "optional extra",
    "wandb": "optional extra",
    "trackio": "optional extra",
    "huggingface_hub": "only when pushing to the hub",
    "matplotlib": "only when drawing; slow to import",
    "tinyr1.api": "the Python API loads torch: `import tinyr1` stays light until it is used",
    "pyarrow": "parquet benchmark files only (comes with datasets)",
}


def imports_of(name: str, path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(tinyr1 modules `name` imports anywhere, [(line, module) of every import inside a function])."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges, lazy = set(), []

    def resolve(mod: str) -> str | None:
        while mod and mod not in MODULES:
            mod = mod.rpartition(".")[0]
        return mod or None

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    targets = subs = [a.name for a in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join(up + ([base] if base else []))
                    subs = [f"{base}.{a.name}" for a in child.names]
                    targets = subs if all(s in MODULES for s in subs) else [base, *subs]
                for t in targets:
                    if t.startswith("tinyr1") and (r := resolve(t)) and r != name:
                        edges.add(r)
                if in_function:  # what it loads: the module, or the module holding the imported name
                    lazy.append((child.lineno, subs[0] if isinstance(child, ast.ImportFrom) else targets[0]))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return edges, lazy


GRAPH = {name: imports_of(name, path)[0] for name, path in MODULES.items()}


def dependency_order(graph: dict[str, set[str]]) -> list[str]:
    """Modules with every import before its importer; raises naming a cycle when there is one."""
    order, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == "done":
            return
        if state.get(m) == "open":
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        state[m] = "open"
        for d in sorted(graph[m]):
            visit(d, path + [m])
        state[m] = "done"
        order.append(m)

    for m in sorted(graph):
        visit(m, [])
    return order


def test_the_import_graph_has_no_cycle():
    dependency_order(GRAPH)


def test_the_cycle_check_would_catch_one():
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        dependency_order({"a": {"b"}, "b": {"a"}})


def test_every_module_imports_in_dependency_order_in_a_fresh_interpreter():
    order = [m for m in dependency_order(GRAPH) if m not in NOT_IMPORTED]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok', len(sys.argv) - 1)"
    proc = subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"ok {len(order)}"


def test_imports_inside_functions_are_only_for_optional_or_slow_dependencies():
    offenders = []
    for name, path in MODULES.items():
        for line, target in imports_of(name, path)[1]:
            if not any(target == k or target.startswith(k + ".") for k in LAZY_OK):
                offenders.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert offenders == []


def test_importing_the_package_and_the_cli_loads_no_heavy_or_optional_dependency():
    code = ("import sys, tinyr1, tinyr1.cli, tinyr1.config, tinyr1.types\n"
            "heavy = {'torch', 'transformers', 'vllm', 'deepspeed', 'ray', 'wandb', 'trackio', 'datasets'}\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


DOCTESTED = sorted(n for n, p in MODULES.items() if ">>>" in p.read_text() and n not in NOT_IMPORTED)


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
