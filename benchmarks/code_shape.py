"""The code's shape: long files, ``Any`` in public signatures, lines per room, room imports.

These are the before/after figures of the architecture issue, read from source so an old
checkout can be measured as it is: nothing here imports the code, it only parses it with
``ast``. Usage: ``python benchmarks/code_shape.py [ROOT] [--json]`` (ROOT defaults to the
checkout holding this script); ``--json`` ends the output with one JSON line.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

ROOMS = ("protos", "replay_service", "algorithms", "actors", "learner", "launcher")
TOP = "(top)"  # files at ROOT's top level: the ``shoal`` package module itself
LONG_FILE = 400


class Shape(TypedDict):
    files_over_400_lines: list[list[str | int]]
    any_in_public_signatures: dict[str, int]
    any_mentions: dict[str, int]
    lines_per_room: dict[str, int]
    files_per_room: dict[str, int]
    room_imports: dict[str, list[str]]


def package_files(root: Path) -> list[Path]:
    """The package's own modules: the rooms and ROOT's top-level .py, generated code left out."""
    files = sorted(root.glob("*.py"))
    for room in ROOMS:
        files += sorted(p for p in (root / room).rglob("*.py") if "__pycache__" not in p.parts)
    return [p for p in files if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))]


def room_of(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else TOP


def is_any(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "Any") or (
        isinstance(node, ast.Attribute) and node.attr == "Any"
    )


def mentions_any(annotation: ast.expr | None) -> bool:
    """Whether ``Any`` appears anywhere inside an annotation, string annotations included."""
    for node in ast.walk(annotation) if annotation is not None else ():
        if is_any(node):
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                if mentions_any(ast.parse(node.value, mode="eval").body):
                    return True
            except SyntaxError:
                pass
    return False


def public_annotations(body: list[ast.stmt], in_class: bool = False) -> Iterator[ast.expr | None]:
    """Annotations of the public signatures in a module's or a public class's body."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if stmt.name.startswith("_") and stmt.name != "__init__":
                continue
            a = stmt.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]
            yield from (p.annotation for p in params)
            yield stmt.returns
        elif isinstance(stmt, ast.ClassDef) and not stmt.name.startswith("_"):
            yield from public_annotations(stmt.body, in_class=True)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            yield stmt.annotation if in_class or not stmt.target.id.startswith("_") else None


def shoal_imports(tree: ast.Module) -> Iterator[str]:
    """Every ``shoal.*`` module the file imports, at any depth (``from shoal import x`` too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("shoal."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "shoal":
                yield from (f"shoal.{a.name}" for a in node.names)
            elif node.module.startswith("shoal."):
                yield node.module


def measure(root: Path) -> Shape:
    long_files: list[tuple[str, int]] = []
    sig_any: dict[str, int] = defaultdict(int)
    mentions: dict[str, int] = defaultdict(int)
    lines: dict[str, int] = defaultdict(int)
    files: dict[str, int] = defaultdict(int)
    imports: dict[str, set[str]] = defaultdict(set)
    for path in package_files(root):
        rel = path.relative_to(root)
        room = room_of(rel)
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(rel))
        count = len(source.splitlines())
        lines[room] += count
        files[room] += 1
        if count > LONG_FILE:
            long_files.append((rel.as_posix(), count))
        sig_any[room] += sum(map(mentions_any, public_annotations(tree.body)))
        mentions[room] += sum(map(is_any, ast.walk(tree)))  # ``import Any`` is an alias, not a Name
        for module in shoal_imports(tree):
            other = module.split(".")[1]
            if other in ROOMS and other != room:
                imports[room].add(other)
    rooms = [r for r in (TOP, *ROOMS) if r in files]
    return {
        "files_over_400_lines": [list(f) for f in sorted(long_files, key=lambda f: (-f[1], f[0]))],
        "any_in_public_signatures": {r: sig_any[r] for r in rooms},
        "any_mentions": {r: mentions[r] for r in rooms},
        "lines_per_room": {r: lines[r] for r in rooms},
        "files_per_room": {r: files[r] for r in rooms},
        "room_imports": {r: sorted(imports[r]) for r in rooms},
    }


def report(shape: Shape, root: Path) -> str:
    """The shape as plain aligned text: one row per room, then the long files."""
    table = [["room", "files", "lines", "Any in public sigs", "Any mentions", "imports rooms"]]
    for room, n in shape["files_per_room"].items():
        lines, sigs = shape["lines_per_room"][room], shape["any_in_public_signatures"][room]
        counts = [str(c) for c in (n, lines, sigs, shape["any_mentions"][room])]
        table.append([room, *counts, ", ".join(shape["room_imports"][room])])
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    out = [f"code shape of {root}", ""]
    for row in table:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    out += ["", f"files over {LONG_FILE} lines:"]
    out += [f"  {n:5d}  {p}" for p, n in shape["files_over_400_lines"]] or ["  none"]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    root = args.root.resolve()
    shape = measure(root)
    print(report(shape, root))
    if args.json:
        print(json.dumps(shape))


if __name__ == "__main__":
    main()
