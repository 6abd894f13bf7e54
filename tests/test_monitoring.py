"""manifests/monitoring: the alert rules (promtool check and unit tests), the generated
PrometheusRule, and the Grafana dashboard (structure, every PromQL expression valid and
naming only series that exist).

promtool (Debian's prometheus package) is required: a missing promtool fails, never skips.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_manifests import ROOT, by_kind_and_name, render

MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "loopline-rules.yaml"
RULE_TESTS = MONITORING / "tests" / "loopline-rules.test.yaml"
DASHBOARD = MONITORING / "dashboards" / "loopline-serving.json"
README = MONITORING / "README.md"
KSM_WORKFLOWS = MONITORING / "kube-state-metrics-workflows.yaml"
# Alerts about pipeline runs, not models: labelled by recurring run instead of model/version.
PIPELINE_ALERTS = {"LooplineRecurringRunFailed"}

# Grafana's variables, replaced by something promtool parses.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$model": "bikeshare",
    "$version": ".*",
}
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_PROMQL_WORDS |= {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    if not shutil.which("promtool"):
        pytest.fail("promtool is not on PATH (Debian: apt-get install prometheus)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, keywords, label names,
    strings, durations and numbers left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rollout_gauges() -> set[str]:
    """The rollout's series as README.md's "Rollout gauges" table names them (the contract
    the rollout implementation exports)."""
    section = README.read_text().split("## Rollout gauges", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(loopline_rollout_[a-z_]+)`", section, re.MULTILINE))


def known_series() -> set[str]:
    """Every series name the model server exports (from its own metric objects) plus the
    rollout gauges."""
    from prometheus_client import REGISTRY

    import components.serving.capture  # noqa: F401  (registers the capture's metrics)
    from components.serving import metrics

    names = {
        name
        for names in REGISTRY._collector_to_names.values()
        for name in names
        if name.startswith("loopline_") and not name.endswith("_created")
    }
    # The prediction histogram is made at load time, with the model's buckets.
    (histogram,) = re.findall(
        r'"(loopline_[a-z_]+)"', inspect.getsource(metrics.prediction_histogram)
    )
    names |= {histogram + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names | rollout_gauges() | workflow_series()


def workflow_series() -> set[str]:
    """The series kube-state-metrics makes from kube-state-metrics-workflows.yaml: its
    metricNamePrefix, "_", each metric's name (kube-state-metrics' custom resource state)."""
    config = yaml.safe_load(KSM_WORKFLOWS.read_text())
    return {
        f"{resource['metricNamePrefix']}_{metric['name']}"
        for resource in config["spec"]["resources"]
        for metric in resource["metrics"]
    }


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def alerts() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


# --- the rule file ------------------------------------------------------------------------


def test_promtool_checks_the_rule_file():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    # The error rate fires for 10% server errors and not for 0.5% (nor for 4xx, nor for a
    # trickle); p99 latency on slow buckets; not ready; traffic stopped; capture; rollout.
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_cover_every_alert():
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in alerts()}


def _rule_tests_on(text: str, tmp_path):
    """promtool's unit tests of the rules, run on ``text`` (a changed copy of the rules)."""
    assert text != RULES.read_text()
    (tmp_path / "tests").mkdir()
    (tmp_path / "loopline-rules.yaml").write_text(text)
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    return promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path / "tests")


def test_the_unit_tests_fail_when_an_alert_would_not_fire(tmp_path):
    # promtool test really compares: raise the error-rate threshold above 10% and the test
    # file fails.
    text = RULES.read_text().replace(") > 0.05\n", ") > 0.5\n")
    result = _rule_tests_on(text, tmp_path)
    assert result.returncode != 0
    assert "LooplineHighServerErrorRate" in result.stdout + result.stderr


