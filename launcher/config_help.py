"""What ``--help`` and ``shoal config --algo X`` say of the run configuration, read from
its typed tree (``config.py``): each field's docstring (the string literal under it), its
type and its default, so the help is written once, beside the field it documents."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing
from typing import Any

from shoal.launcher.config import SECTIONS, TrainConfig
from shoal.launcher.config_types import describe_type
from shoal.launcher.flags import FLAGS


def field_type(section: str, name: str) -> Any:
    owner = TrainConfig if section == "" else SECTIONS[section]
    return typing.get_type_hints(owner)[name]


def field_default(section: str, name: str) -> Any:
    owner = TrainConfig if section == "" else SECTIONS[section]
    return next(f.default for f in dataclasses.fields(owner) if f.name == name)


def field_docs(owner: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body, or in a
    base's, where a subclass only changes its default), in one line: the help ``--help``
    and ``shoal config`` show."""
    docs: dict[str, str] = {}
    for cls in reversed(owner.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
        for before, after in itertools.pairwise(body):
            if (isinstance(before, ast.AnnAssign) and isinstance(before.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[before.target.id] = " ".join(after.value.value.split())
    return docs


def flag_help(flag: str) -> str:
    section, name = FLAGS[flag]
    owner = TrainConfig if section == "" else SECTIONS[section]
    doc = field_docs(owner).get(name, "")
    return f"{doc} (default: {field_default(section, name)})".replace("%", "%%")


def describe(algo: str) -> str:
    """Every field of ``algo``'s run configuration with its type, default, flag and doc:
    what ``shoal config --algo X`` prints."""
    from shoal.algorithms.registry import ALGORITHMS

    definition = ALGORITHMS[algo]
    owners: list[tuple[str, type]] = [("", TrainConfig), *SECTIONS.items(),
                                      ("algorithm", definition.config_type)]
    lines = []
    for section, owner in owners:
        lines.append(f"{section or 'top level'}:" if section != "algorithm"
                     else f"algorithm ({owner.__name__}):")
        docs, hints = field_docs(owner), typing.get_type_hints(owner)
        for item in dataclasses.fields(owner):
            if section == "" and item.name in ("env_spec", "algorithm", "settings",
                                               *SECTIONS):
                continue
            default = ("required" if item.default is dataclasses.MISSING
                       else f"default {item.default!r}")
            flag = next((f for f, place in FLAGS.items()
                         if place == (section, item.name) and f != "--num-actors"), None)
            lines.append(f"  {item.name}: {describe_type(hints[item.name])}, {default}"
                         + (f", flag {flag}" if flag else ""))
            if docs.get(item.name):
                lines += textwrap.wrap(docs[item.name], 88, initial_indent="      ",
                                       subsequent_indent="      ")
    return "\n".join(lines)
