"""Loopline KFP components: one folder per component (component.py, executor.py, component.yaml)."""

from components._version import __version__

__all__ = ["__version__"]
