"""Finds credentials where none may be: image layers, compiled YAML and log files.

    python -m tests.secrets_scan --image loopline/pipeline:0.1.0 --path build/yaml --path logs/

Looks for the demo and test credentials this repository uses on purpose (the dev overlay's
Secrets, the demo's and the tests' loopback S3 keys, the test Redis password) and for key
patterns: an AWS access key id (AKIA... / ASIA...), a private key header, a value given to
``aws_secret_access_key``. An image is read as ``docker save`` writes it: every file of every
layer, plus the image config (its Env, labels and the build history: what ``docker history
--no-trunc`` shows). Each finding names the image, layer and file, or the file. Standard
library only, so that any Python (a Cloud Build step, an image) can run it. Exit code 1 when
something is found.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Credentials committed on purpose, for throwaway set-ups only. None may reach an image, a
# compiled YAML or a log line. tests/test_supply_chain.py checks that this list covers every
# one of them in the repository (manifests/overlays/dev, examples/, tests/).
DEMO_CREDENTIALS = (
    "minio123",  # Kubeflow's default MinIO secret key (manifests/overlays/dev)
    "devOnlyRedisPassword",  # the dev overlay's Redis password
    "loopline-demo-secret",  # examples/bikeshare/demo.py: the loopback S3 endpoint's key
    "loopline-test-secret",  # tests/fixtures.py: the tests' loopback S3 endpoint's key
    "loopline0test0redis",  # components/materialize/tests: the test Redis password
)

# (what, pattern). Bytes patterns: layers hold binaries as well as text.
PATTERNS = [
    ("demo credential", re.compile(b"|".join(re.escape(c.encode()) for c in DEMO_CREDENTIALS))),
    ("dev-only credential", re.compile(rb"dev-only-[A-Za-z0-9][A-Za-z0-9-]*")),
    ("AWS access key id", re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    (
        "private key",
        # A header and a body: the header alone is a constant in every TLS library's parser.
        re.compile(
            rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
            rb"[ \t]*\r?\n(?:[ \t]*[A-Za-z-]+:[^\n]*\n)*\s*[A-Za-z0-9+/=]{40}"
        ),
    ),
    (
        "aws_secret_access_key value",
        re.compile(
            rb"(?i)aws_secret_access_key[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
    ),
]

# Third-party files that ship published test keys, by their path in a layer: (pattern name,
# path, why). Each was looked at; a key anywhere else is a finding.
ALLOWED_FILES = (
    (
        "private key",
        re.compile(r"/usr/lib/[^/]+/libgnutls\.so[.\d]*$"),
        "GnuTLS's FIPS 140 power-on self-test keys (Debian's libgnutls30)",
    ),
    (
        "private key",
        re.compile(r"/site-packages/Crypto/SelfTest/[\w/]+\.py$"),
        "pycryptodome's self-test vectors (a dependency of the pipeline image's lock)",
    ),
)

# Cheap first look (bytes.find is far faster than a regex): a file none of these occurs in
# cannot match any pattern above.
_NEEDLES = tuple(c.encode() for c in DEMO_CREDENTIALS) + (
    b"dev-only-",
    b"AKIA",
    b"ASIA",
    b"PRIVATE KEY",
    b"_secret_access_key",
    b"_SECRET_ACCESS_KEY",
    b"_Secret_Access_Key",
)


def _may_match(data: bytes) -> bool:
    return any(needle in data for needle in _NEEDLES)


@dataclass(frozen=True)
class Finding:
    where: str  # image, layer and path, or a file's path
    what: str  # the pattern's name
    match: str  # the match, redacted for key patterns

    def __str__(self) -> str:
        return f"{self.where}: {self.what} {self.match!r}"


def _redact(what: str, text: str) -> str:
    # The demo credentials are public; anything else is shown by its first characters only.
    if what in ("demo credential", "dev-only credential"):
        return text
    return text[:24] + ("..." if len(text) > 24 else "")


def _allowed(where: str, what: str) -> bool:
    return any(what == name and path.search(where) for name, path, _ in ALLOWED_FILES)


def scan_bytes(data: bytes, where: str) -> list[Finding]:
    """Every credential in ``data``; ``where`` names it in the findings."""
    found = []
    for finding in (Finding(where, what, text) for what, text in _matches(data)):
        if finding not in found and not _allowed(where, finding.what):
            found.append(finding)
    return found


CHUNK = 8 << 20  # files are read 8 MiB at a time (a layer can hold a 1 GB shared library)
_OVERLAP = 512  # longer than any match, so that a match across two chunks is seen


def scan_stream(fileobj, where: str) -> list[Finding]:
    """Every credential in a file read from ``fileobj`` in chunks; each finding once per file
    (a value that occurs ten times in a file is one finding)."""
    found, tail = [], b""
    while chunk := fileobj.read(CHUNK):
        data = tail + chunk
        for finding in scan_bytes(data, where):
            if finding not in found:
                found.append(finding)
        tail = data[-_OVERLAP:]
    return found


def _matches(data: bytes) -> Iterator[tuple[str, str]]:
    """(pattern name, the match, redacted) of every credential in ``data``."""
    if not _may_match(data):
        return
    for what, pattern in PATTERNS:
        for match in pattern.finditer(data):
            if match.group(0).endswith(b"EXAMPLE") or b"EXAMPLEKEY" in match.group(0):
                continue  # AWS's documentation keys (botocore ships them in its examples)
            text = match.group(0).decode("utf-8", "replace")
            yield what, _redact(what, text)


class _Prefixed:
    """A read-only stream: ``head`` (already read) and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream):
        self.head, self.stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.stream.read(size)
        if size is None or size < 0:
            data, self.head = self.head + self.stream.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        if len(data) < size:
            data += self.stream.read(size - len(data))
        return data


