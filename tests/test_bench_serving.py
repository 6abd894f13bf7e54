"""bench/serving.py without servers: wrk's report is read right (captured samples), the V2
bodies and the wrk script are what the servers expect, and the bar is computed as the issue
states it (at 8 connections, >= 5x MLServer's throughput with p99 <= 20 ms)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench" / "serving.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_serving"] = module  # its dataclass looks its module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_serving", None)


# Captured from wrk 4.1.0 here: MLServer, 1 connection.
CLEAN = """\
Running 1s test @ http://127.0.0.1:56361/v2/models/bikeshare/infer
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.97ms    1.94ms  20.99ms   92.21%
    Req/Sec    76.70      6.67    80.00     80.00%
  Latency Distribution
     50%   12.42ms
     75%   13.31ms
     90%   14.20ms
     99%   20.99ms
  77 requests in 1.01s, 47.75KB read
Requests/sec:     76.49
Transfer/sec:     47.43KB
"""

# Captured: a server answering 501 to every POST (microseconds in the distribution).
NON_2XX = """\
Running 1s test @ http://127.0.0.1:18777/x
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.57ms    1.69ms  12.16ms   83.79%
    Req/Sec     1.57k   330.51     2.29k    70.00%
  Latency Distribution
     50%  744.00us
     75%    2.28ms
     90%    4.13ms
     99%    7.87ms
  1561 requests in 1.00s, 846.05KB read
  Non-2xx or 3xx responses: 1561
Requests/sec:   1555.93
Transfer/sec:    843.30KB
"""

# Captured: a stalled server (a timeout, seconds in the distribution after editing 99%).
TIMEOUT = """\
Running 2s test @ http://127.0.0.1:56361/v2/models/bikeshare/infer
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00    100.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    1.50s
  1 requests in 2.10s, 635.00B read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:      0.48
