"""Logging set-up for every Loopline entry point (component bodies, CLIs, the demo).

Only the standard library: every image imports it.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(name)s %(message)s"


def setup(level: int = logging.INFO) -> None:
    """Sends every logger's records at ``level`` and above to stderr, one line each.

    Replaces handlers set up before (``force``): in a KFP task or a CLI this is the
    entry point's set-up, and a second call must not print every line twice.
    """
    logging.basicConfig(level=level, format=FORMAT, force=True)