def scan_file(fileobj, where: str) -> Iterator[Finding]:
    """A file, or, when it is a tar, every file in it, recursively (a layer in a ``docker
    save`` archive, a tar inside a layer). A gzip file is scanned decompressed."""
    head = fileobj.read(512)
    if len(head) == 512 and head[257:262] == b"ustar":
        yield from scan_tar(_Prefixed(head, fileobj), where)
    elif head[:2] == b"\x1f\x8b":
        data = head + fileobj.read()
        with contextlib.suppress(OSError, EOFError):  # not gzip after all: the bytes as they are
            data = gzip.decompress(data)
        if len(data) >= 512 and data[257:262] == b"ustar":
            yield from scan_tar(io.BytesIO(data), where)
        else:
            yield from scan_bytes(data, where)
    else:
        yield from scan_stream(_Prefixed(head, fileobj), where)


def scan_tar(fileobj, where: str) -> Iterator[Finding]:
    """Every file of a (possibly compressed) tar stream, read once, front to back."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if member.isfile():
                yield from scan_file(tar.extractfile(member), f"{where}/{member.name}")


def scan_images(images: list[str]) -> list[Finding]:
    """Every layer and the config of each image (local images), through one ``docker save``
    (which writes a layer that several images share once)."""
    proc = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
    try:
        found = scan_saved(proc.stdout)
    finally:
        proc.stdout.close()
        code = proc.wait()
    if code:
        raise RuntimeError(f"docker save {' '.join(images)} failed (exit {code})")
    return found


def scan_saved(fileobj) -> list[Finding]:
    """Every layer and config of a ``docker save`` archive, read front to back. A finding
    names the images that hold the layer (from the archive's manifest.json), the layer and
    the file."""
    found, holders = [], {}
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            member_file = tar.extractfile(member)
            if member.name == "manifest.json":
                for entry in json.loads(member_file.read()):
                    tags = entry.get("RepoTags") or [entry["Config"]]
                    for part in [entry["Config"], *entry["Layers"]]:
                        holders.setdefault(part, []).extend(tags)
                        if part.endswith("/layer.tar"):  # the layer's folder: its json too
                            holders.setdefault(part.removesuffix("layer.tar"), []).extend(tags)
                continue
            found.extend(scan_file(member_file, member.name))
    named = []
    for finding in found:
        parts = [p for p in holders if finding.where.startswith(p)]
        if not parts:
            named.append(finding)
            continue
        part = max(parts, key=len)
        inner = finding.where[len(part) :].lstrip("/").removeprefix("./")
        if part == finding.where:
            what = "config (Env, labels, history)"
        elif part.endswith("/"):
            what = f"layer metadata {inner} (the image config again)"
        else:
            what = f"/{inner}"
        where = f"{', '.join(sorted(set(holders[part])))}: {part.rstrip('/')}: {what}"
        named.append(Finding(where, finding.what, finding.match))
    return named


def scan_paths(paths: Iterable[str | Path]) -> list[Finding]:
    """Every file under each path (a file or a folder); tar files are opened."""
    found = []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"nothing to scan at {root}")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            with path.open("rb") as fileobj:
                found.extend(scan_file(fileobj, str(path)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", action="append", default=[], help="a local image (repeat)")
    parser.add_argument(
        "--saved", action="append", default=[], help="a `docker save` archive (repeat)"
    )
    parser.add_argument(
        "--path", action="append", default=[], help="a file or folder: YAML, logs, tars (repeat)"
    )
    args = parser.parse_args(argv)
    if not args.image and not args.path and not args.saved:
        parser.error("nothing to scan: give --image, --saved or --path")
    found = scan_paths(args.path)
    for archive in args.saved:
        with open(archive, "rb") as fileobj:
            found.extend(scan_saved(fileobj))
    if args.image:
        found.extend(scan_images(args.image))
    for finding in found:
        print(finding, file=sys.stderr)
    inputs = args.image + args.saved + args.path
    scanned = len(inputs)
    if found:
        print(
            f"secrets_scan: {len(found)} credential(s) found in {scanned} input(s)", file=sys.stderr
        )
        return 1
    print(f"secrets_scan: no credential in {', '.join(inputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