Transfer/sec:     302.48B
"""


def test_a_clean_report(bench):
    got = bench.parse_wrk(CLEAN)
    assert got["rps"] == 76.49 and got["requests"] == 77
    assert (got["p50_ms"], got["p75_ms"], got["p90_ms"], got["p99_ms"]) == (
        12.42,
        13.31,
        14.2,
        20.99,
    )
    assert got["errors"] == 0 and got["non_2xx"] == 0 and got["socket_errors"] == 0


def test_non_2xx_responses_are_errors_and_microseconds_are_read(bench):
    got = bench.parse_wrk(NON_2XX)
    assert got["non_2xx"] == 1561 and got["errors"] == 1561
    assert got["p50_ms"] == 0.744 and got["p99_ms"] == 7.87 and got["rps"] == 1555.93


def test_socket_errors_are_errors_and_seconds_are_read(bench):
    got = bench.parse_wrk(TIMEOUT)
    assert got["socket_errors"] == 3 and got["errors"] == 3 and got["p99_ms"] == 1500.0


def test_a_report_without_latency_distribution_is_refused(bench):
    without = "\n".join(
        line for line in CLEAN.splitlines() if not line.strip().startswith(("50%", "99%"))
    )
    with pytest.raises(ValueError, match="latency distribution"):
        bench.parse_wrk(without)
    with pytest.raises(ValueError, match="Requests/sec"):
        bench.parse_wrk(CLEAN.replace("Requests/sec", "Reqs"))


def _row(server, connections, rps, p99, ok=True, label=None):
    return {
        "server": server,
        "label": label or server,
        "workers": 1,
        "connections": connections,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "errors": 0 if ok else 3,
        "ok": ok,
    }


def test_ratios_are_to_the_best_mlserver_row_at_the_same_connections(bench):
    rows = [
        _row("mlserver", 1, 60.0, 20.0),
        _row("mlserver", 8, 50.0, 250.0),
        _row("mlserver", 8, 80.0, 150.0),
        _row("serving", 8, 400.0, 12.0),
        _row("serving", 1, 300.0, 4.0),
        _row("naive", 8, 40.0, 300.0, ok=False),
    ]
    bench.add_ratios(rows)
    assert [r["ratio_to_mlserver"] for r in rows] == [1.0, 0.62, 1.0, 5.0, 5.0, None]


def test_the_bar_met_and_the_aim_not(bench):
    rows = [
        _row("mlserver", 8, 80.0, 150.0),
        _row("serving", 8, 900.0, 35.0, label="fast, 2w"),  # fastest, but p99 too high
        _row("serving", 8, 400.0, 19.0, label="fast, 1w"),
        _row("serving", 8, 2000.0, 5.0, ok=False, label="broken"),  # errors: not counted
        _row("serving", 1, 700.0, 2.0),  # 1 connection: not the bar's
    ]
    got = bench.bar(rows)
    assert got["best"] == "fast, 1w, 1 worker(s)" and got["ratio"] == 5.0
    assert got["required_rps"] == 400.0 and got["met"] is True
    assert got["aim_met"] is False
    assert "bar MET" in bench.bar_text(got) and "aim not met" in bench.bar_text(got)


def test_the_bar_not_met_names_the_fastest_when_none_is_within_the_p99_bound(bench):
    rows = [
        _row("mlserver", 8, 100.0, 150.0),
        _row("serving", 8, 700.0, 25.0, label="a"),
        _row("serving", 8, 650.0, 30.0, label="b"),
    ]
    got = bench.bar(rows)
    assert got["best"] == "a, 1 worker(s)" and got["met"] is False and got["aim_met"] is False
    got = bench.bar([*rows, _row("serving", 8, 660.0, 9.5, label="c")])
    assert got["best"] == "c, 1 worker(s)" and got["met"] is True and got["aim_met"] is True


def test_without_our_rows_the_bar_is_not_checked(bench):
    got = bench.bar([_row("mlserver", 8, 70.0, 200.0)])
    assert got["met"] is None and got["best"] is None
    assert "bar not checked" in bench.bar_text(got)
    assert "nothing to compare" in bench.bar_text(bench.bar([]))


def test_bodies_name_every_column_with_its_v2_datatype(bench):
    dtypes = {
        "temp": np.dtype("float64"),
        "hr": np.dtype("int64"),
        "weathersit": np.dtype("object"),
    }
    row = {"temp": 0.24, "hr": 3, "weathersit": "clear"}
    plain = bench.v2_body(row, dtypes, pandas_codec=False)
    assert "parameters" not in plain
    assert plain["inputs"] == [
        {"name": "temp", "shape": [1], "datatype": "FP64", "data": [0.24]},
        {"name": "hr", "shape": [1], "datatype": "INT64", "data": [3]},
        {"name": "weathersit", "shape": [1], "datatype": "BYTES", "data": ["clear"]},
    ]
    pd_body = bench.v2_body(row, dtypes, pandas_codec=True)
    assert pd_body["parameters"] == {"content_type": "pd"}
    assert pd_body["inputs"][2]["parameters"] == {"content_type": "str"}


def test_the_wrk_script_posts_the_body_verbatim(bench):
    body = json.dumps({"inputs": [{"name": "x", "data": ["]]"]}]})
    script = bench.lua_script(body)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert f"wrk.body = [=[{body}]=]" in script


def test_the_table_and_figure_are_written_from_rows(bench):
    rows = [_row("mlserver", 8, 80.0, 150.0), _row("serving", 8, 700.0, 9.0, label="ours")]
    rows[1]["cpu_cores"] = {"server": 1.2, "wrk": 0.5, "other": 0.0}
    bench.add_ratios(rows)
    results = {
        "rows": rows,
        "bar": bench.bar(rows),
        "duration_s": 10,
        "warmup_s": 3,
        "machine": "2 cores",
    }
    text = bench.table(results)
    assert "| ours | 1 | 8 | 700 | 4.50 | 9.00 | 0 | 8.75 | 1.20 / 0.50 / 0.00 |" in text
    assert "bar MET" in text and "aim met" in text
    figure = bench.svg(rows)
    assert figure.startswith("<svg") and figure.count("<rect") == 1 + 2 * len(rows)
