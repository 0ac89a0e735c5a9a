"""shoal: a distributed actor-learner system for deep reinforcement learning.

The repository root is the ``shoal`` package (``package-dir = {"shoal" = "."}``), so every
room imports as ``shoal.<room>`` and nothing generic lands at the top of site-packages.

As a library: ``shoal.train(algo, env, **settings)`` and ``shoal.load(run_dir)``
(``launcher/api.py``). They are imported on first use, so ``import shoal`` (and every
``shoal.<room>`` import under it) stays free of torch until one is called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from shoal.launcher import api

        return getattr(api, name)
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")
