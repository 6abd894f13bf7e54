"""One process of a registry race (test_registry.py starts two with multiprocessing's spawn).

Kept apart from the test module so that a racer imports only the registry (fast to spawn).
"""

from __future__ import annotations

import contextlib
import time


def race(uri, name, version, to_state, barrier, results, hold, use_lock) -> None:
    """Waits at ``barrier``, then moves ``version`` to ``to_state``; puts (version, outcome).

    ``hold`` seconds pass between the registry's checks and its write (the window a race
    needs); ``use_lock=False`` is the control: what MLflow's API alone does.
    """
    from components.lib.registry import IllegalTransition, Registry

    registry = Registry(uri, actor=f"racer-{version}")
    registry._before_commit = lambda: time.sleep(hold)
    if not use_lock:
        registry._lock = lambda name: contextlib.nullcontext("no-lock")
        registry._check_lock = lambda name, token: None
    barrier.wait(timeout=120)
    try:
        registry.transition(name, version, to_state, f"race by {version}")
        results.put((version, "ok"))
    except IllegalTransition as exc:
        results.put((version, f"illegal: {exc}"))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((version, f"error: {type(exc).__name__}: {exc}"))
