"""Writes prometheusrule.yaml, the Prometheus Operator's PrometheusRule, from loopline-rules.yaml.

loopline-rules.yaml is the one source of the rules (a plain Prometheus loads it as it is);
kustomize cannot embed one YAML document in another, so this script does, and its output is
committed. tests/test_monitoring.py fails when the committed file differs from what this
script writes now.

    python manifests/monitoring/render_prometheusrule.py          # rewrite prometheusrule.yaml
    python manifests/monitoring/render_prometheusrule.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "loopline-rules.yaml"
OUTPUT = HERE / "prometheusrule.yaml"
NAME = "loopline"

HEADER = """\
# GENERATED from loopline-rules.yaml by render_prometheusrule.py: edit that file, then run
#   python manifests/monitoring/render_prometheusrule.py
# The Prometheus Operator's PrometheusRule (monitoring.coreos.com/v1) with the same groups as
# the plain Prometheus rule file. A Prometheus picks it up when its ruleSelector and
# ruleNamespaceSelector match (README.md, "On a cluster").
"""


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line strings (the PromQL expressions) as literal blocks, as they are written in
    # the rule file, so the generated file reads like the source.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(groups: list[dict]) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": NAME,
            "labels": {
                "app.kubernetes.io/name": "loopline-alerts",
                "app.kubernetes.io/part-of": "loopline",
            },
        },
        "spec": {"groups": groups},
    }


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    body = yaml.dump(
        prometheus_rule(groups), Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
