"""The ``loopline`` console script for people and CI (pyproject ``[project.scripts]``).

Each command group is a module here with ``add_commands(subparsers)``, a thin layer over the
shared library (``components.lib``); :mod:`components.cli.main` builds the parser from
:data:`components.cli.main.GROUPS`. The entry point is :func:`components.cli.main.main` (the
package imports nothing, so its modules import each other without a cycle).
"""
