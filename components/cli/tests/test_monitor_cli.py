"""``loopline monitor history`` in-process (``main(argv)``) against the session's real MLflow
tracking server: the monitoring log as a table and as JSON, and one-line failures."""

from __future__ import annotations

import json

import pytest

from components.cli import main as cli_main
from components.lib.registry import Registry
from components.lib.retrain import RetrainPolicy


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.unit
def test_help_needs_no_server(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main.main(["monitor", "history", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "MODEL" in text and "--json" in text and "--tracking-uri URI" in text
    assert run(capsys, "monitor")[0] == 2  # the group alone: its help, usage exit


@pytest.mark.mlflow
def test_monitor_history_prints_the_log_as_a_table_and_as_json(capsys, tracking_uri):
    registry = Registry(tracking_uri, actor="pytest")
    name = "cli-monitor"
    registry._ensure_model(name)
    uri = ("--tracking-uri", tracking_uri)
    code, out, err = run(capsys, "monitor", "history", name, *uri)
    assert (code, out.strip(), err) == (0, f"no monitored windows of {name}", "")
    for window_id, decided in (("day-1", True), ("day-2", False), ("day-3", True)):
        registry.monitor_window(
            name,
            RetrainPolicy(),
            window_id=window_id,
            start=f"{window_id}T00:00",
            end=f"{window_id}T24:00",
            drift=decided,
            decay=False,
            rows=5000 if decided else 4,
            decided=decided,
        )
    code, out, err = run(capsys, "monitor", "history", name, *uri)
    assert code == 0 and err == "", err
    header, *rows = out.strip().splitlines()
    assert header.split()[:4] == ["SEQ", "RECORDED", "(UTC)", "WINDOW"]
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    assert "blocked (consecutive_windows)" in rows[0] and "drift" in rows[0]
    assert "(undecided)" in rows[1] and "no decision" in rows[1]
    assert "RETRAIN (drift)" in rows[2]
    assert "drift in 2 consecutive windows (policy: 2)" in rows[2]
    code, out, _ = run(capsys, "monitor", "history", name, "--json", *uri)
    records = json.loads(out)
    assert code == 0 and [r["window_id"] for r in records] == ["day-1", "day-2", "day-3"]
    assert [r["retrain"] for r in records] == [False, False, True]
    assert records[2]["trigger"] == "drift" and records[1]["decided"] is False


@pytest.mark.mlflow
def test_an_unknown_model_fails_with_one_line(capsys, tracking_uri):
    code, out, err = run(
        capsys, "monitor", "history", "no-such-model", "--tracking-uri", tracking_uri
    )
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no-such-model" in lines[0] and "does not exist" in lines[0]
