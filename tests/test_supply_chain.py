"""No credential in compiled YAML or the build config, and the scanner that says so
(tests/secrets_scan.py) finds what it claims to, naming the file. The images and the logs
are scanned in tests/e2e/test_supply_chain_docker.py."""

from __future__ import annotations

import ast
import base64
import gzip
import io
import os
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from tests import secrets_scan

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def _repo_demo_credentials() -> dict[str, str]:
    """Every credential committed on purpose, read from where it is committed."""
    found = {}
    dev = yaml.safe_load((ROOT / "manifests/overlays/dev/kustomization.yaml").read_text())
    for secret in dev["secretGenerator"]:
        for literal in secret.get("literals", []):
            key, _, value = literal.partition("=")
            if key in ("password", "secretkey"):
                found[f"manifests/overlays/dev {secret['name']} {key}"] = value

    def assigned(path: str, name: str):
        tree = ast.parse((ROOT / path).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                return ast.literal_eval(node.value)
        raise AssertionError(f"{path} no longer assigns {name}")

    demo = assigned("examples/bikeshare/demo.py", "DEMO_CREDENTIALS")
    found["examples/bikeshare/demo.py"] = demo["AWS_SECRET_ACCESS_KEY"]
    fixtures = (ROOT / "tests/fixtures.py").read_text()
    found["tests/fixtures.py"] = re.search(r'SECRET_KEY_ENV: "([^"]+)"', fixtures).group(1)
    found["components/materialize/tests/test_features_cluster.py"] = assigned(
        "components/materialize/tests/test_features_cluster.py", "PASSWORD"
    )
    return found


def test_the_scanner_knows_every_demo_credential_in_the_repository():
    credentials = _repo_demo_credentials()
    assert len(credentials) >= 8  # the dev overlay's six, the demo's, the tests'...
    for where, value in credentials.items():
        found = secrets_scan.scan_bytes(f"x {value} y".encode(), "probe")
        assert found, f"{where}: {value!r} would not be found"


def test_the_committed_yaml_and_the_build_config_hold_no_credential():
    from pipelines.compile import TARGETS

    paths = [ROOT / rel for _, rel in TARGETS] + [ROOT / "cloudbuild.yaml"]
    assert secrets_scan.scan_paths(paths) == []


def _pem_key() -> str:
    body = base64.encodebytes(os.urandom(600)).decode()
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n"


def _aws_key_id() -> str:
    return "AKIA" + base64.b32encode(os.urandom(10)).decode()[:16]


def _layer(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_planted_secret_in_a_layer_is_reported_with_its_file(tmp_path):
    """A docker-save-like archive: layers (tars) holding files; the findings name each file."""
    secret = "a" * 20 + "/B" * 10  # 40 characters, as an AWS secret access key
    layer = _layer(
        {
            "opt/venv/lib/ok.py": b"import os\nAWS_SECRET_ACCESS_KEY = os.environ['X']\n",
            "home/loopline/.aws/credentials": f"[default]\naws_secret_access_key = {secret}\n".encode(),
            "etc/app/key.pem": _pem_key().encode(),
            "opt/app/settings.json.gz": gzip.compress(f'{{"id": "{_aws_key_id()}"}}'.encode()),
        }
    )
    manifest = b'[{"Config": "0abc.json", "RepoTags": ["r/img:1"], "Layers": ["0abc/layer.tar"]}]'
    archive = tmp_path / "image.tar"
    archive.write_bytes(
        _layer(
            {
                "0abc/layer.tar": layer,
                "0abc.json": b'{"env": ["P=minio123"]}',
                "manifest.json": manifest,
            }
        )
    )
    found = {(f.where, f.what) for f in secrets_scan.scan_paths([archive])}
    assert found == {
        (f"{archive}/0abc/layer.tar/home/loopline/.aws/credentials", "aws_secret_access_key value"),
        (f"{archive}/0abc/layer.tar/etc/app/key.pem", "private key"),
        (f"{archive}/0abc/layer.tar/opt/app/settings.json.gz", "AWS access key id"),
        (f"{archive}/0abc.json", "demo credential"),
    }
    # Read as a `docker save` archive, each finding names the image and the layer.
    with archive.open("rb") as saved:
        named = {(f.where, f.what) for f in secrets_scan.scan_saved(saved)}
    assert named == {
        ("r/img:1: 0abc/layer.tar: /home/loopline/.aws/credentials", "aws_secret_access_key value"),
        ("r/img:1: 0abc/layer.tar: /etc/app/key.pem", "private key"),
        ("r/img:1: 0abc/layer.tar: /opt/app/settings.json.gz", "AWS access key id"),
        ("r/img:1: 0abc.json: config (Env, labels, history)", "demo credential"),
    }
    # The command line fails on it.
    assert secrets_scan.main(["--saved", str(archive)]) == 1
    assert secrets_scan.main(["--path", str(archive)]) == 1


def test_a_secret_across_two_reads_is_found_once(tmp_path, monkeypatch):
    monkeypatch.setattr(secrets_scan, "CHUNK", 4096)
    data = b"x" * 4090 + b"devOnlyRedisPassword" + b"y" * 10000 + b"minio123"
    path = tmp_path / "big.log"
    path.write_bytes(data)
    found = secrets_scan.scan_paths([path])
    assert [(f.match) for f in found] == ["devOnlyRedisPassword", "minio123"]


def test_only_the_listed_third_party_files_may_hold_a_key(tmp_path):
    key = _pem_key().encode()
    allowed = "image/0abc/layer.tar/./usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3"
    assert secrets_scan.scan_bytes(key, allowed) == []
    elsewhere = "image/0abc/layer.tar/./usr/lib/x86_64-linux-gnu/libplanted.so"
    assert [f.what for f in secrets_scan.scan_bytes(key, elsewhere)] == ["private key"]
    # A private-key header alone (a TLS library's parser constant) is not a key.
    assert secrets_scan.scan_bytes(b'"-----BEGIN RSA PRIVATE KEY-----"', elsewhere) == []
    # AWS's documentation keys are not credentials.
    assert secrets_scan.scan_bytes(b"AKIAIOSFODNN7EXAMPLE", elsewhere) == []


def test_the_command_line_passes_a_clean_folder_and_refuses_a_missing_one(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("image: r/pipeline@sha256:" + "0" * 64 + "\n")
    assert secrets_scan.main(["--path", str(tmp_path)]) == 0
    with pytest.raises(FileNotFoundError, match="nothing to scan at .*nowhere"):
        secrets_scan.main(["--path", str(tmp_path / "nowhere")])