def test_every_alert_has_severity_summary_description_and_runbook():
    # GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^### (.+)$", README.read_text(), re.MULTILINE)
    }
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook"}, rule["alert"]
        if rule["alert"] in PIPELINE_ALERTS:
            for key in ("summary", "description"):
                assert "{{ $labels.recurring_run }}" in notes[key], (rule["alert"], key)
            for by in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
                assert {"namespace", "recurring_run"} <= {x.strip() for x in by.split(",")}
        for key in ("summary", "description"):
            if rule["alert"] in PIPELINE_ALERTS:
                continue
            assert "{{ $labels.model }}" in notes[key], (rule["alert"], key)
        # per version, except the per-model traffic alert and the pipeline alerts
        if rule["alert"] != "LooplineTrafficStopped" and rule["alert"] not in PIPELINE_ALERTS:
            assert "{{ $labels.version }}" in notes["summary"], rule["alert"]
            # every aggregation keeps the model and the version
            for by in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
                assert {"model", "version"} <= {x.strip() for x in by.split(",")}, rule["alert"]
        anchor = re.match(r"manifests/monitoring/README\.md#([a-z0-9-]+):", notes["runbook"])
        assert anchor and anchor.group(1) in anchors, (rule["alert"], notes["runbook"])


def test_rules_name_only_series_that_exist():
    known = known_series()
    for group in rule_groups():
        for rule in group["rules"]:
            assert metric_names(rule["expr"]) <= known, (rule.get("alert"), rule["expr"])


def test_the_rollout_gauges_are_documented_and_used():
    gauges = rollout_gauges()
    assert {"loopline_rollout_step", "loopline_rollout_failed_checks"} <= gauges
    used = set()
    for rule in alerts():
        used |= metric_names(rule["expr"])
    for expr in dashboard_expressions().values():
        used |= metric_names(expr)
    assert gauges <= used, gauges - used


# --- the PrometheusRule -----------------------------------------------------------------


def test_the_prometheus_rule_is_generated_from_the_rule_file():
    script = MONITORING / "render_prometheusrule.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_monitoring_kustomization_renders_the_rule_and_the_dashboard():
    docs = render(MONITORING)
    objects = by_kind_and_name(docs)
    assert set(objects) == {
        ("PrometheusRule", "loopline"),
        ("ConfigMap", "loopline-grafana-dashboards"),
        ("PodMonitor", "loopline-model-servers"),
    }
    # The PodMonitor (no CRD schema here either): every InferenceService's predictor pods,
    # on the port and path the ServingRuntime's server listens on.
    monitor = objects[("PodMonitor", "loopline-model-servers")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    runtime = yaml.safe_load((ROOT / "manifests" / "serving" / "servingruntime.yaml").read_text())
    (server,) = runtime["spec"]["containers"]
    assert endpoint["targetPort"] == server["ports"][0]["containerPort"]
    assert endpoint["path"] == runtime["metadata"]["annotations"]["prometheus.kserve.io/path"]
    (selector,) = monitor["spec"]["selector"]["matchExpressions"]
    assert selector == {"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}
    rule = objects[("PrometheusRule", "loopline")]
    # no CRD schema for it here: its structure as the Prometheus Operator reads it
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == rule_groups()
    assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "loopline"
    allowed_rule_keys = {"alert", "record", "expr", "for", "labels", "annotations"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for entry in group["rules"]:
            assert set(entry) <= allowed_rule_keys and ("alert" in entry) != ("record" in entry)
            assert all(isinstance(v, str) for v in entry.get("labels", {}).values())
            assert all(isinstance(v, str) for v in entry.get("annotations", {}).values())
    configmap = objects[("ConfigMap", "loopline-grafana-dashboards")]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {DASHBOARD.name: DASHBOARD.read_text()}
    # within the ConfigMap limit and client-side apply's annotation limit
    assert len(DASHBOARD.read_bytes()) < 256 * 1024


# --- the dashboard ------------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def grafana_to_promql(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + variable[1:] + "}", value).replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def dashboard_expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard (targets and variable queries), with
    Grafana's variables replaced, by where it is."""
    found = {}
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            found[f"panel {panel['id']} target {target['refId']}"] = grafana_to_promql(
                target["expr"]
            )
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_]+)\)", query)
        assert match, query
        found[f"variable {variable['name']}"] = grafana_to_promql(match.group(1))
    return found


def test_the_dashboard_structure():
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["query"]["query"] == "label_values(loopline_requests_total, model)"
    assert variables["version"]["query"]["query"] == (
        'label_values(loopline_requests_total{model="$model"}, version)'
    )
    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip()
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    # no two panels overlap
    cells = set()
    for panel in panels:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, panel["title"]
        cells |= mine


