"""Container probes (startup, readiness, liveness) as the kubelet's prober runs them.

`httpGet` (HTTP or HTTPS without certificate checks; 200-399 succeeds) and `tcpSocket`
connect to 127.0.0.1 (the pod IP on the local node); a named `port` is looked up in the
container's ports. `exec` runs the command with the container's environment and working
directory (exit code 0 succeeds). Each attempt is bounded by `timeoutSeconds`.
gRPC probes are not emulated: they always fail, with a message saying so, so a container
that relies on one never becomes ready instead of pretending to be.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kubeloop.local.node.images import ProgramNotFound, local_program

LOOPBACK = '127.0.0.1'


@dataclass(frozen=True)
class ProbeContext:
    """What an exec probe needs from its container."""

    env: Mapping[str, str]
    cwd: Path


@dataclass(frozen=True)
class ProbeResult:
    success: bool
    message: str = ''


@dataclass(frozen=True)
class ProbeTiming:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: Mapping[str, Any]) -> ProbeTiming:
        return cls(initial_delay=float(probe.get('initialDelaySeconds', 0)),
                   period=float(probe.get('periodSeconds', 10)),
                   timeout=float(probe.get('timeoutSeconds', 1)),
                   success_threshold=int(probe.get('successThreshold', 1)),
                   failure_threshold=int(probe.get('failureThreshold', 3)))


def resolve_port(port: int | str, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get('ports') or []:
        if declared.get('name') == port:
            return int(declared['containerPort'])
    raise ValueError(f'port "{port}" is not a port of container {container.get("name")}')


async def run_probe(probe: Mapping[str, Any], container: Mapping[str, Any], context: ProbeContext) -> ProbeResult:
    """One attempt of a probe."""
    timeout = float(probe.get('timeoutSeconds', 1))
    try:
        async with asyncio.timeout(timeout):
            if 'httpGet' in probe:
                return await _http_get(probe['httpGet'], container, timeout)
            if 'tcpSocket' in probe:
                return await _tcp_socket(probe['tcpSocket'], container)
            if 'exec' in probe:
                return await _exec(probe['exec'], context)
    except TimeoutError:
        return ProbeResult(False, f'probe timed out after {timeout:g}s')
    except (ValueError, OSError, aiohttp.ClientError, ProgramNotFound) as exc:
        return ProbeResult(False, str(exc))
    if 'grpc' in probe:
        return ProbeResult(False, 'gRPC probes are not emulated by the local node')
    return ProbeResult(False, 'the probe has no handler (httpGet, tcpSocket or exec)')


async def _http_get(action: Mapping[str, Any], container: Mapping[str, Any], timeout: float) -> ProbeResult:
    scheme = str(action.get('scheme', 'HTTP')).lower()
    port = resolve_port(action['port'], container)
    path = str(action.get('path') or '/')
    headers = {h['name']: h['value'] for h in action.get('httpHeaders') or []}
    headers.setdefault('User-Agent', 'kube-probe/1.37')
    url = f'{scheme}://{LOOPBACK}:{port}{path if path.startswith("/") else "/" + path}'
    no_verify = ssl.create_default_context()
    no_verify.check_hostname, no_verify.verify_mode = False, ssl.CERT_NONE
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False) as session, \
            session.get(url, headers=headers, ssl=no_verify if scheme == 'https' else True,
                        allow_redirects=False) as response:
        if 200 <= response.status < 400:
            return ProbeResult(True)
        return ProbeResult(False, f'HTTP probe failed with statuscode: {response.status}')


async def _tcp_socket(action: Mapping[str, Any], container: Mapping[str, Any]) -> ProbeResult:
    port = resolve_port(action['port'], container)
    _, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True)


async def _exec(action: Mapping[str, Any], context: ProbeContext) -> ProbeResult:
    command = [str(part) for part in action.get('command') or []]
    if not command:
        return ProbeResult(False, 'exec probe without a command')
    argv = [local_program(command[0], context.env.get('PATH', '')), *command[1:]]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=dict(context.env), cwd=str(context.cwd), start_new_session=True)
    try:
        output, _ = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode == 0:
        return ProbeResult(True)
    return ProbeResult(False, output.decode(errors='replace').strip()[-500:] or f'exit code {process.returncode}')
