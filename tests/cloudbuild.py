"""cloudbuild.yaml's steps as Cloud Build would run them: each step's script rendered with
Cloud Build's substitution rules, then run by bash (tests/test_cloudbuild_steps.py,
tests/e2e/test_supply_chain_docker.py)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLOUDBUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
STEPS = {step["id"]: step for step in CLOUDBUILD["steps"]}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def render(text: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution: $$ is a $, ${NAME} and $NAME are the value (empty when
    none is given, as for a built-in the build does not have)."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return values.get(match.group(1) or match.group(2), "")

    return _VARIABLE.sub(one, text)


def substitutions(**overrides: str) -> dict[str, str]:
    values = {"PROJECT_ID": "p", "SHORT_SHA": "abc1234", **CLOUDBUILD["substitutions"]}
    values = {k: render(v, values) for k, v in values.items()}
    values.update(overrides)
    return values


def bash_script(step_id: str, values: dict[str, str]) -> str:
    args = STEPS[step_id]["args"]
    assert STEPS[step_id].get("entrypoint") == "bash" and args[0] == "-ec", step_id
    return render(args[1], values)


def run_step(step_id: str, values: dict, cwd: Path, path_dir: Path | None = None):
    env = dict(os.environ)
    if path_dir is not None:
        env["PATH"] = f"{path_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", "-ec", bash_script(step_id, values)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def shim(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/usr/bin/env bash\nset -eu\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
