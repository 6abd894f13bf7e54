"""One process of a monitoring race (test_retrain.py starts two with multiprocessing's spawn).

Kept apart from the test module so that a racer imports only the registry (fast to spawn).
"""

from __future__ import annotations

import contextlib
import time


def monitor(uri, name, window_id, barrier, results, hold, use_lock) -> None:
    """Waits at ``barrier``, then records a drifted window ``window_id`` under the default
    policy; puts (window id, record as a dict) or (window id, "error: ...").

    ``hold`` seconds pass between the decision and its write (the window a race needs);
    ``use_lock=False`` is the control: what MLflow's API alone does.
    """
    from components.lib.registry import Registry
    from components.lib.retrain import RetrainPolicy

    registry = Registry(uri, actor=f"racer-{window_id}")
    registry._before_commit = lambda: time.sleep(hold)
    if not use_lock:
        registry._lock = lambda name: contextlib.nullcontext("no-lock")
        registry._check_lock = lambda name, token: None
    barrier.wait(timeout=120)
    try:
        record = registry.monitor_window(
            name,
            RetrainPolicy(),
            window_id=window_id,
            start="2026-11-02T00:00:00+00:00",
            end="2026-11-03T00:00:00+00:00",
            drift=True,
            decay=False,
            rows=5000,
            run_id=f"run-{window_id}",
        )
        results.put((window_id, record.to_dict()))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((window_id, f"error: {type(exc).__name__}: {exc}"))
