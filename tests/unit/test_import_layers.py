"""The import layers of ARCHITECTURE.md, checked on the source (AST, no imports executed).

    api -> jobs -> inputs, engines -> pipelines, models -> contract -> domain
    export/ and model_repository/ sit beside; nothing imports export/.

`ALLOWED` says which service packages each package may import (its own modules always). A package not
listed (a new one) is treated as a top layer: it may import any service package, and no listed package may
import it until it is placed here. The contract leaf also imports no torch, tritonclient, grpc or
`triton_python_backend_utils` at run time (annotations under `if TYPE_CHECKING:` are allowed).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED_TREES = ("service", "export", "model_repository")

# observability (Prometheus metric objects) is a leaf every layer may count into.
_BASE = {"domain", "contract", "logs", "observability"}
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "logs": set(),
    "config_types": set(),
    "observability": set(),
    "security": set(),  # API keys and URL signing: pure
    "contract": {"domain"},
    "media": _BASE,
    "storage": _BASE | {"config", "security"},
    "prompting": _BASE,
    "safety": _BASE | {"media"},
    # Each config section is declared next to the code it configures (so config sits above those).
    "config": _BASE | {"config_types", "media", "safety", "prompting", "security"},
    "pipelines": _BASE,
    "models": _BASE | {"config", "media"},
    "inputs": _BASE | {"config", "media", "safety", "prompting", "models", "pipelines"},
    "engines": _BASE | {"config", "media", "safety", "prompting", "models", "pipelines", "inputs"},
    "jobs": _BASE | {"config", "media", "safety", "prompting", "storage", "inputs", "engines"},
    "api": _BASE | {"config", "jobs", "security"},
    "client": _BASE | {"config", "api"},
}
# Modules allowed a wrong-way import for now, with the reason; each must still exist and still need it.
EXEMPTIONS: dict[str, tuple[set[str], str]] = {}
CONTRACT_FORBIDDEN = ("torch", "tritonclient", "triton_python_backend_utils", "grpc")


class Import(NamedTuple):
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int
    type_only: bool  # inside `if TYPE_CHECKING:`


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        parts = module.split(".")
        base = parts[: len(parts) - node.level + (1 if is_package else 0)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    # `from service import config` imports service.config: name each imported member too.
    return [source, *(f"{source}.{alias.name}" for alias in node.names if alias.name != "*")]


def _walk(nodes: list[ast.stmt], type_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, True)
            yield from _walk(node.orelse, type_only)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _walk([child], type_only)


def imports_under(root: Path) -> list[Import]:
    """Every import statement (module level or in a function) of the checked trees under `root`."""
    found: list[Import] = []
    for tree in CHECKED_TREES:
        for path in sorted((root / tree).rglob("*.py")):
            module = _module_name(path, root)
            parsed = ast.parse(path.read_text(), filename=str(path))
            for node, type_only in _walk(parsed.body, False):
                for target in _targets(node, module, path.name == "__init__.py"):
                    found.append(Import(module, target, node.lineno, type_only))
    return found


def _package(module: str) -> str | None:
    """`service.engines.local` -> `engines`; `service.config` -> `config`; outside service: None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "service" and len(parts) > 1 else None


def _allowed(importer: str, target_package: str, allowed: Mapping[str, set[str]]) -> bool:
    package = _package(importer)
    if package is None or package == target_package:
        return True
    exempt, _reason = EXEMPTIONS.get(importer, (set(), ""))
    if target_package in exempt:
        return True
    if package not in allowed:  # a new, unplaced package: a top layer
        return True
    return target_package in allowed[package]


def violations(found: list[Import], allowed: Mapping[str, set[str]] = ALLOWED) -> list[str]:
    """One line per wrong import statement and rule."""
    problems: dict[tuple[str, int, str], str] = {}
    for imp in found:
        for rule, problem in _problems(imp, allowed):
            problems.setdefault((imp.module, imp.line, rule), problem)
    return list(problems.values())


