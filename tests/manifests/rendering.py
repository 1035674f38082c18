"""Render kustomizations with the real kubectl (`kubectl kustomize`), as users and Argo CD do."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import kubectl_binary

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"


@functools.cache
def render_text(directory: Path) -> str:
    """`kubectl kustomize <directory>` (once per directory and session); a failure raises with
    kubectl's message."""
    result = subprocess.run([kubectl_binary(), "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return result.stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` renders."""
    return [doc for doc in yaml.safe_load_all(render_text(directory)) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]
