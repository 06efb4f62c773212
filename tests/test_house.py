"""The shape of the house, checked: imports flow one way, nothing reaches past the Library
facade, and each fact of the daemon's contract is written in one place (protocol.py).

These read the source (ast), so they fail on the change that breaks the rule, with the
module and line that did it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "petwatch"

# Lower layers never import higher ones. A module may import its own layer's modules only
# within its own package (daemon/*, comics/*, tui/*).
LAYERS: dict[str, float] = {
    "errors": 0,
    "locations": 0,
    "filenames": 0,
    "progress": 0,
    "format": 0,
    "state_db": 0,
    "protocol": 1,
    # the vocabulary of a search in words: concepts (ImageNet classes) under places (which
    # folds names as concepts do) under words (the query read); no torch, no store
    "concepts": 1,
    "places": 1.25,
    "words": 1.5,
    "settings": 2,
    # the endpoint table: over the replies it names and the settings' choices its requests
    # take (a comic's size), under the client and the daemon
    "endpoints": 2.25,
    "client": 2.5,
    "photos": 2,
    "milvus_lite": 2,
    "milvus_remote": 2,
    # the network behind one session (ONNX Runtime or torch), under what is made of its outputs
    "engine": 2.75,
    "embed": 3,
    "store": 3,
    "index": 4,
    "stacks": 4,
    # a search: one query value, read from a request, run on the library's parts (the facade's)
    "search": 4.5,
    "library": 5,
    "pets": 6,
    "discovery": 6,
    "watch": 6,
    "comics": 6,
    "daemon": 7,
    "cli": 8,
    "tui": 8,
    "__main__": 9,
    "__init__": 0,
}
# The front ends talk to the daemon through the client; the model and the index are loaded
# only on the CLI's in-process path, inside the command that needs them.
FRONT_END_MAY_IMPORT = {
    "errors",
    "locations",
    "filenames",
    "progress",
    "format",
    "protocol",
    "settings",
    "client",
    "tui",
}
LIBRARY_PARTS = {"indexer", "store", "embedder", "_failures", "_stacks"}


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(path.relative_to(SRC).with_suffix("").parts), path) for path in sorted(SRC.rglob("*.py"))]


def _top(module: str) -> str:
    return module.split(".")[0]


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """petwatch modules imported when this module is imported (not inside a function, not
    under ``if TYPE_CHECKING``)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("petwatch"):
            parts = node.module.split(".")[1:]
            if not parts:  # from petwatch import locations, photos
                found += [(node.lineno, alias.name) for alias in node.names if alias.name != "__version__"]
            else:
                found.append((node.lineno, ".".join(parts)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".", 1)[1]) for a in node.names if a.name.startswith("petwatch.")]
    return found


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[name for name, _ in _modules()])
def test_imports_flow_one_way(module: str, path: Path) -> None:
    layer = LAYERS[_top(module)]
    wrong = []
    for line, imported in _module_level_imports(path):
        target = _top(imported)
        if target == _top(module):
            continue  # within its own package
        if LAYERS[target] >= layer:
            wrong.append(f"line {line}: {module} (layer {layer}) imports {imported} (layer {LAYERS[target]})")
        if _top(module) in ("cli", "tui") and target not in FRONT_END_MAY_IMPORT:
            wrong.append(f"line {line}: front end {module} imports {imported} at import time")
    assert not wrong, "\n".join(wrong)


def test_nothing_reaches_past_the_library_facade() -> None:
    """``library.indexer.catalog`` and the like: only library.py itself opens its parts."""
    wrong = []
    for module, path in _modules():
        if module == "library":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr in LIBRARY_PARTS):
                continue
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name == "library":
                wrong.append(f"{module}:{node.lineno}: library.{node.attr}")
    assert not wrong, "reach through a Library's methods instead:\n" + "\n".join(wrong)


def test_the_contract_constants_are_defined_once() -> None:
    """Limits, defaults, states and species live in protocol.py; nothing else assigns them."""
    protocol = ast.parse((SRC / "protocol.py").read_text())
    names = set()
    for node in protocol.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                names |= {t.id for t in elements if isinstance(t, ast.Name) and t.id.isupper()}
    assert {"DEFAULT_TOP_K", "MAX_TOP_K", "MAX_REFERENCES", "COMIC_FINAL_STATES", "SPECIES"} <= names
    wrong = []
    for module, path in _modules():
        if module == "protocol":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    elements = target.elts if isinstance(target, ast.Tuple) else [target]
                    wrong += [
                        f"{module}:{node.lineno}: {t.id}" for t in elements if isinstance(t, ast.Name) and t.id in names
                    ]
    assert not wrong, "defined again outside protocol.py:\n" + "\n".join(wrong)


def test_endpoint_paths_are_written_only_in_the_table() -> None:
    """A path such as "/search" or "/pets/" is in petwatch.endpoints and nowhere else in src/:
    the daemon registers its handlers and the client sends its requests through the table."""
    from petwatch.endpoints import ENDPOINTS

    paths = {endpoint.path for endpoint in ENDPOINTS}
    prefixes = {path.split("{")[0] for path in paths if "{" in path}  # "/pets/" of "/pets/{name}"
    assert {"/search", "/pets/{name}"} <= paths and "/pets/" in prefixes

    def is_endpoint(text: str) -> bool:
        return text in paths or any(text.startswith(prefix) for prefix in prefixes)

    wrong = []
    for module, path in _modules():
        if module == "endpoints":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and is_endpoint(node.value):
                wrong.append(f"{module}:{node.lineno}: {node.value!r}")
    assert not wrong, "an endpoint's path outside petwatch/endpoints.py (use its table entry):\n" + "\n".join(wrong)
