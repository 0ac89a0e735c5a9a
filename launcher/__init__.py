"""Orchestration and the ``shoal`` command line."""
