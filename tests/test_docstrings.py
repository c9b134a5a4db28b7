"""The public API documents its arguments the way torchrec's does (issue 20, item 6).

Every public function and method (dunders and argument-less property getters aside) of
dmmp_rec/config, model, distributed, inference and serving has a docstring whose first line
says what it is for, an `Args:` section naming each parameter (self/cls aside) and a
`Returns:` section unless it is annotated `-> None` or is a generator; a public class with its
own `__init__` names the constructor's arguments in its class docstring, as torchrec does.
Every config dataclass (the job config's sections in dmmp_rec/config, the plan config's) names
each field in an `Args:` section of its class docstring, so a user reading a YAML key finds its
meaning, default and allowed values in one place.

The check is ast-based (nothing is imported), and each offender is listed as
`path:line name: missing Args: x, y` / `missing Returns:` / `no docstring`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API_PARTS = ("config", "model", "distributed", "inference", "serving")
# parts that must exist (inference, the layer for encoding and scoring with the sharded model,
# is checked wherever it is present)
REQUIRED_PARTS = ("config", "model", "distributed", "serving")
# the YAML sections: the job config, and the plan config that `dmmp-rec plan` reads
CONFIG_MODULES = ("config/*.py", "distributed/planning/config.py")

# an entry of an Args: section: `name (type): meaning` or `name: meaning`, `*args` allowed
_ARG_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(\([^)]*\))?\s*:")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:{1,2}$|^Returns:|^Yields:|^Raises:")

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def documented_args(doc: str) -> set[str] | None:
    """The parameter names an `Args:` section of `doc` lists; None when it has no such section.

    An entry is a line at the first entry's indentation that starts `name:` or `name (type):`;
    deeper lines continue the entry, and a line back at the header's indentation ends it.
    """
    lines = doc.expandtabs().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return None
    header = lines[starts[0]]
    header_indent = len(header) - len(header.lstrip())
    names: set[str] = set()
    entry_indent: int | None = None
    for line in lines[starts[0] + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= header_indent and (entry_indent is not None or _SECTION.match(line.strip())):
            break
        if entry_indent is None:
            entry_indent = indent
        if indent == entry_indent and (match := _ARG_ENTRY.match(line.strip())):
            names.add(match.group(1))
    return names


def _has_returns(doc: str) -> bool:
    return any(line.strip().startswith("Returns:") for line in doc.splitlines())


def _parameters(node: FunctionNode, is_method: bool) -> list[str]:
    args = node.args
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    if is_method and names and names[0] in ("self", "cls") and not _is_static(node):
        names = names[1:]
    return names


def _decorator_names(node: FunctionNode | ast.ClassDef) -> set[str]:
    found = set()
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute):
            found.add(target.attr)
            if isinstance(target.value, ast.Name):
                found.add(f"{target.value.id}.{target.attr}")
        elif isinstance(target, ast.Name):
            found.add(target.id)
    return found


def _is_static(node: FunctionNode) -> bool:
    return "staticmethod" in _decorator_names(node)


def _is_generator(node: FunctionNode) -> bool:
    """Whether `node` itself yields (a yield inside a nested def or lambda does not count)."""
    stack: list[ast.AST] = list(node.body)
    while stack:
        child = stack.pop()
        if isinstance(child, ast.Yield | ast.YieldFrom):
            return True
        if isinstance(child, FunctionNode | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(child))
    return False


def _returns_nothing(node: FunctionNode) -> bool:
    ret = node.returns
    if ret is None:
        return False
    text = ast.unparse(ret).strip("'\"")
    return text in ("None", "NoReturn", "Never", "typing.NoReturn")


def function_problems(node: FunctionNode, is_method: bool) -> list[str]:
    """What the docstring of public function `node` lacks (empty when it is complete)."""
    doc = ast.get_docstring(node)
    if not doc or not doc.splitlines()[0].strip():
        return ["no docstring" if not doc else "no summary on the first line"]
    problems = []
    params = _parameters(node, is_method)
    if params:
        listed = documented_args(doc) or set()
        missing = [p for p in params if p not in listed]
        if missing:
            problems.append(f"missing Args: {', '.join(missing)}")
    if not (_returns_nothing(node) or _is_generator(node) or _has_returns(doc)):
        problems.append("missing Returns:")
    return problems


def _is_public_method(node: FunctionNode) -> bool:
    if node.name.startswith("_"):
        return False  # private, and dunders (their contract is Python's)
    decorators = _decorator_names(node)
    if decorators & {"overload", "typing.overload"}:
        return False
    is_getter = "property" in decorators or "cached_property" in decorators
    return not (is_getter and len(_parameters(node, is_method=True)) == 0)


def constructor_problems(node: ast.ClassDef) -> list[str]:
    """What the class docstring lacks about the class's own `__init__` arguments (torchrec
    documents a module's constructor in the class docstring); a class without its own
    `__init__` (a dataclass, a NamedTuple, a subclass reusing its base's) is not checked."""
    init = next(
        (i for i in node.body if isinstance(i, FunctionNode) and i.name == "__init__"), None
    )
    params = _parameters(init, is_method=True) if init is not None else []
    if not params:
        return []
    listed = documented_args(ast.get_docstring(node) or "") or set()
    missing = [p for p in params if p not in listed]
    return [f"constructor missing Args: {', '.join(missing)}"] if missing else []


def api_problems(source: str, where: str) -> list[str]:
    """Offenders among the public functions and methods of one module's `source`."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, FunctionNode) and not node.name.startswith("_"):
            found += [
                f"{where}:{node.lineno} {node.name}: {p}" for p in function_problems(node, False)
            ]
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            found += [f"{where}:{node.lineno} {node.name}: {p}" for p in constructor_problems(node)]
            for item in node.body:
                if isinstance(item, FunctionNode) and _is_public_method(item):
                    name = f"{node.name}.{item.name}"
                    problems = function_problems(item, is_method=True)
                    found += [f"{where}:{item.lineno} {name}: {p}" for p in problems]
    return found


def _is_dataclass(node: ast.ClassDef) -> bool:
    return bool(_decorator_names(node) & {"dataclass", "dataclasses.dataclass"})


def _is_init_field(item: ast.AnnAssign) -> bool:
    """A field a config file can set: not a ClassVar, not `field(init=False)`."""
    if "ClassVar" in ast.unparse(item.annotation):
        return False
    value = item.value
    if isinstance(value, ast.Call) and ast.unparse(value.func).endswith("field"):
        for keyword in value.keywords:
            if keyword.arg == "init" and isinstance(keyword.value, ast.Constant):
                return bool(keyword.value.value)
    return True


def _fields(node: ast.ClassDef) -> list[str]:
    return [
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign)
        and isinstance(item.target, ast.Name)
        and _is_init_field(item)
    ]


def config_problems(source: str, where: str) -> list[str]:
    """Config dataclasses of one module whose class docstring does not list every field."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and _is_dataclass(node)):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            found.append(f"{where}:{node.lineno} {node.name}: no docstring")
            continue
        fields = _fields(node)
        listed = documented_args(doc) or set()
        missing = [f for f in fields if f not in listed]
        if missing:
            found.append(f"{where}:{node.lineno} {node.name}: missing Args: {', '.join(missing)}")
    return found


def _modules(part: str) -> list[Path]:
    paths = sorted((ROOT / "dmmp_rec" / part).rglob("*.py"))
    assert paths or part not in REQUIRED_PARTS, f"dmmp_rec/{part} was not found"
    return paths


def test_public_functions_document_args_and_returns() -> None:
    found = []
    for part in API_PARTS:
        for path in _modules(part):
            found += api_problems(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "public API without Args:/Returns: docs:\n" + "\n".join(found)


def test_config_dataclasses_document_every_field() -> None:
    found = []
    paths = sorted(p for pattern in CONFIG_MODULES for p in (ROOT / "dmmp_rec").glob(pattern))
    assert len(paths) > len(CONFIG_MODULES), "the config modules were not found"
    for path in paths:
        found += config_problems(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "config dataclasses with undocumented fields:\n" + "\n".join(found)


def test_the_checker_flags_a_bad_source_and_passes_a_good_one() -> None:
    bad = '''
def no_doc(x): return x

def partial(a: int, b: int, *rest: int, key: str = "", **extra: int) -> int:
    """Adds things.

    Args:
        a (int): first.
            b: a continuation line of a's entry is not an entry.
        rest: the others.
    """
    return a

class Thing:
    def __init__(self, size: int, *, name: str = "") -> None:
        self.size_ = size

    def method(self, y: int) -> None:
        """Does a thing with y, documented nowhere."""

    @property
    def size(self) -> int:
        return 1

    def _private(self, z): return z
'''
    found = api_problems(bad, "m.py")
    assert found == [
        "m.py:2 no_doc: no docstring",
        "m.py:4 partial: missing Args: b, key, extra",
        "m.py:4 partial: missing Returns:",
        "m.py:14 Thing: constructor missing Args: size, name",
        "m.py:18 Thing.method: missing Args: y",
    ], found
    good = '''
from typing import Iterator

def total(a: int, *rest: int, **named: int) -> int:
    """The sum of all arguments: why one would want it.

    Args:
        a (int): the first term.
        *rest: further terms,
            over two lines.
        **named: terms by name.

    Returns:
        int: a + sum(rest) + sum(named.values()).
    """
    return a + sum(rest) + sum(named.values())

def count(n: int) -> Iterator[int]:
    """0..n-1, lazily.

    Args:
        n: how many.
    """
    yield from range(n)

class Thing:
    """A thing.

    Args:
        size (int): its size.
    """

    def __init__(self, size: int = 1) -> None:
        self.size_ = size

    @staticmethod
    def make(size: int) -> "Thing":
        """A thing of `size`.

        Args:
            size: its size.

        Returns:
            The thing.
        """
        return Thing()

    def reset(self) -> None:
        """Forget all state (nothing to return, no argument to list)."""

    @property
    def size(self) -> int:
        return 1
'''
    assert api_problems(good, "m.py") == []


def test_the_config_check_names_each_undocumented_field() -> None:
    source = '''
from dataclasses import dataclass, field
from typing import ClassVar

@dataclass
class Section:
    """A section.

    Args:
        lr: learning rate; > 0.
    """

    lr: float = 0.1
    steps: int = 10
    KEYS: ClassVar[tuple[str, ...]] = ()
    source: str = field(default="", init=False)

@dataclass(frozen=True)
class Bare:
    x: int = 0
'''
    assert config_problems(source, "c.py") == [
        "c.py:6 Section: missing Args: steps",
        "c.py:19 Bare: no docstring",
    ]
