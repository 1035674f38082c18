"""The local "container runtime": a container is a process group started by the node.

Each container's main process starts in a new session (its own process group), so that
stopping the container reaches everything it started: SIGTERM to the group, the grace
period, then SIGKILL, as kubelet and a runtime do. When the main process exits on its own,
whatever it left in its group is killed, as a runtime tears down the container's cgroup.

If the node process itself dies without stopping its containers (SIGKILL), the kernel
sends SIGKILL to each container's main process (PR_SET_PDEATHSIG), and the next node start
kills anything left from a previous run of the same state directory: every container
process carries `KUBELOOP_NODE_STATE_DIR` in its environment, which is how it is found.
Processes that leave their group or drop that variable are beyond reach (documented limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from kubeloop.local.node.containerlogs import copy_stream

log = logging.getLogger(__name__)

STATE_DIR_ENV = 'KUBELOOP_NODE_STATE_DIR'
_PR_SET_PDEATHSIG = 1


def _libc_prctl() -> Callable[..., int] | None:
    """prctl(2), resolved in the node process: the forked child must not load libraries."""
    if not sys.platform.startswith('linux'):
        return None
    libc_name = ctypes.util.find_library('c')
    return ctypes.CDLL(libc_name).prctl if libc_name else None


_PRCTL = _libc_prctl()


def _die_with_the_node() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this process when the node process that started it dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: 128 + N for a process killed by signal N (137 for SIGKILL)."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ContainerProcess:
    """One run of a container: its process group and the copying of its output into the log."""

    process: asyncio.subprocess.Process
    log_file: IO[bytes]
    copiers: list[asyncio.Task[None]] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait(self) -> int:
        """Wait for the main process; kill what it left in its group; drain its output."""
        returncode = await self.process.wait()
        self._kill_group(signal.SIGKILL)
        await self._drain()
        self.exit_code = exit_code_of(returncode)
        return self.exit_code

    async def stop(self, grace_seconds: float) -> int:
        """SIGTERM to the group, up to `grace_seconds` to exit, then SIGKILL."""
        if self.process.returncode is None:
            self._kill_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout=max(grace_seconds, 0))
            except TimeoutError:
                self._kill_group(signal.SIGKILL)
        return await self.wait()

    def _kill_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    async def _drain(self) -> None:
        """Let the output copiers reach EOF (waiting callers may be cancelled; the copiers are not)."""
        pending = [task for task in self.copiers if not task.done()]
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=5)
            for task in stuck:  # a process that left the group still holds the pipe: stop copying it
                task.cancel()
        if not self.log_file.closed:
            self.log_file.close()


async def start_container_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path,
                                  now: Callable[[], datetime], state_dir: Path) -> ContainerProcess:
    """Start the container's main process in its own session, its output copied into `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, 'ab')  # noqa: SIM115 - closed when the process has been waited for
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**env, STATE_DIR_ENV: str(state_dir.resolve())}, cwd=str(cwd),
            start_new_session=True, preexec_fn=_die_with_the_node, limit=2**20)
    except BaseException:
        log_file.close()
        raise
    running = ContainerProcess(process, log_file)
    assert process.stdout is not None and process.stderr is not None
    running.copiers = [asyncio.create_task(copy_stream(process.stdout, 'stdout', log_file, now)),
                       asyncio.create_task(copy_stream(process.stderr, 'stderr', log_file, now))]
    return running


def kill_leftovers(state_dir: Path) -> int:
    """SIGKILL processes left by an earlier run of a node with this state directory; how many."""
    marker = f'{STATE_DIR_ENV}={state_dir.resolve()}'.encode()
    proc = Path('/proc')
    if not proc.is_dir():
        return 0
    killed = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / 'environ').read_bytes().split(b'\0')
        except OSError:
            continue
        if marker in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed
