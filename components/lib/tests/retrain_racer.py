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
    ``use_lock=False`` is the control: what MLflow's API alone does. There both racers may
    write the same tag at once and the tracking server may refuse one write (a unique-key
    conflict in its database); the racer then puts its decision with ``write_error`` set.
    """
    from components.lib import registry as registry_module
    from components.lib.registry import Registry
    from components.lib.retrain import RetrainPolicy

    decisions = []
    decide = registry_module.retrain.decide

    def recorded_decide(*args, **kwargs):
        decisions.append(decide(*args, **kwargs))
        return decisions[-1]

    registry_module.retrain.decide = recorded_decide

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
        error = f"error: {type(exc).__name__}: {exc}"
        if use_lock or not decisions:
            results.put((window_id, error))
        else:  # the control: the decision was made, only its write lost the race
            results.put((window_id, {"retrain": decisions[-1].retrain, "write_error": error}))
