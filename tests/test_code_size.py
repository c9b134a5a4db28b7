"""Size caps that keep the code readable: no function over 60 lines in dmmp_rec/, scripts/ and
benchmarks/, no module over 400 lines in scripts/ and benchmarks/ (dmmp_rec/'s module cap is
in test_layering.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
FUNCTION_ROOTS = ("dmmp_rec", "scripts", "benchmarks")
MODULE_ROOTS = ("scripts", "benchmarks")


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str, int]]:
    """(def line, name, lines) of every function, method or nested function of `source` longer
    than `limit` lines, counted from its `def` line to its last line, docstring included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.lineno, node.name, lines))
    return sorted(found)


def _python_files(*roots: str) -> list[Path]:
    files = [p for root in roots for p in sorted((REPO / root).rglob("*.py"))]
    assert files, f"no Python files under {roots}"
    return files


def test_no_function_is_over_60_lines() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line} {name} ({lines} lines)"
        for path in _python_files(*FUNCTION_ROOTS)
        for line, name, lines in long_functions(path.read_text())
    ]
    assert not offenders, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them by concept):\n"
        + "\n".join(offenders)
    )


def test_no_script_or_benchmark_module_is_over_400_lines() -> None:
    offenders = []
    for path in _python_files(*MODULE_ROOTS):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            offenders.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


def _function(name: str, lines: int, indent: str = "") -> str:
    """A function of exactly `lines` lines: the def, a docstring, assignments, a return."""
    body = [f'{indent}    """Says why."""']
    body += [f"{indent}    x{i} = {i}" for i in range(lines - 3)]
    body += [f"{indent}    return None"]
    return "\n".join([f"{indent}def {name}() -> None:", *body]) + "\n"


def test_the_checker_counts_def_to_last_line_and_sees_methods_and_nested_functions() -> None:
    assert long_functions(_function("fits", 60)) == []
    assert long_functions(_function("too_long", 61)) == [(1, "too_long", 61)]
    assert long_functions(_function("fits", 60), limit=59) == [(1, "fits", 60)]
    method = "class Holder:\n    x = 1\n\n" + _function("method", 61, indent="    ")
    assert long_functions(method) == [(4, "method", 61)]
    nested = "async def outer() -> None:\n" + _function("inner", 61, indent="    ")
    assert long_functions(nested) == [(1, "outer", 62), (2, "inner", 61)]
    decorated = "@staticmethod\n" + _function("decorated", 60)  # the decorator is not counted
    assert long_functions(decorated) == []
