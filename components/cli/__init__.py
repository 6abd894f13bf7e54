"""The ``loopline`` console script for people and CI (pyproject ``[project.scripts]``).

Each command group is a module here with ``add_commands(subparsers)``, a thin layer over the
shared library (``components.lib``); :mod:`components.cli.main` builds the parser from
:data:`components.cli.main.GROUPS`. Later groups (rollout, schedule, compile, submit,
upload) are added the same way.
"""

from components.cli.main import main

__all__ = ["main"]
