"""`kubeloop runs list|show|compare` over the records real trainer runs wrote."""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from kubeloop.store import NotFound, ObjectStore
from kubeloop.trainingrun import runs, train
from tests.trainingrun.conftest import run_spec, trainer_env

NAMESPACE_PREFIX = "runs"


@pytest.fixture(scope="module")
def namespace_runs(store_env, store: ObjectStore, feature_set, tmp_path_factory):
    """A namespace of its own with two succeeded runs, a failed one and one still running."""
    namespace = f"{NAMESPACE_PREFIX}-{uuid.uuid4().hex[:6]}"

    def trained(name: str, **spec_changes) -> int:
        return train.main(trainer_env(store_env, tmp_path_factory.mktemp("scratch"), name,
                                      run_spec(**spec_changes), feature_set.reference, namespace=namespace))

    # The FeatureSet lives in namespace "ml": publish the same version into this namespace too.
    source = feature_set.version
    store.publish_version(f"featuresets/{namespace}/{feature_set.name}",
                          {name: store.get_bytes(entry.key) for name, entry in source.files.items()},
                          source.manifest)
    assert trained("fast", hyperparameters={"epochs": 3, "learningRate": 0.05, "hiddenLayers": [8]}) == 0
    assert trained("slow", hyperparameters={"epochs": 4, "learningRate": 0.002, "hiddenLayers": [8]}) == 0
    assert trained("broken", target="nope") == train.EXIT_PERMANENT
    torch.use_deterministic_algorithms(False)
    store.put_json(f"trainingruns/{namespace}/pending/progress.json",
                   {"attempt": 1, "epoch": 1, "epochs": 10, "percent": 10, "etaSeconds": 9.0,
                    "samplesPerSecond": 100.0, "metrics": {"loss": 0.5}, "updated": "2026-01-01T00:00:00Z"})
    return namespace


def test_list_runs_shows_every_state(store, namespace_runs):
    listed = runs.list_runs(store, namespace_runs)
    assert [(r.name, r.state) for r in listed] == [
        ("broken", "Failed"), ("fast", "Succeeded"), ("pending", "Running"), ("slow", "Succeeded")]
    fast = listed[1]
    assert fast.metric == "auc" and 0.5 < fast.value <= 1.0 and fast.epoch == 3 and len(fast.artifact) == 12
    assert listed[0].reason == "TrainingFailed"
    text = runs.format_run_list(listed)
    assert text.splitlines()[0].split() == ["NAME", "STATE", "FAMILY", "TASK", "METRIC", "VALUE", "EPOCH",
                                            "ATTEMPT", "ARTIFACT", "UPDATED"]
    pending = next(line for line in text.splitlines() if line.startswith("pending"))
    assert pending.split()[1] == "Running" and "1/10" in pending.split()
    assert runs.list_runs(store, "no-such-namespace") == []


def test_show_run_prints_params_environment_and_epochs(store, namespace_runs):
    text = runs.show_run(store, namespace_runs, "slow")
    assert f"TrainingRun {namespace_runs}/slow: Succeeded" in text
    assert "learningRate=0.002" in text and "torch " + torch.__version__ in text
    epoch_table = text[text.index("EPOCH"):].splitlines()
    assert epoch_table[0].split()[:3] == ["EPOCH", "ATTEMPT", "LOSS"]
    assert [line.split()[0] for line in epoch_table[1:5]] == ["1", "2", "3", "4"]
    assert "sha256:" in text
    failed = runs.show_run(store, namespace_runs, "broken")
    assert "Failed (TrainingFailed)" in failed and "'nope' does not exist" in failed
    assert "epoch 1/10 (10%)" in runs.show_run(store, namespace_runs, "pending")
    with pytest.raises(NotFound):
        runs.show_run(store, namespace_runs, "never-ran")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, payload = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        chunks.append((kind, payload))
        offset += 12 + length
    return chunks


def test_compare_runs_tabulates_side_by_side_and_writes_a_png(store, namespace_runs, tmp_path: Path):
    png = tmp_path / "curves.png"
    text = runs.compare_runs(store, namespace_runs, ["fast", "slow"], png)
    lines = text.splitlines()
    assert lines[0].split() == ["fast", "slow"]
    learning_rate = next(line for line in lines if line.startswith("learningRate"))
    assert learning_rate.split()[1:] == ["0.05", "0.002"]
    assert any(line.startswith("metric auc") for line in lines)
    assert "fast=blue, slow=orange" in text
    chunks = png_chunks(png.read_bytes())
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (width, height, depth, color_type) == (960, 320, 8, 2)  # two panels: loss and auc
    pixels = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(height, 1 + width * 3)
    rgb = pixels[:, 1:].reshape(height, width, 3)
    assert (pixels[:, 0] == 0).all()
    blue, orange = np.array(runs.COLORS[0][1]), np.array(runs.COLORS[1][1])
    assert (rgb == blue).all(axis=2).sum() > 50 and (rgb == orange).all(axis=2).sum() > 50
    with pytest.raises(NotFound, match="broken"):
        runs.compare_runs(store, namespace_runs, ["fast", "broken"], png)


def test_png_bytes_refuses_other_images():
    with pytest.raises(ValueError):
        runs.png_bytes(np.zeros((2, 2), np.uint8))


def test_cli_reads_runs_through_the_namespace_secret(apiserver, kubectl, local_s3, store_env, namespace_runs,
                                                     tmp_path: Path):
    """`kubeloop runs ...` finds the store the way the operator does: the namespace's Secret."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBELOOP_S3_BUCKET": store_env["KUBELOOP_S3_BUCKET"]}

    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_runs}})
    kubectl.apply(local_s3.secret_manifest("kubeloop-s3", namespace_runs))
    env_kubeconfig = ["--kubeconfig", str(apiserver.kubeconfig_path), "-n", namespace_runs]

    def kubeloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubeloop", "runs", *args, *env_kubeconfig],
                              capture_output=True, text=True, timeout=120, env=env)

    listed = kubeloop("list")
    assert listed.returncode == 0, listed.stderr
    for name in ("fast", "slow", "broken", "pending"):
        assert name in listed.stdout
    shown = kubeloop("show", "fast")
    assert shown.returncode == 0 and "fast" in shown.stdout
    png = tmp_path / "curves.png"
    compared = kubeloop("compare", "fast", "slow", "--png", str(png))
    assert compared.returncode == 0, compared.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = subprocess.run([sys.executable, "-m", "kubeloop", "runs", "list", "--kubeconfig",
                              str(apiserver.kubeconfig_path), "-n", "no-such-namespace"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "kubeloop-s3" in (missing.stderr + missing.stdout)
