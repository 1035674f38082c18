"""kubeloop.store runs in pods and in the operator: it may import only the standard library,
minio, urllib3, kubeloop.core.settings and itself (never kopf, kubernetes, or the local cluster)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

STORE = Path(__file__).resolve().parents[2] / "operator" / "kubeloop" / "store"
ALLOWED_ROOTS = {"minio", "urllib3", "__future__"} | set(sys.stdlib_module_names)
ALLOWED_KUBELOOP = ("kubeloop.store", "kubeloop.core.settings")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(STORE.glob("*.py")), ids=lambda p: p.name)
def test_store_imports_only_what_pods_have(path: Path) -> None:
    for module in imported_modules(path):
        if module.startswith("kubeloop"):
            assert module.startswith(ALLOWED_KUBELOOP), f"{path.name} imports {module}"
        else:
            assert module.split(".")[0] in ALLOWED_ROOTS, f"{path.name} imports {module}"


def test_importing_the_store_loads_no_operator_machinery() -> None:
    code = ("import sys, kubeloop.store; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'kopf', 'kubernetes', 'pydantic'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