def _problems(imp: Import, allowed: Mapping[str, set[str]]) -> Iterator[tuple[str, str]]:
    where = f"{imp.module}:{imp.line} imports {imp.target}"
    top = imp.target.split(".")[0]
    if top == "export" and not imp.module.startswith("export"):
        yield "export", f"{where}: nothing imports export/ (offline tooling)"
    if _package(imp.module) == "contract" and top in CONTRACT_FORBIDDEN and not imp.type_only:
        yield "leaf", f"{where}: the contract leaf imports no {top} at run time"
    target_package = _package(imp.target)
    if target_package is not None and not _allowed(imp.module, target_package, allowed):
        yield "layer", f"{where}: service.{_package(imp.module)} may not import service.{target_package}"


def _cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (as a path), or None."""
    done: set[str] = set()

    def visit(path: list[str]) -> list[str] | None:
        for successor in sorted(graph.get(path[-1], set())):
            if successor in path:
                return [*path[path.index(successor) :], successor]
            if successor not in done and (found := visit([*path, successor])):
                return found
        done.add(path[-1])
        return None

    for start in sorted(graph):
        if start not in done and (found := visit([start])):
            return found
    return None


def package_graph(found: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in found:
        source, target = _package(imp.module), _package(imp.target)
        if source and target and source != target:
            graph.setdefault(source, set()).add(target)
    return graph


def test_the_service_keeps_its_import_layers() -> None:
    assert violations(imports_under(ROOT)) == []


def test_no_package_cycle() -> None:
    assert _cycle(package_graph(imports_under(ROOT))) is None
    assert _cycle(ALLOWED) is None  # the rules themselves are a hierarchy


def test_every_exemption_is_still_needed() -> None:
    found = imports_under(ROOT)
    for module, (packages, reason) in EXEMPTIONS.items():
        used = {_package(imp.target) for imp in found if imp.module == module}
        assert packages & used, f"{module} no longer needs its exemption ({reason}): remove it"


def _plant(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    for parent in path.relative_to(root).parents:
        if parent != Path("."):
            (root / parent / "__init__.py").touch()


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("service/pipelines/bad.py", "from service.engines.local import LocalEngine\n", "may not import"),
        ("service/pipelines/bad.py", "def f():\n    from service.models import loading\n", "may not import"),
        ("service/models/bad.py", "from ..pipelines import components\n", "may not import"),
        ("service/domain/bad.py", "import service.contract.frames\n", "may not import"),
        ("service/contract/bad.py", "import torch\n", "no torch"),
        ("service/contract/bad.py", "import tritonclient.grpc\n", "no tritonclient"),
        ("service/engines/bad.py", "from export.components import declare\n", "nothing imports export"),
        ("model_repository/x/1/model.py", "import export.stages\n", "nothing imports export"),
    ],
)
def test_a_planted_wrong_way_import_fails(tmp_path: Path, relative: str, source: str, expected: str) -> None:
    _plant(tmp_path, "service/engines/local.py", "import torch\n")
    _plant(tmp_path, relative, source)
    problems = violations(imports_under(tmp_path))
    assert len(problems) == 1 and expected in problems[0], problems


def test_allowed_directions_and_type_only_imports_pass(tmp_path: Path) -> None:
    _plant(tmp_path, "service/engines/ok.py", "from service.pipelines import components\nimport torch\n")
    _plant(
        tmp_path,
        "service/contract/ok.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    )
    _plant(tmp_path, "service/newpackage/ok.py", "from service.engines import ok\n")
    _plant(tmp_path, "export/ok.py", "from service.engines import ok\nfrom export import other\n")
    assert violations(imports_under(tmp_path)) == []


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    _plant(tmp_path, "service/models/a.py", "from service.pipelines import b\n")
    _plant(tmp_path, "service/pipelines/b.py", "from service.models import a\n")
    assert _cycle(package_graph(imports_under(tmp_path))) in (
        ["models", "pipelines", "models"],
        ["pipelines", "models", "pipelines"],
    )
