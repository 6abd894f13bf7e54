"""Tampered artifacts for the tests of the verified loader (components/lib/artifacts.py).

:func:`plant_trap` swaps a pickled artifact for a booby-trapped pickle: unpickling it
creates a marker file (instead of returning an object), so a test can tell "refused
before unpickling" (no marker) from "unpickled, then failed" (marker). The fixture
``no_unpickling`` (tests/fixtures.py) also makes ``joblib.load`` fail loudly for a test's
duration. Standard library only.
"""

from __future__ import annotations

import pathlib
import pickle
import re


class _Trap:
    """Unpickles to ``Path(marker).touch()``: any code path that unpickles it leaves the marker."""

    def __init__(self, marker: pathlib.Path):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def plant_trap(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """Overwrites the pickle at ``path`` with the trap; returns the marker's path."""
    pathlib.Path(path).write_bytes(pickle.dumps(_Trap(marker)))
    return pathlib.Path(marker)


def refusal_pattern(name: str, expected: str) -> str:
    """The IntegrityError message for ``name`` whose recorded sha256 was ``expected``."""
    return (
        rf"{re.escape(name)} at .* does not match the sha256 its producer recorded: "
        rf"expected {expected}, actual [0-9a-f]{{64}}; refusing to load it"
    )
