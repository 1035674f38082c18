"""`kubeloop demo` as the README's run command runs it, in a shorter variant (fewer rows and
requests): the whole loop closes on the embedded cluster, the narration says so, and `--exit`
leaves nothing running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

HANG = 1200  # seconds: only stops a demo that would hang


def test_demo_closes_the_loop_and_exits_cleanly(tmp_path: Path):
    state = tmp_path / "demo"
    before = {p.pid for p in psutil.process_iter()}
    result = subprocess.run(
        [sys.executable, "-m", "kubeloop", "demo", "--state-dir", str(state), "--rows", "12000",
         "--live-rows", "700", "--exit"], capture_output=True, text=True, timeout=HANG)
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}\n" + "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-40:])
        for log in sorted((state / "logs").glob("*.log")))
    for step in range(1, 9):
        assert f"[{step}/8]" in output
    assert "drifted=False" in output and "drifted=True" in output
    assert "TrainingRun fraud-detector-drift-retrain-1 created by the monitor" in output
    assert "fraud-detector-drift-retrain-1 is champion, serving 100%" in output
    assert "fraud-detector-1 is Retired" in output
    assert "The loop closed by itself" in output and "export KUBECONFIG=" in output
    assert "Stopped; nothing left running." in output
    leftovers = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.pid not in before
                 and str(state) in " ".join(p.info.get("cmdline") or [])]
    assert leftovers == []
