"""cloudbuild.yaml and the Makefile build the images the compiled YAMLs name."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components import __version__, _images

ROOT = Path(__file__).resolve().parent.parent
CLOUDBUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
IMAGE_DIRS = sorted(p.parent.name for p in (ROOT / "images").glob("*/Dockerfile"))


def test_every_image_family_has_a_dockerfile_and_a_lock():
    assert IMAGE_DIRS == sorted(_images.FAMILIES + _images.SERVICES)
    for family in IMAGE_DIRS:
        lock = (ROOT / "images" / family / "requirements.txt").read_text().splitlines()
        pins = [line for line in lock if line and not line.startswith("#")]
        assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", p) for p in pins), family


def test_cloudbuild_version_is_the_package_version():
    assert CLOUDBUILD["substitutions"]["_VERSION"] == __version__


def test_cloudbuild_shell_variables_are_escaped_from_substitution():
    # Cloud Build substitutes $NAME and ${NAME}; shell variables must be written $$name.
    for step in CLOUDBUILD["steps"]:
        for arg in step.get("args", []):
            for name in re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", arg):
                assert name.isupper(), (
                    f"step {step['id']}: ${name} would be taken as a substitution"
                )


def test_make_help_lists_every_target_with_a_line():
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    listed = set(re.findall(r"^\s+(?:\x1b\[1m)?([a-z-]+)", out, re.MULTILINE))
    required = {
        "setup",
        "engine",
        "base-image",
        "images",
        "compile",
        "check-compiled",
        "lint",
        "test",
        "demo",
        "clean",
    }
    assert required <= listed


# --- cloudbuild.yaml, the release --------------------------------------------------------------
# Each check_* returns the problems of a config (the parsed cloudbuild.yaml), one line each,
# so that a tampered copy can show that the check fails and names the cause.

PIPELINES = sorted(p.parent.name for p in (ROOT / "pipelines").glob("*/pipeline.yaml"))
# Cloud Build's own substitutions (https://cloud.google.com/build/docs/configuring-builds/
# substitute-variable-values): the only names without a leading underscore a config may use.
BUILTIN_SUBSTITUTIONS = {
    "PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA",
    "SHORT_SHA", "REVISION_ID", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME",
    "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
}  # fmt: skip
_SUBSTITUTION = re.compile(
    r"(?<!\$)(?:\$\$)*\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def _steps(config: dict) -> dict[str, dict]:
    return {step["id"]: step for step in config["steps"]}


def _script(step: dict) -> str:
    """What a step runs, as one text (a bash script, or the args of a plain docker step)."""
    return "\n".join(step.get("args", []))


def _after(config: dict) -> dict[str, set[str]]:
    """Every step's transitive prerequisites, with Cloud Build's waitFor semantics: absent,
    a step waits for every step before it; ["-"], for none."""
    ids = [step["id"] for step in config["steps"]]
    direct = {}
    for i, step in enumerate(config["steps"]):
        wait = step.get("waitFor")
        direct[step["id"]] = set(ids[:i]) if wait is None else set(wait) - {"-"}
    closed = {}

    def close(step_id: str, seen: tuple = ()) -> set[str]:
        if step_id not in closed:
            assert step_id not in seen, f"waitFor cycle through {step_id}"
            deps = set()
            for dep in direct.get(step_id, ()):
                deps |= {dep} | close(dep, (*seen, step_id))
            closed[step_id] = deps
        return closed[step_id]

    return {step_id: close(step_id) for step_id in ids}


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _families_looped(script: str) -> list[str]:
    match = re.search(r"for family in ([a-z ]+); do", script)
    return match.group(1).split() if match else []


def check_order(config: dict) -> list[str]:
    steps, after = _steps(config), _after(config)
    problems = []
    if config["steps"][0]["id"] != "fetch-schemas":
        problems.append(f"the first step is {config['steps'][0]['id']}, not fetch-schemas")
    pushes = [s for s in steps if s.startswith("push-")]
    rules = [("fetch-schemas", "tests"), ("install", "tests"), ("install", "lint")]
    rules += [
        (gate, p) for p in pushes for gate in ("tests", "lint", "check-non-root", "scan-images")
    ]
    rules += [(f"build-{p[len('push-') :]}", p) for p in pushes]
    rules += [(p, "digests") for p in pushes]
    rules += [("digests", "compile"), ("compile", "upload"), ("check-compiled", "upload")]
    rules += [("upload", "schedule"), ("upload", "submit")]
    for first, then in rules:
        if first not in steps or then not in steps:
            problems.append(f"no step {first if first not in steps else then}")
        elif first not in after[then]:
            problems.append(f"{then} does not wait for {first}")
    return problems


def check_images(config: dict) -> list[str]:
    steps, problems = _steps(config), []
    for family in IMAGE_DIRS:
        tags = [f"${{_REGISTRY}}/{family}:${{_VERSION}}", f"${{_REGISTRY}}/{family}:${{SHORT_SHA}}"]
        build = steps.get(f"build-{family}", {}).get("args", [])
        if f"images/{family}/Dockerfile" not in build:
            problems.append(f"no build step builds images/{family}/Dockerfile")
        built = {build[i + 1] for i, arg in enumerate(build[:-1]) if arg == "-t"}
        problems += [f"build-{family} does not tag {tag}" for tag in tags if tag not in built]
        push = _script(steps.get(f"push-{family}", {}))
        problems += [
            f"push-{family} does not push {tag}" for tag in tags if f"docker push {tag}" not in push
        ]
        problems += [f"images: lacks {tag}" for tag in tags if tag not in config.get("images", [])]
        for step_id in ("check-non-root", "save-images", "digests"):
            if family not in _families_looped(_script(steps.get(step_id, {}))):
                problems.append(f"{step_id} does not cover {family}")
    for step_id in steps:
        if step_id.startswith(("build-", "push-")) and step_id.split("-", 1)[1] not in IMAGE_DIRS:
            problems.append(f"{step_id}: there is no images/{step_id.split('-', 1)[1]}/Dockerfile")
    return problems


def check_pipelines(config: dict) -> list[str]:
    upload = _script(_steps(config).get("upload", {}))
    problems = []
    for name in PIPELINES:
        line = (
            f"loopline upload build/yaml/pipelines/{name}/pipeline.yaml --pipeline-name "
            f"loopline-{name.replace('_', '-')} --version-name ${{_VERSION}}-${{SHORT_SHA}}"
        )
        if line not in upload:
            problems.append(f"upload does not upload pipelines/{name}: no `{line}`")
    for name in re.findall(r"build/yaml/pipelines/(\w+)/pipeline\.yaml", upload):
        if name not in PIPELINES:
            problems.append(f"upload names pipelines/{name}, which does not exist")
    return problems


def check_compile(config: dict) -> list[str]:
    steps, problems = _steps(config), []
    compile_ = _script(steps.get("compile", {}))
    wanted = [
        "python -m components.cli compile --image-registry ${_REGISTRY} --digests digests.json "
        "--out-dir build/yaml",
        # every TARGETS path present and pinned by digest (tests/release_check.py)
        "python -m tests.release_check build/yaml --registry ${_REGISTRY} --digests digests.json",
        "python -m tests.secrets_scan --path build/yaml",
        "tar -czf build/loopline-yaml.tar.gz -C build yaml digests.json",
    ]
    problems += [f"compile does not run `{w}`" for w in wanted if w not in compile_]
    if "python -m pipelines.compile --check" not in _script(steps.get("check-compiled", {})):
        problems.append("check-compiled does not run `python -m pipelines.compile --check`")
    paths = config.get("artifacts", {}).get("objects", {}).get("paths", [])
    if "build/loopline-yaml.tar.gz" not in paths:
        problems.append("artifacts: build/loopline-yaml.tar.gz (the release YAML) is not uploaded")
    return problems


def check_substitutions(config: dict) -> list[str]:
    declared = set(config.get("substitutions", {}))
    used = set()
    for text in _strings({k: v for k, v in config.items() if k != "substitutions"}):
        used |= {a or b for a, b in _SUBSTITUTION.findall(text)}
    for value in config.get("substitutions", {}).values():
        used |= {a or b for a, b in _SUBSTITUTION.findall(value)}
    problems = [
        f"${name} is used but not declared"
        for name in sorted(used - declared)
        if name.startswith("_")
    ]
    problems += [
        f"${name} is neither declared nor Cloud Build's own"
        for name in sorted(used - declared - BUILTIN_SUBSTITUTIONS)
        if not name.startswith("_")
    ]
    problems += [f"{name} is declared but never used" for name in sorted(declared - used)]
    return problems


def check_timeouts_and_secrets(config: dict) -> list[str]:
    problems = []
    for step in config["steps"]:
        if not re.fullmatch(r"\d+s", str(step.get("timeout", ""))):
            problems.append(f"{step['id']} has no timeout")
    secrets = {s["env"] for s in config.get("availableSecrets", {}).get("secretManager", [])}
    for step_id in ("upload", "schedule", "submit"):
        step = _steps(config).get(step_id, {})
        if "KFP_TOKEN" not in step.get("secretEnv", []) or "KFP_TOKEN" not in secrets:
            problems.append(f"{step_id} does not get KFP_TOKEN from Secret Manager")
        if "KFP_HOST=${_KFP_HOST}" not in step.get("env", []):
            problems.append(f"{step_id} does not get KFP_HOST from _KFP_HOST")
    return problems


CHECKS = (check_order, check_images, check_pipelines, check_compile, check_substitutions,
          check_timeouts_and_secrets)  # fmt: skip


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_cloudbuild_release(check):
    assert check(CLOUDBUILD) == []


def _tampered(change) -> dict:
    config = copy.deepcopy(CLOUDBUILD)
    change(config)
    return config


def _drop_step(step_id):
    def change(config):
        config["steps"] = [s for s in config["steps"] if s["id"] != step_id]

    return change


def _set(step_id, key, value):
    def change(config):
        _steps(config)[step_id][key] = value

    return change


def _edit_script(step_id, old, new):
    def change(config):
        step = _steps(config)[step_id]
        step["args"] = [arg.replace(old, new) for arg in step["args"]]

    return change


@pytest.mark.parametrize(
    "check, change, problem",
    [
        (check_images, _drop_step("build-tuner"), "no build step builds images/tuner/Dockerfile"),
        (check_images, _edit_script("build-serving", "${_REGISTRY}/serving:${SHORT_SHA}", "x"),
         "build-serving does not tag ${_REGISTRY}/serving:${SHORT_SHA}"),
        (check_images, _edit_script("digests", "serving features", "serving"), "digests does not cover features"),
        (check_images, _edit_script("push-tfdv", "docker push ${_REGISTRY}/tfdv:${SHORT_SHA}", "true"),
         "push-tfdv does not push ${_REGISTRY}/tfdv:${SHORT_SHA}"),
        (check_order, _set("push-mlflow", "waitFor", ["build-mlflow"]), "push-mlflow does not wait for tests"),
        (check_order, _set("compile", "waitFor", ["install"]), "compile does not wait for digests"),
        (check_order, _set("tests", "waitFor", ["install"]), "tests does not wait for fetch-schemas"),
        (check_order, _set("schedule", "waitFor", ["compile"]), "schedule does not wait for upload"),
        (check_pipelines, _edit_script("upload", "pipelines/continuous_training/", "pipelines/training/"),
         "upload does not upload pipelines/continuous_training"),
        (check_compile, _edit_script("compile", "--digests digests.json --out-dir", "--out-dir"),
         "compile does not run `python -m components.cli compile"),
        (check_substitutions, _edit_script("schedule", "${_SCHEDULE_CRON}", "${_CRON}"),
         "$_CRON is used but not declared"),
        (check_substitutions, _edit_script("schedule", "${_SCHEDULE_CRON}", "0 0 * * * *"),
         "_SCHEDULE_CRON is declared but never used"),
        (check_timeouts_and_secrets, _set("upload", "secretEnv", []),
         "upload does not get KFP_TOKEN from Secret Manager"),
        (check_timeouts_and_secrets, lambda c: _steps(c)["push-pipeline"].pop("timeout"),
         "push-pipeline has no timeout"),
    ],
)  # fmt: skip
def test_a_tampered_cloudbuild_fails_the_check_naming_the_cause(check, change, problem):
    assert any(p.startswith(problem) for p in check(_tampered(change))), check(_tampered(change))


def test_the_previous_cloudbuild_fails_the_checks():
    # cloudbuild.yaml before the release steps: tests, builds with one tag, compile by tag.
    previous = {
        "substitutions": {"_VERSION": "0.1.0", "_REGISTRY": "r", "_BASE_IMAGE": "b", "_YAML_BUCKET": "g"},
        "steps": [
            {"id": "unit-tests", "name": "${_BASE_IMAGE}", "args": ["-ec", "pytest"]},
            *(
                {"id": f"build-{f}", "name": "docker", "waitFor": ["ca-context"],
                 "args": ["build", "-f", f"images/{f}/Dockerfile", "-t", f"${{_REGISTRY}}/{f}:${{_VERSION}}", "."]}
                for f in IMAGE_DIRS
            ),
            {"id": "compile-for-registry", "name": "${_BASE_IMAGE}", "waitFor": ["unit-tests"],
             "args": ["-ec", "python -m pipelines.compile --registry ${_REGISTRY} --out-dir /workspace/compiled"]},
        ],
        "images": [f"${{_REGISTRY}}/{f}:${{_VERSION}}" for f in IMAGE_DIRS],
        "artifacts": {"objects": {"location": "${_YAML_BUCKET}/${_VERSION}",
                                  "paths": ["compiled/components/*/component.yaml"]}},
    }  # fmt: skip
    failed = {check.__name__ for check in CHECKS if check(previous)}
    # Its substitutions were consistent; everything else was missing.
    assert failed == {check.__name__ for check in CHECKS} - {"check_substitutions"}
    assert "build-tuner does not tag ${_REGISTRY}/tuner:${SHORT_SHA}" in check_images(previous)
    assert "no step fetch-schemas" in check_order(previous)


def test_every_kfp_spec_on_disk_is_a_compile_target():
    """The component and pipeline YAMLs the release compiles are pipelines/compile.py's TARGETS;
    every KFP spec committed under components/ and pipelines/ is one of them (a glob of
    components/*/component.yaml missed katib_component.yaml and the relays)."""
    from pipelines.compile import TARGETS

    on_disk = set()
    for path in [*ROOT.glob("components/**/*.yaml"), *ROOT.glob("pipelines/**/*.yaml")]:
        doc = next(yaml.safe_load_all(path.read_text()))  # a spec may carry a platform spec
        if isinstance(doc, dict) and {"deploymentSpec", "pipelineInfo", "root"} <= doc.keys():
            on_disk.add(path.relative_to(ROOT).as_posix())
    targets = {rel for _, rel in TARGETS}
    assert on_disk == targets
    assert "components/tune/katib_component.yaml" in targets
    assert {f"pipelines/{name}/pipeline.yaml" for name in PIPELINES} <= targets


def test_the_dockerfiles_end_as_a_numeric_non_root_user():
    for family in IMAGE_DIRS:
        lines = (ROOT / "images" / family / "Dockerfile").read_text().splitlines()
        final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
        users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
        assert users, f"images/{family}/Dockerfile: the final stage sets no USER"
        uid, _, gid = users[-1].partition(":")
        assert uid.isdigit() and int(uid) > 0, f"images/{family}/Dockerfile: USER {users[-1]}"
        assert not gid or (gid.isdigit() and int(gid) > 0), (
            f"images/{family}/Dockerfile: USER {users[-1]}"
        )


def test_every_loopline_command_in_cloudbuild_parses_with_the_cli():
    """The release steps call the CLI with flags its parser knows (substitutions as values)."""
    import re
    import shlex

    from components.cli.main import build_parser

    parser = build_parser()
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    seen = set()
    for step in build["steps"]:
        script = " ".join(a for a in step.get("args", []) if isinstance(a, str))
        script = script.replace("\\\n", " ")
        for match in re.finditer(r"(?:bin/loopline|-m components\.cli)\s+([^\n]+)", script):
            line = re.sub(r"\$\{?\w+\}?", "X", match.group(1))
            args = parser.parse_args(shlex.split(line))  # exits 2 on an unknown flag
            assert getattr(args, "func", None), (step["id"], line)
            seen.add(shlex.split(line)[0])
    assert {"compile", "upload", "schedule", "submit"} <= seen