def test_the_dashboard_has_the_panels_asked_for():
    exprs = " ".join(dashboard_expressions().values())
    for needed in (
        "loopline_requests_total",  # request rate, canary share
        "loopline_request_errors_total",
        "histogram_quantile(0.5, sum by (version, le) (rate(loopline_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (version, le) (rate(loopline_request_duration_seconds_bucket",
        "loopline_prediction_bucket",
        "loopline_capture_rows_written_total",
        "loopline_capture_write_failures_total",
        "loopline_capture_rows_pending",
        "loopline_model_ready",
        "loopline_model_info",
    ):
        assert needed in exprs, needed
    titles = {p["title"] for p in all_panels(dashboard()["panels"])}
    assert "Canary traffic share" in titles


def test_every_dashboard_expression_passes_promtool(tmp_path):
    expressions = dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": expr}
                    for i, expr in enumerate(expressions.values())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_promtool_refuses_a_broken_dashboard_expression(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (version (x)"}]}]}
        )
    )
    assert promtool("check", "rules", str(path)).returncode != 0


def test_dashboard_expressions_name_only_series_that_exist():
    known = known_series()
    for where, expr in dashboard_expressions().items():
        assert metric_names(expr) <= known, (where, metric_names(expr) - known)


def test_metric_names_finds_series_and_nothing_else():
    expr = (
        'histogram_quantile(0.99, sum by (version, le) (rate(a_bucket{model="m", le!="1e3"}[5m])))'
        " / ignoring (kind) group_left sum(b_total offset 1h) > 1e3 and on (x) c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


# --- failed recurring runs (kube-state-metrics over KFP's Argo Workflows) -------------------


def test_the_workflow_series_come_from_kfps_labels_on_argo_workflows():
    # KFP's ScheduledWorkflow controller labels every Workflow it starts with
    # scheduledworkflows.kubeflow.org/scheduledWorkflowName (kubeflow/pipelines
    # backend/src/common/util/consts.go, LabelKeyWorkflowScheduledWorkflowName) and the API
    # server with pipeline/runid (LabelKeyWorkflowRunId).
    config = yaml.safe_load(KSM_WORKFLOWS.read_text())
    assert config["kind"] == "CustomResourceStateMetrics"
    [resource] = config["spec"]["resources"]
    assert resource["groupVersionKind"] == {
        "group": "argoproj.io",
        "version": "v1alpha1",
        "kind": "Workflow",
    }
    labels = resource["labelsFromPath"]
    assert labels["recurring_run"] == [
        "metadata",
        "labels",
        "scheduledworkflows.kubeflow.org/scheduledWorkflowName",
    ]
    assert labels["run_id"] == ["metadata", "labels", "pipeline/runid"]
    assert labels["namespace"] == ["metadata", "namespace"]
    metrics = {m["name"]: m["each"] for m in resource["metrics"]}
    phase = metrics["status_phase"]["stateSet"]
    assert phase["path"] == ["status", "phase"] and phase["labelName"] == "phase"
    # Argo's workflow phases (pkg/apis/workflow/v1alpha1/workflow_phase.go; "" is Unknown)
    assert set(phase["list"]) == {"Pending", "Running", "Succeeded", "Failed", "Error"}
    finished = metrics["finished_timestamp_seconds"]["gauge"]
    assert finished == {"path": ["status", "finishedAt"], "nilIsZero": True}
    [rule] = [r for r in alerts() if r["alert"] == "LooplineRecurringRunFailed"]
    assert metric_names(rule["expr"]) == workflow_series()


def test_the_recurring_run_unit_test_fails_when_error_runs_are_ignored(tmp_path):
    # Argo ends a Workflow in Error (not Failed) when it could not run a step at all; a rule
    # that looks at Failed only misses the `hourly` run in the unit test.
    text = RULES.read_text().replace('phase=~"Failed|Error"', 'phase="Failed"')
    result = _rule_tests_on(text, tmp_path)
    assert result.returncode != 0
    assert "LooplineRecurringRunFailed" in result.stdout + result.stderr
    assert "hourly" in result.stdout + result.stderr
