"""Tuned settings shipped as data: a catalogue per algorithm (``presets/<algo>.yaml``),
keyed by gymnasium id, and defaults per family of environments for the ids it does not
name. ``shoal train`` applies the match under ``--config`` and the flags (defaults <
preset < --config < flags) and says which it took; ``--no-preset`` leaves the
algorithm's dataclass defaults alone.

A preset is a piece of the run configuration (the tree ``--print-config`` prints, less
algo, env and seed), checked as ``--config`` is, with the figure it was measured at::

    envs:
      Pendulum-v1:
        measured: -400 in 49k-59k env steps on 3/3 seeds (benchmarks/presets.py)
        settings:
          run: {total_env_steps: 100000}
          algorithm: {gamma: 0.9, env_steps_per_update: 4096}
    families:
      continuous vector control: {measured: ..., settings: {...}}

The family is read from the env's spaces (``family_of``), so a task nobody tuned for still
gets settings made for its kind: frames get the Atari shape, Box actions the settings of
continuous control, discrete actions on vectors those of classic control.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shoal.algorithms.base import EnvSpec
from shoal.algorithms.networks import is_image

PRESETS_DIR = Path(__file__).with_name("presets")
FAMILIES = ("discrete vector control", "continuous vector control", "image observations")
SECTIONS = frozenset({"run", "collection", "replay", "learner", "algorithm"})
"""What a preset may set: every section of the run configuration; algo, env and seed are
what it is chosen by."""


@dataclass(frozen=True)
class Preset:
    algo: str
    key: str                             # a gymnasium id, or one of FAMILIES
    settings: Mapping[str, Mapping[str, Any]]
    measured: str                        # the figure it was measured at, and how

    @property
    def is_family(self) -> bool:
        return self.key in FAMILIES

    @property
    def description(self) -> str:
        """What ``shoal train`` prints: ``preset ppo/Pendulum-v1``, or ``defaults for
        continuous vector control``."""
        return (f"{self.algo}'s defaults for {self.key}" if self.is_family
                else f"preset {self.algo}/{self.key}")


def family_of(spec: EnvSpec) -> str:
    """The family an env's spaces put it in."""
    if is_image(spec):
        return "image observations"
    return "discrete vector control" if spec.discrete else "continuous vector control"


@functools.cache
def catalogue(algo: str) -> tuple[Preset, ...]:
    """Every preset of ``algo``, envs first, then families; none when it has no file."""
    path = PRESETS_DIR / f"{algo}.yaml"
    if not path.exists():
        return ()
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - {"envs", "families"})
    if unknown:
        raise ValueError(f"{path.name}: unknown key(s) {unknown}; expected envs, families")
    presets = []
    for group in ("envs", "families"):
        for key, entry in (data.get(group) or {}).items():
            if group == "families" and key not in FAMILIES:
                raise ValueError(f"{path.name}: families: {key!r} is not one of {FAMILIES}")
            presets.append(_preset(path.name, algo, str(key), entry or {}))
    return tuple(presets)


def _preset(where: str, algo: str, key: str, entry: Mapping[str, Any]) -> Preset:
    extra = sorted(set(entry) - {"measured", "settings"})
    if extra:
        raise ValueError(f"{where}: {key}: unknown key(s) {extra}; expected measured, settings")
    settings = entry.get("settings") or {}
    wrong = sorted(set(settings) - SECTIONS)
    if wrong:
        raise ValueError(f"{where}: {key}: settings: unknown section(s) {wrong}; expected "
                         f"{sorted(SECTIONS)}")
    return Preset(algo, key, {section: dict(values or {}) for section, values
                              in settings.items()}, str(entry.get("measured", "not measured")))


def preset_for(algo: str, env_id: str, spec: EnvSpec) -> Preset | None:
    """The preset of ``algo`` for ``env_id``; else the defaults of its family; else None
    (the algorithm's dataclass defaults stand)."""
    presets = {preset.key: preset for preset in catalogue(algo)}
    return presets.get(env_id) or presets.get(family_of(spec))
