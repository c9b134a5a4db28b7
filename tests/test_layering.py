"""The package's layers import downward only (issue 12: config -> data -> model -> distributed
-> inference -> {train, eval, serving} -> compare -> commands/cli), so that no layer needs a
function-local import to dodge a cycle and train, eval and serving can change without touching
each other.

Every module of dmmp_rec/ is parsed (ast, so imports inside functions count too); an import of a
higher layer, or of a sibling of the same rank (train <-> eval <-> serving), fails the test with
the file, line and import. `console` and `metrics` are leaves: anyone may import them, and they
import no other part of the package. Two checks keep moves honest: every imported dmmp_rec name
exists (a move cannot leave an importer behind), and no module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dmmp_rec"

# rank of each top-level part of dmmp_rec; a module may import parts of a strictly lower rank,
# or its own part. Parts of equal rank are siblings and may not import each other.
LAYERS: dict[str, int] = {
    "config": 0,
    "data": 1,
    "model": 2,
    "distributed": 3,
    "inference": 4,
    "train": 5,
    "eval": 5,
    "serving": 5,
    "compare": 6,
    "commands": 7,
    "cli": 7,
}
# importable from every layer; they import nothing else of dmmp_rec
LEAVES = {"console", "errors", "metrics"}
# the package root (`import dmmp_rec` for its version) imports nothing
ROOT = ""
# top-level parts that share a layer and may import each other (the CLI and its commands)
SAME_LAYER_ALLOWED = {frozenset({"commands", "cli"})}


def _part(module: str) -> str | None:
    """The top-level part of dmmp_rec that `module` names ("" for the root), None if outside."""
    parts = module.split(".")
    if parts[0] != "dmmp_rec":
        return None
    return parts[1] if len(parts) > 1 else ROOT


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `source`, at any depth; `from dmmp_rec
    import x` counts as an import of dmmp_rec.x, relative imports are resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "dmmp_rec":
                found += [(node.lineno, f"dmmp_rec.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def violations(source: str, module: str, where: str, is_package: bool = False) -> list[str]:
    """Why each import of `source` (module `module`, shown as `where`) breaks the layering."""
    own = _part(module)
    problems = []
    for line, target in imported_modules(source, module, is_package):
        other = _part(target)
        if other is None or other == own or own == ROOT and other == ROOT:
            continue
        at = f"{where}:{line}: import of {target}"
        if other not in LAYERS and other not in LEAVES and other != ROOT:
            problems.append(f"{at}: dmmp_rec.{other} has no layer (add it to LAYERS or LEAVES)")
        elif own in LEAVES or own == ROOT:
            problems.append(f"{at}: {own or 'the package root'} is a leaf and imports nothing")
        elif other in LEAVES or other == ROOT:
            continue
        elif own not in LAYERS:
            problems.append(f"{where}: dmmp_rec.{own} has no layer (add it to LAYERS or LEAVES)")
        elif frozenset({own, other}) in SAME_LAYER_ALLOWED:
            continue
        elif LAYERS[other] > LAYERS[own]:
            problems.append(f"{at}: upward ({own} is below {other})")
        elif LAYERS[other] == LAYERS[own]:
            problems.append(f"{at}: sideways ({own} and {other} are siblings)")
    return problems


def test_every_import_points_down() -> None:
    problems = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50, "the package was not found"
    for path in modules:
        where = str(path.relative_to(PACKAGE.parent))
        source = path.read_text()
        problems += violations(source, _module_name(path), where, path.name == "__init__.py")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_check_sees_upward_sideways_and_local_imports() -> None:
    source = """
from dmmp_rec.model.student import Student
import dmmp_rec.compare.table
from dmmp_rec import serving

def late():
    from dmmp_rec.eval.report import evaluate
    from ..eval import frontier
    from .best import BestTracker
"""
    found = violations(source, "dmmp_rec.train.trainer", "dmmp_rec/train/trainer.py")
    assert len(found) == 4, found
    assert found[0].startswith("dmmp_rec/train/trainer.py:3: import of dmmp_rec.compare.table")
    assert "upward" in found[0]
    assert "dmmp_rec.serving" in found[1] and "sideways" in found[1]
    assert "dmmp_rec.eval.report" in found[2] and "sideways" in found[2]
    assert "import of dmmp_rec.eval:" in found[3] and "sideways" in found[3]
    leaf = violations("from dmmp_rec.config import DmmpConfig", "dmmp_rec.metrics", "metrics.py")
    assert leaf and "leaf" in leaf[0]


MAX_LINES = 400  # a module longer than this holds more than one concept: split it by concept


def test_no_module_is_over_400_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)}: {n} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def test_every_imported_name_exists() -> None:
    """Each `from dmmp_rec.x import name` of the package names something x has: a move that
    leaves an importer behind (a name no longer re-exported) fails here, not at run time."""
    import importlib
    import importlib.util

    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if _part(node.module) is None:
                continue
            try:
                target = importlib.import_module(node.module)
            except ImportError as e:
                optional = isinstance(e, ModuleNotFoundError) and not (e.name or "").startswith(
                    "dmmp_rec"
                )  # a missing optional third-party dependency is not ours to check
                if not optional:
                    problems.append(f"{module}:{node.lineno}: importing {node.module}: {e}")
                continue
            for alias in node.names:
                if hasattr(target, alias.name):
                    continue
                try:  # `from package import submodule`
                    found = importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                except ModuleNotFoundError:  # node.module is a module, not a package
                    found = False
                if not found:
                    problems.append(f"{module}:{node.lineno}: {node.module} has no {alias.name}")
    assert not problems, "imports of names that do not exist:\n" + "\n".join(problems)
