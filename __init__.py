"""shoal: a distributed actor-learner system for deep reinforcement learning.

The repository root is the ``shoal`` package (``package-dir = {"shoal" = "."}``), so every
room imports as ``shoal.<room>`` and nothing generic lands at the top of site-packages.
"""

__version__ = "0.1.0"
