"""The retraining policy: should this window of served traffic start a retrain?

A recurring continuous-training run monitors one window of served traffic at a time and
gets its signals: ``drift`` (the inputs moved away from the champion's baseline) and
``decay`` (its measured quality fell). :func:`decide` turns the signals, the monitoring log
of the earlier windows and the registry's record of rejected retrains into a
:class:`Decision`, under a :class:`RetrainPolicy` with hysteresis. The rules, in the order
they are checked (the first that blocks is the one reported, ``Decision.blocked_by`` names
its policy field):

1. **Undecided window** (``decided=False``: too few rows to judge): no decision; the window
   neither breaks nor extends a streak.
2. **Triggers**: only the signals in ``triggers`` may trigger (``drift``, ``decay``); the
   **schedule** trigger (``schedule_days`` > 0) fires when the last retrain (or, before any,
   the first monitored window) is at least ``schedule_days`` old, whatever the signals. No
   signal and no schedule due: no retrain, nothing blocked.
3. ``min_interval_hours``: no retrain within this long of the last one.
4. ``cooldown_after_reject_hours``: no retrain within this long of a retrained version being
   ``rejected`` or ``rolled_back`` (the registry's state machine).
5. ``max_per_period``: at most this many retrains in any ``period_days``.
6. ``consecutive_windows``: a signal must hold in this many consecutive decided windows,
   this one included, counted since the last retrain (the trigger window uses up its streak).
   The schedule trigger does not need a streak.

A "retrain" is a window whose record says ``retrain: True`` (the trigger), at the time it was
recorded (``WindowRecord.at``). Rules 3-5 are the guard rails: they are checked before the
streak, so a window inside the minimum interval says so even when its streak is short.

The log itself, its idempotence by window id and its lock live in the registry
(:meth:`components.lib.registry.Registry.monitor_window`); this module is pure (stdlib, yaml
inside :meth:`RetrainPolicy.load`): no mlflow, no kfp.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

SIGNALS = ("drift", "decay")
SCHEDULE = "schedule"
POLICIES_DIR = Path(__file__).resolve().parent / "retrain_policies"
DEFAULT_POLICY = "default"


class PolicyError(ValueError):
    """A retrain policy field is unknown or wrong; the message names the field."""


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class RetrainPolicy:
    """When a monitored window may start a retrain (see the module docstring). In YAML::

    consecutive_windows: 2            # windows in a row with the signal, this one included
    min_interval_hours: 24            # since the last retrain
    cooldown_after_reject_hours: 72   # since a retrained version was rejected / rolled back
    max_per_period: 3                 # retrains in any period_days
    period_days: 7
    schedule_days: 0                  # retrain when the last retrain is this old; 0 = off
    triggers: [drift, decay]          # the signals that may trigger
    """

    consecutive_windows: int = 2
    min_interval_hours: float = 24
    cooldown_after_reject_hours: float = 72
    max_per_period: int = 3
    period_days: float = 7
    schedule_days: float = 0
    triggers: tuple = SIGNALS

    def __post_init__(self):
        _check_int(self.consecutive_windows, "consecutive_windows", 1)
        _check_int(self.max_per_period, "max_per_period", 1)
        for name in ("min_interval_hours", "cooldown_after_reject_hours", "schedule_days"):
            _check_number(getattr(self, name), name, minimum=0)
        _check_number(self.period_days, "period_days", minimum=0, strict=True)
        triggers = self.triggers
        if isinstance(triggers, str) or not isinstance(triggers, list | tuple):
            raise PolicyError(
                f"policy.triggers: expected a list of {' / '.join(SIGNALS)}, got {triggers!r}"
            )
        for i, t in enumerate(triggers):
            if t not in SIGNALS:
                raise PolicyError(
                    f"policy.triggers[{i}]: {t!r} is not a signal ({', '.join(SIGNALS)})"
                )
        if len(set(triggers)) != len(triggers):
            raise PolicyError(f"policy.triggers: repeated signal in {list(triggers)}")
        object.__setattr__(self, "triggers", tuple(triggers))

    @classmethod
    def from_mapping(cls, m: Mapping) -> RetrainPolicy:
        """From the YAML / JSON shape above; a :class:`PolicyError` names the wrong key."""
        if not isinstance(m, Mapping):
            raise PolicyError(f"policy: expected a mapping, got {type(m).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in m if k not in known)
        if unknown:
            raise PolicyError(f"policy.{unknown[0]}: unknown field (known: {', '.join(known)})")
        return cls(**dict(m))

    @classmethod
    def load(cls, spec: str | Path) -> RetrainPolicy:
        """The policy ``spec`` names: a bundled name (``default``; the files in
        ``components/lib/retrain_policies/``), a YAML / JSON file path, or YAML / JSON text."""
        text = (str(spec) if spec is not None else "").strip() or DEFAULT_POLICY
        where = "policy"
        looks_like_text = "\n" in text or text[:1] in ("{", "[") or ":" in text
        if not looks_like_text:
            path = Path(text)
            if not path.is_file():
                path = POLICIES_DIR / f"{text}.yaml"
                if not path.is_file():
                    raise PolicyError(
                        f"policy {text!r}: no such file and no bundled policy of that name "
                        f"(bundled: {', '.join(bundled_policies())})"
                    )
            text, where = path.read_text(), str(path)
        try:
            data = json.loads(text)
        except ValueError:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise PolicyError(f"{where}: neither JSON nor YAML: {exc}") from None
        return cls.from_mapping({} if data is None else data)

    def as_dict(self) -> dict:
        return {**asdict(self), "triggers": list(self.triggers)}


def bundled_policies() -> list[str]:
    return sorted(p.stem for p in POLICIES_DIR.glob("*.yaml"))


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"policy.{name}: expected an integer >= {minimum}, got {value!r}")


def _check_number(value, name: str, minimum: float, strict: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise PolicyError(f"policy.{name}: expected a number {bound}, got {value!r}")


# --------------------------------------------------------------------------- records


@dataclass
class WindowRecord:
    """One monitored window as the monitoring log records it (once; never rewritten)."""

    window_id: str
    start: str  # the window's first time (ISO, as the caller gave it)
    end: str
    at: str  # UTC ISO: when it was recorded (the time of the retrain when retrain is True)
    drift: bool
    decay: bool
    rows: int
    decided: bool  # False: too few rows to judge (no decision)
    retrain: bool
    trigger: str | None  # drift | decay | schedule | None
    reason: str
    run_id: str = ""  # the monitoring run that recorded it
    model_version: str = ""  # the version that served the window
    blocked_by: str | None = None  # the policy field that blocked a retrain
    consecutive: int = 0  # the streak of the trigger signal (or the longest) at this window
    seq: int = 0  # its place in the log (1, 2, ...)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> WindowRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def at_time(self) -> datetime:
        return _parse(self.at)


@dataclass
class Decision:
    retrain: bool
    trigger: str | None  # drift | decay | schedule | None
    reason: str  # one sentence naming the rule that held or blocked
    blocked_by: str | None = None  # the policy field, when a rule blocked a retrain
    consecutive: int = 0


def _parse(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return _utc(when)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------- the decision


def streaks(history: Sequence[WindowRecord]) -> dict[str, int]:
    """Each signal's run of consecutive decided windows at the end of ``history``, counted
    since the last retrain (undecided windows are skipped: they neither break nor extend)."""
    out = dict.fromkeys(SIGNALS, 0)
    for record in history:
        if record.retrain:
            out = dict.fromkeys(SIGNALS, 0)
            continue
        if not record.decided:
            continue
        for signal in SIGNALS:
            out[signal] = out[signal] + 1 if getattr(record, signal) else 0
    return out


def decide(
    policy: RetrainPolicy,
    history: Sequence[WindowRecord],
    *,
    window_id: str,
    drift: bool,
    decay: bool,
    decided: bool,
    now: datetime,
    rejected_at: Sequence[datetime] = (),
    last_retrain_at: datetime | None = None,
) -> Decision:
    """Whether the window ``window_id`` with these signals starts a retrain (pure).

    Args:
        history: The earlier windows' records, in record order (not this window).
        decided: False when the window had too few rows to judge.
        now: This window's decision time (UTC; a naive time is taken as UTC).
        rejected_at: When retrained versions moved to ``rejected`` / ``rolled_back``.
        last_retrain_at: A retrain the log does not hold (e.g. a manual one); the later of it
            and the last trigger in ``history`` counts.
    """
    now = _utc(now)
    signals = {"drift": bool(drift), "decay": bool(decay)}
    before = streaks(history)
    if not decided:
        longest = max(before.values())
        return Decision(
            False,
            None,
            f"no decision: window {window_id} had too few rows to judge (it neither breaks nor "
            "extends a streak)",
            None,
            longest,
        )
    streak = {s: (before[s] + 1 if signals[s] else 0) for s in SIGNALS}
    retrains = [_utc(r.at_time) for r in history if r.retrain]
    last = max([*retrains, *([_utc(last_retrain_at)] if last_retrain_at else [])], default=None)

    # 2. which trigger would fire (a signal in `triggers`; else the schedule)
    present = [s for s in policy.triggers if signals[s]]
    ignored = [s for s in SIGNALS if signals[s] and s not in policy.triggers]
    schedule_due = False
    if policy.schedule_days > 0:
        since = last or (history[0].at_time if history else None)
        schedule_due = since is not None and now - since >= timedelta(days=policy.schedule_days)
    if not present and not schedule_due:
        if ignored:
            return Decision(
                False,
                None,
                f"no retrain: {' and '.join(ignored)} in this window, but the policy's triggers "
                f"are {', '.join(policy.triggers) or 'none'}",
                "triggers",
                max(streak.values()),
            )
        return Decision(False, None, "no retrain: no drift or decay in this window", None, 0)
    ready = [s for s in present if streak[s] >= policy.consecutive_windows]
    if ready:
        trigger = ready[0]
        held = (
            f"{trigger} in {_plural(streak[trigger], 'consecutive window')} "
            f"(policy: {policy.consecutive_windows})"
        )
    elif schedule_due:
        trigger = SCHEDULE
        held = (
            f"schedule: last retrain {'' if last else '(none; monitoring began) '}"
            f"{_hours(now - (last or history[0].at_time)) / 24:.1f} days ago >= schedule_days "
            f"{policy.schedule_days:g}"
        )
    else:
        trigger = None
        held = ""
    count = streak[trigger] if trigger in SIGNALS else max(streak[s] for s in present or SIGNALS)
    pending = ", ".join(
        f"{s} in {streak[s]} of {policy.consecutive_windows} consecutive windows" for s in present
    )
    context = f" ({held or pending})"

    # 3-5. the guard rails
    if last is not None and now - last < timedelta(hours=policy.min_interval_hours):
        return Decision(
            False,
            None,
            f"blocked: last retrain {_hours(now - last):.1f} h ago < min_interval_hours "
            f"{policy.min_interval_hours:g}{context}",
            "min_interval_hours",
            count,
        )
    recent = [_utc(r) for r in rejected_at]
    cooling = [r for r in recent if now - r < timedelta(hours=policy.cooldown_after_reject_hours)]
    if cooling:
        newest = max(cooling)
        return Decision(
            False,
            None,
            f"blocked: a retrained version was rejected {max(_hours(now - newest), 0):.1f} h ago "
            f"< cooldown_after_reject_hours {policy.cooldown_after_reject_hours:g}{context}",
            "cooldown_after_reject_hours",
            count,
        )
    period = timedelta(days=policy.period_days)
    in_period = [t for t in retrains if now - t < period]
    if len(in_period) >= policy.max_per_period:
        return Decision(
            False,
            None,
            f"blocked: {_plural(len(in_period), 'retrain')} in the last {policy.period_days:g} "
            f"days >= max_per_period {policy.max_per_period}{context}",
            "max_per_period",
            count,
        )

    # 6. the streak
    if trigger is None:
        return Decision(
            False,
            None,
            f"not yet: {pending} (policy: consecutive_windows {policy.consecutive_windows})",
            "consecutive_windows",
            count,
        )
    return Decision(True, trigger, f"retrain: {held}", None, count)
