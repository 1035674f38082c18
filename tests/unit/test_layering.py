"""The layers of STYLE.md, checked: who may import whom.

- `core` is the bottom: it imports no resource room and nothing of the local cluster.
- `api.py` modules import only pydantic, the standard library, croniter and core.apimodel.
- The operator side (manager, handlers, desired, status, core) never imports the pod
  entrypoints (materialize, train, serve, check), torch or kserve: the operator image
  stays small and a trainer bug cannot crash the operator.
- Nothing on the operator side imports `kubeloop.local` (the embedded cluster is a tool
  around the operator, not part of it).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "kubeloop"
ROOMS = ("featureset", "trainingrun", "modelversion", "driftmonitor")
# Pod-side modules: the entrypoints, and trainingrun/models.py (the trainer's and server's torch
# model registry), which the operator must not import either.
ENTRYPOINTS = ("materialize", "train", "serve", "check", "models")
STDLIB = set(sys.stdlib_module_names)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def operator_side_files() -> list[Path]:
    files = [PACKAGE / "manager.py", *sorted((PACKAGE / "core").glob("*.py"))]
    for room in ROOMS:
        files += [p for p in sorted((PACKAGE / room).glob("*.py")) if p.stem not in ENTRYPOINTS]
    return [f for f in files if f.exists()]


@pytest.mark.parametrize("path", operator_side_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_operator_side_never_imports_entrypoints_ml_runtimes_or_local(path: Path):
    forbidden_roots = {"torch", "kserve"}
    for name in imports_of(path):
        root = name.split(".")[0]
        assert root not in forbidden_roots, f"{path.name} imports {name}"
        assert not name.startswith("kubeloop.local"), f"{path.name} imports {name}"
        parts = name.split(".")
        if parts[0] == "kubeloop" and len(parts) >= 3 and parts[1] in ROOMS:
            assert parts[2] not in ENTRYPOINTS, f"{path.name} imports pod entrypoint {name}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_room(path: Path):
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "kubeloop" and len(parts) > 1:
            assert parts[1] not in ROOMS, f"core/{path.name} imports {name}"


@pytest.mark.parametrize("room", ROOMS)
def test_api_modules_import_only_models(room: str):
    path = PACKAGE / room / "api.py"
    allowed_roots = {"pydantic", "croniter", "kubeloop", "typing_extensions", "annotated_types"} | STDLIB
    for name in imports_of(path):
        assert name.split(".")[0] in allowed_roots, f"{room}/api.py imports {name}"
        if name.startswith("kubeloop."):
            assert name.startswith(("kubeloop.core.apimodel", f"kubeloop.{room}.api")) or name in {
                "kubeloop.GROUP", "kubeloop.VERSION", "kubeloop.API_VERSION"}, f"{room}/api.py imports {name}"
