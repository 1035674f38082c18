"""Container logs: kept on disk as the kubelet keeps them, served as the kubelet serves them.

Files: `<state_dir>/logs/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, one per
run of a container (the layout of /var/log/pods), each line in the CRI logging format
`<RFC3339Nano time> <stdout|stderr> <F|P> <text>` (F: a full line, P: part of a line), so
that timestamps and `sinceSeconds` work after the fact.

`LogServer` is the kubelet's read-only endpoint, on 127.0.0.1 only:
`GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `previous`, `tailLines`,
`timestamps`, `sinceSeconds`, `sinceTime` and `limitBytes`, answered in plain text; errors
are plain-text 400/404 bodies as the kubelet's, which the API server passes on to kubectl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import aiohttp.web

log = logging.getLogger(__name__)

HOST = '127.0.0.1'
FOLLOW_POLL_SECONDS = 0.05
_MAX_LINE = 16 * 1024  # longer output lines are split into partial entries, as container runtimes do


def container_log_dir(logs_root: Path, namespace: str, pod: str, uid: str, container: str) -> Path:
    return logs_root / f'{namespace}_{pod}_{uid}' / container


def rfc3339_nano(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f') + '000Z'


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the API writes it (seconds) or the log does (nanoseconds)."""
    text = text.strip().replace('Z', '+00:00')
    if '.' in text:
        head, _, rest = text.partition('.')
        digits = rest[:len(rest) - len(rest.lstrip('0123456789'))]
        zone = rest[len(digits):]
        text = f'{head}.{digits[:6].ljust(6, "0")}{zone}'
    return datetime.fromisoformat(text)


# Writing.

async def copy_stream(stream: asyncio.StreamReader, name: str, sink: IO[bytes], now: Callable[[], datetime]) -> None:
    """Copy one output stream of a process into the log file, line by line, until EOF."""
    while True:
        try:
            chunk = await stream.readuntil(b'\n')
        except asyncio.IncompleteReadError as exc:
            chunk = exc.partial
            if not chunk:
                return
        except asyncio.LimitOverrunError as exc:
            chunk = await stream.readexactly(min(exc.consumed, _MAX_LINE) or 1)
        full = chunk.endswith(b'\n')
        text = chunk[:-1] if full else chunk
        sink.write(f'{rfc3339_nano(now())} {name} {"F" if full else "P"} '.encode() + text + b'\n')
        sink.flush()


# Reading.

@dataclass(frozen=True)
class Entry:
    time: str
    stream: str
    full: bool
    text: bytes

    def render(self, timestamps: bool) -> bytes:
        prefix = f'{self.time} '.encode() if timestamps else b''
        return prefix + self.text + (b'\n' if self.full else b'')


def parse_entry(line: bytes) -> Entry | None:
    parts = line.split(b' ', 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else b''
    return Entry(parts[0].decode(), parts[1].decode(), parts[2] == b'F', text)


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogSource:
    """One run's log file and whether that run can still write to it."""

    path: Path
    running: Callable[[], bool]


class LogRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _selected(entries: list[Entry], options: LogOptions) -> list[Entry]:
    if options.since is not None:
        entries = [entry for entry in entries if parse_time(entry.time) >= options.since]
    if options.tail_lines is not None:
        entries = entries[-options.tail_lines:] if options.tail_lines > 0 else []
    return entries


async def log_chunks(source: LogSource, options: LogOptions) -> AsyncIterator[bytes]:
    """The log's output as the options select it; with `follow`, until the run has ended."""
    offset, pending = 0, b''
    first = True
    while True:
        running = source.running()  # read before the file: output written before the end is not lost
        data = _read_from(source.path, offset)
        offset += len(data)
        lines = (pending + data).split(b'\n')
        pending = lines.pop()
        entries = [entry for entry in map(parse_entry, lines) if entry is not None]
        if first:
            entries, first = _selected(entries, options), False
        elif options.since is not None:
            entries = [entry for entry in entries if parse_time(entry.time) >= options.since]
        for entry in entries:
            yield entry.render(options.timestamps)
        if not options.follow or not running:
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, 'rb') as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b''


# Serving.

LogResolver = Callable[[str, str, str, bool], Awaitable[LogSource]]


def parse_options(query: dict[str, str], now: datetime) -> LogOptions:
    """The kubelet's log query parameters (400 for values it would refuse)."""
    def flag(name: str) -> bool:
        return query.get(name, 'false').lower() in ('true', '1')

    def number(name: str) -> int | None:
        if name not in query:
            return None
        try:
            value = int(query[name])
        except ValueError as exc:
            raise LogRequestError(400, f'{name}: invalid value {query[name]!r}') from exc
        if value < 0 or (name != 'tailLines' and value == 0):
            raise LogRequestError(400, f'{name}: must be greater than 0')
        return value

    since = None
    if number('sinceSeconds') is not None:
        since = now - timedelta(seconds=int(query['sinceSeconds']))
    elif query.get('sinceTime'):
        try:
            since = parse_time(query['sinceTime'])
        except ValueError as exc:
            raise LogRequestError(400, f'sinceTime: invalid value {query["sinceTime"]!r}') from exc
    return LogOptions(follow=flag('follow'), previous=flag('previous'), timestamps=flag('timestamps'),
                      tail_lines=number('tailLines'), since=since, limit_bytes=number('limitBytes'))


class LogServer:
    """The kubelet's `/containerLogs` endpoint on 127.0.0.1 (any free port)."""

    def __init__(self, resolve: LogResolver, now: Callable[[], datetime]) -> None:
        self._resolve = resolve
        self._now = now
        self._runner: aiohttp.web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = aiohttp.web.Application()
        app.router.add_get('/containerLogs/{namespace}/{pod}/{container}', self._container_logs)
        app.router.add_get('/healthz', self._healthz)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        await aiohttp.web.SockSite(self._runner, sock).start()
        self.port = int(sock.getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text='ok')

    async def _container_logs(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        info = request.match_info
        try:
            options = parse_options(dict(request.query), self._now())
            source = await self._resolve(info['namespace'], info['pod'], info['container'], options.previous)
        except LogRequestError as exc:
            return aiohttp.web.Response(status=exc.status, text=exc.message)
        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'text/plain'})
        await response.prepare(request)
        remaining = options.limit_bytes
        async for chunk in log_chunks(source, options):
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            await response.write(chunk)
            if remaining is not None and remaining <= 0:
                break
        await response.write_eof()
        return response
