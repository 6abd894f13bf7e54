"""Retries and timeouts of the pipelines' tasks that touch the network (one table for both).

A task in ``POLICY`` gets KFP's retry policy (``set_retry``: exponential back-off, 30 s
doubling up to 10 min) when a rerun of it is safe, and a deadline (``kubernetes.set_timeout``:
the pod's ``activeDeadlineSeconds``) always, so a hung endpoint ends the task instead of the
run waiting forever. Clients inside the tasks have their own timeouts and retries
(components/lib/network.py); this is the layer above them, for a pod that dies or a call
that fails after the client's own retries.

Not retried, on purpose: ``register`` (a rerun after a partial registration could make a
second version), ``rollout`` (a rerun would restart the step's clock; a failed rollout is
settled by the exit handler and resumed by a new run), ``tune-katib`` (the Experiment is
named after the run: a rerun would find its own Experiment). Tasks that only compute
(transform, tune, train, evaluate, the relays and the data gate) read and write only the
artifacts KFP hands them and have neither.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

HOUR = 3600
# task name -> (retries, deadline in seconds)
POLICY: dict[str, tuple[int, int]] = {
    "find-champion": (3, HOUR // 4),
    "ingest": (3, HOUR),
    "feature-join": (2, HOUR),
    "validate": (2, 2 * HOUR),
    "register": (0, HOUR // 2),
    "push": (3, HOUR // 2),
    "rollout": (0, 12 * HOUR),
    "settle": (2, HOUR // 2),
    "tune-katib": (0, 24 * HOUR),
    "read-window": (3, HOUR // 2),
    "detect-drift": (2, HOUR // 2),
}


def apply(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    """Sets the retry policy and the deadline of a task named in ``POLICY``; others unchanged."""
    if name not in POLICY:
        return task
    retries, deadline = POLICY[name]
    if retries:
        task.set_retry(
            num_retries=retries,
            backoff_duration="30s",
            backoff_factor=2.0,
            backoff_max_duration="600s",
        )
    kubernetes.set_timeout(task, deadline)
    return task
