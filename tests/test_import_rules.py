"""The rooms' import rules, checked on the source with ``ast`` (nothing here imports the rooms).

Every import counts: module level or inside a function, ``import`` or ``from ... import``,
relative ones resolved against the module's package, and ``importlib.import_module("...")``
with a literal name. A failure lists each offending ``file:line: imported module``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("protos", "replay_service", "algorithms", "actors", "learner", "launcher")
PROCESS_ROOMS = ("shoal.actors", "shoal.learner", "shoal.replay_service", "shoal.launcher")


def module_name(rel: Path) -> tuple[str, bool]:
    """The dotted name of the module at ``rel`` (relative to ROOT) and whether it is a package."""
    parts = ["shoal", *rel.with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imports_of(source: str, module: str, package: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` for every import in ``source``, nested ones included.

    ``from shoal import name`` yields ``shoal.name``, since the name is then a room
    (``shoal`` itself for dunders such as ``__version__``).
    """
    package_name = module if package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package_name.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base == "shoal":
                for alias in node.names:
                    dunder = alias.name.startswith("__")
                    found.append((node.lineno, "shoal" if dunder else f"shoal.{alias.name}"))
            else:
                found.append((node.lineno, base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


@cache
def package_imports() -> dict[str, tuple[tuple[int, str], ...]]:
    """Every module of the package (rooms and ROOT's top-level .py, no generated pb2) -> imports."""
    paths = sorted(ROOT.glob("*.py"))
    for room in ROOMS:
        paths += sorted(p for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts)
    result = {}
    for path in paths:
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        rel = path.relative_to(ROOT)
        module, is_package = module_name(rel)
        source = path.read_text(encoding="utf-8")
        result[rel.as_posix()] = tuple(imports_of(source, module, is_package))
    return result


def under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offenders(
    rooms: Iterable[str], forbidden: Callable[[str], bool], *, outside: bool = False
) -> list[str]:
    """``file:line: module`` for each import that ``forbidden`` rejects in the files of
    ``rooms`` (or, with ``outside``, in the files of every other room)."""
    rooms = tuple(rooms)
    bad = []
    for rel, imports in package_imports().items():
        room = rel.split("/")[0] if "/" in rel else ""
        if (room in rooms) != outside:
            bad += [f"{rel}:{line}: {name}" for line, name in imports if forbidden(name)]
    return sorted(set(bad))


def any_of(*prefixes: str) -> Callable[[str], bool]:
    return lambda name: under(name, prefixes)


def explain(rule: str, bad: list[str]) -> str:
    return f"{rule}; offending imports:\n  " + "\n  ".join(bad)


def test_checker_finds_nested_and_relative_imports() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    from shoal.launcher.metrics import X\n"
        "    from ..learner import loop\n"
        "    from .. import actors\n"
        "    import importlib; importlib.import_module('shoal.actors.env')\n"
    )
    names = {name for _, name in imports_of(source, "shoal.replay_service.process")}
    expected = {"os", "shoal.launcher.metrics", "shoal.learner", "shoal.actors", "shoal.actors.env"}
    assert expected <= names, f"found only {sorted(names)}"
    assert under("shoal.launcher.metrics", ["shoal.launcher"])
    assert not under("shoal.launcher_extra", ["shoal.launcher"])
    # the checker really read the package, so an empty result below is not vacuous
    rooms_seen = {rel.split("/")[0] for rel in package_imports() if "/" in rel}
    assert rooms_seen == set(ROOMS), f"rooms found: {sorted(rooms_seen)}"


def test_actors_and_learner_do_not_import_each_other() -> None:
    bad = offenders(["actors"], any_of("shoal.learner"))
    bad += offenders(["learner"], any_of("shoal.actors"))
    assert not bad, explain("actors must not import shoal.learner, nor learner shoal.actors", bad)


def test_replay_service_needs_no_torch_and_no_other_process_room() -> None:
    forbidden = ["torch", "shoal.algorithms", "shoal.launcher", "shoal.actors", "shoal.learner"]
    bad = offenders(["replay_service"], any_of(*forbidden))
    assert not bad, explain(f"replay_service must import none of {', '.join(forbidden)}", bad)


def test_algorithms_import_no_process_room_and_no_grpc() -> None:
    bad = offenders(["algorithms"], any_of(*PROCESS_ROOMS, "grpc"))
    assert not bad, explain(f"algorithms must import none of {', '.join(PROCESS_ROOMS)}, grpc", bad)


def test_protos_import_only_protos_and_no_torch() -> None:
    def forbidden(name: str) -> bool:
        other_shoal = name.startswith("shoal.") and not under(name, ["shoal.protos"])
        return other_shoal or under(name, ["torch"])

    bad = offenders(["protos"], forbidden)
    assert not bad, explain("protos may import only shoal.protos of shoal, and not torch", bad)


def test_only_launcher_imports_launcher() -> None:
    """The package root is the one exception: ``shoal.train``/``shoal.load`` are the
    launcher's Python API, imported there on first use, and nothing else."""
    bad = offenders(["launcher"], any_of("shoal.launcher"), outside=True)
    root = [b for b in bad if b.startswith("__init__.py:")]
    assert [b.split(": ")[1] for b in root] == ["shoal.launcher"], root
    assert "from shoal.launcher import api" in (ROOT / "__init__.py").read_text()
    bad = [b for b in bad if b not in root]
    assert not bad, explain("nothing outside launcher may import shoal.launcher", bad)
