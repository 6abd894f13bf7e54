"""The import graph under components/: no component imports another, and no import cycles.

Built from the AST of every module under ``components/``: every ``import`` and
``from ... import`` counts, wherever it stands (module level, inside a function, under
``if TYPE_CHECKING:``), because each one is a dependency a reader and a refactor must
follow, and a cycle through a function-level import is still a cycle.

Rules (../shared/ARCHITECTURE.md, "Sharing code between components"):

* a module of one component (``components/<name>/``) imports only its own component's
  modules and the shared floor: ``components.lib`` and the root modules
  ``components._images`` / ``components._version`` (and the ``components`` package);
* ``components.lib`` and the root modules import no component;
* no import cycle anywhere under ``components/`` (tests included).

Tests (``components/<name>/tests/``) may import other components' modules: they build
real upstream artifacts the way the pipeline does (e.g. tune's tests fit and save a
transformer with transform's executor), and they are in no image (.dockerignore).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
ROOT_MODULES = ("components", "components._images", "components._version")

# Cycles that exist today and are being removed; each entry is the exact set of modules
# in one strongly connected component. Any other cycle fails the test, and so does an
# entry here that no longer is a cycle (drop it then).
KNOWN_CYCLES: list[frozenset[str]] = []


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path, package: str = "components") -> dict[str, Path]:
    """Every module under ``root/package``, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a known module (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules that module ``name`` imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # ``from pkg import x`` imports the module pkg.x when there is one, else pkg.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            resolved = _resolve(target, known)
            if resolved and resolved != name:
                found.add(resolved)
    return found


def graph(root: Path, package: str = "components") -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports(name, path, known) for name, path in known.items()}


def owner(name: str) -> str:
    """``root`` (the components package and its root modules), ``lib``, or the component's folder."""
    return "root" if name in ROOT_MODULES else name.split(".")[1]


def is_test(name: str) -> bool:
    return ".tests." in f"{name}."


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that cross from one component into another, or from the floor into a component."""
    out = []
    for source, targets in sorted(edges.items()):
        if is_test(source):
            continue
        mine = owner(source)
        for target in sorted(targets):
            theirs = owner(target)
            if theirs in ("root", "lib") or theirs == mine:
                continue
            floor = "the shared layer" if mine == "lib" else "a root module"
            who = f"component {mine!r}" if mine not in ("lib", "root") else floor
            out.append(f"{source} ({who}) imports {target} (component {theirs!r})")
    return out


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (a module's import of itself is not counted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(frozenset(members))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


# --------------------------------------------------------------------------- the tree


def test_no_component_imports_another_component():
    edges = graph(ROOT)
    assert "components.lib.storage" in edges and edges["components.tune.trial"]
    problems = violations(edges)
    assert not problems, (
        "imports across components (move shared code to components/lib/):\n" + "\n".join(problems)
    )


def test_no_import_cycles_beyond_the_known_ones():
    found = cycles(graph(ROOT))
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles under components/: {new}"
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"no longer a cycle; drop it from KNOWN_CYCLES: {stale}"


# --------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def fake(tmp_path):
    base = {
        "components/__init__.py": "from components._version import __version__\n",
        "components/_version.py": "__version__ = '0'\n",
        "components/_images.py": "from components._version import __version__\n",
        "components/lib/__init__.py": "",
        "components/lib/features.py": "import json\n",
        "components/train/__init__.py": "",
        "components/transform/__init__.py": "",
        "components/transform/executor.py": "from components.lib import features\n",
        "components/transform/tests/__init__.py": "",
    }
    return lambda extra: graph(_tree(tmp_path, {**base, **extra}))


@pytest.mark.parametrize(
    "source",
    [
        "from components.transform import executor\n",
        "import components.transform.executor as t\n",
        "def f():\n    from components.transform.executor import build\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from components.transform import executor\n",
        "from ..transform import executor\n",
    ],
    ids=["from-import", "import-as", "in-function", "type-checking", "relative"],
)
def test_checker_finds_a_cross_component_import_in_any_form(source, fake):
    edges = fake({"components/train/executor.py": source})
    assert violations(edges) == [
        "components.train.executor (component 'train') imports components.transform.executor (component 'transform')"
    ]


def test_checker_allows_the_floor_and_tests_but_not_lib_into_a_component(fake):
    edges = fake(
        {
            "components/train/executor.py": "from components.lib import features\nfrom components import _images, __version__\nfrom components.train import helpers\n",
            "components/train/helpers.py": "",
            "components/train/tests/__init__.py": "",
            "components/train/tests/test_x.py": "from components.transform import executor\n",
        }
    )
    assert violations(edges) == []
    edges = fake(
        {
            "components/lib/modeling.py": "from components.train import executor\n",
            "components/train/executor.py": "",
        }
    )
    assert violations(edges) == [
        "components.lib.modeling (the shared layer) imports components.train.executor (component 'train')"
    ]


def test_checker_finds_cycles_through_functions_and_type_checking(fake):
    edges = fake(
        {
            "components/transform/report.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from components.transform.schema import S\n",
            "components/transform/schema.py": "def load():\n    from components.transform import executor\n",
            "components/transform/executor.py": "from components.transform import report\n",
            "components/train/executor.py": "import components.train.helpers\n",
            "components/train/helpers.py": "from components.train.executor import run\n",
        }
    )
    assert sorted(map(sorted, cycles(edges))) == [
        ["components.train.executor", "components.train.helpers"],
        [
            "components.transform.executor",
            "components.transform.report",
            "components.transform.schema",
        ],
    ]
