"""Start, watch and stop the local processes of the embedded control plane.

Each piece (API server, operator, later the S3 store and the local node) runs as its own
process so that it uses its own core and a crash in one is visible, not a hang in another.
Processes start in their own session; stopping sends SIGTERM to the whole group, waits,
then SIGKILLs what is left, so Ctrl-C never leaves anything running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class StartupError(RuntimeError):
    """A process did not become ready; the message includes the end of its log."""


# Readiness checks go to 127.0.0.1: never through an HTTP(S)_PROXY set in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class ManagedProcess:
    """One child process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(self.argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})}, cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, url: str, *, timeout: float = 60.0) -> float:
        """Poll `url` until it answers 2xx; return the seconds it took. Fails fast if the process dies."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise StartupError(f"{self.name} exited with code {self.process.returncode if self.process else '?'}"
                                   f"; last log lines:\n{self.log_tail()}")
            if http_ok(url, timeout=0.5):
                return time.monotonic() - started
            time.sleep(0.02)
        raise StartupError(f"{self.name} did not become ready at {url} within {timeout:.0f}s; "
                           f"last log lines:\n{self.log_tail()}")

    def stop(self, *, grace: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        elif self.process is not None:
            # The leader exited; make sure nothing it started is left in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def python_module(module: str, *args: str) -> list[str]:
    """argv running `python -m module args` with this interpreter (same virtualenv)."""
    return [sys.executable, "-m", module, *args]
