"""Loading a JSON spec by bundled name, by path, or from JSON text (a pipeline parameter)."""

from __future__ import annotations

import json
from pathlib import Path


def load_json(ref: str, bundled_dir: Path, what: str, error: type[Exception]) -> dict:
    """Returns the spec ``ref`` names: JSON text, a file path, or a name in ``bundled_dir``.

    Raises ``error`` naming ``what`` and the bundled names when there is no such spec,
    or when the JSON does not parse.
    """
    text = ref.strip()
    try:
        if text.startswith("{"):
            return json.loads(text)
        path = Path(ref)
        if not path.exists():
            path = bundled_dir / f"{ref}.json"
        if not path.exists():
            known = sorted(p.stem for p in bundled_dir.glob("*.json"))
            raise error(f"{what} {ref!r} not found; bundled: {', '.join(known)}")
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{what} {ref[:60]!r} is not valid JSON: {exc}") from exc
