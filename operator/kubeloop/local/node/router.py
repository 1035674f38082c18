"""The local stand-in for Knative's ingress: one reverse proxy per InferenceService on 127.0.0.1.

On a cluster, Knative's ingress (Istio, Kourier...) splits an InferenceService's requests
between revisions by the percentages in the Route, and the activator holds requests while a
revision has no ready pod. Locally every revision is one process on its own loopback port, and
this router plays both parts: it listens on a stable port (the InferenceService's `status.url`)
and forwards each request — method, path, query, headers, body, streamed both ways — to a
revision picked at random by weight, as Envoy's weighted clusters do. A request carrying the
`Knative-Serving-Tag` header goes to the revision with that tag (Knative's tag-header-based
routing); an unknown tag falls back to the weighted split.

It fails loudly: with no revision to route to it answers 503, and when the chosen revision
cannot be reached 502, each with a plain-text reason, never a hang.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
TAG_HEADER = "Knative-Serving-Tag"
# RFC 9110 7.6.1: meaningful for one connection only, never forwarded by a proxy.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})


@dataclass(frozen=True)
class Backend:
    """One traffic target: a revision, its share in percent, and where its ready pod listens."""

    revision: str
    percent: int
    url: str | None  # http://127.0.0.1:<port>, or None while the revision has no ready pod
    tag: str | None = None


def choose_backend(backends: Sequence[Backend], draw: float, tag: str | None = None) -> Backend | None:
    """The backend a request goes to (pure, so the split can be tested exactly).

    `draw` is uniform in [0, 1). With a `tag` that some backend carries, that backend; otherwise
    the backend whose cumulative percent range contains `draw * total`. None when nothing has a
    share of the traffic.
    """
    if tag:
        for backend in backends:
            if backend.tag == tag:
                return backend
    weighted = [b for b in backends if b.percent > 0]
    total = sum(b.percent for b in weighted)
    if total <= 0:
        return None
    point = draw * total
    for backend in weighted:
        if point < backend.percent:
            return backend
        point -= backend.percent
    return weighted[-1]


def forwarded_headers(headers: Mapping[str, str], client_ip: str | None) -> CIMultiDict[str]:
    """The request headers sent upstream: hop-by-hop ones removed, X-Forwarded-* added."""
    source: CIMultiDict[str] = CIMultiDict(headers)
    dropped = set(HOP_BY_HOP) | {name.strip().lower() for value in source.getall("Connection", [])
                                 for name in value.split(",")}
    result: CIMultiDict[str] = CIMultiDict((k, v) for k, v in source.items() if k.lower() not in dropped)
    if client_ip:
        previous = result.get("X-Forwarded-For")
        result["X-Forwarded-For"] = f"{previous}, {client_ip}" if previous else client_ip
    result.setdefault("X-Forwarded-Proto", "http")
    if "Host" in source:
        result.setdefault("X-Forwarded-Host", source["Host"])
    return result


def response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The upstream response headers sent back to the client (hop-by-hop ones removed)."""
    source: CIMultiDict[str] = CIMultiDict(headers)
    dropped = set(HOP_BY_HOP) | {name.strip().lower() for value in source.getall("Connection", [])
                                 for name in value.split(",")}
    return CIMultiDict((k, v) for k, v in source.items() if k.lower() not in dropped)


class TrafficRouter:
    """A reverse proxy on 127.0.0.1 that splits requests between backends by weight.

    ::

        router = TrafficRouter("ns/name")
        await router.start()          # router.url == "http://127.0.0.1:<port>"
        router.update([Backend("x-predictor-00001", 100, "http://127.0.0.1:41234")])
        ...
        await router.stop()
    """

    def __init__(self, name: str, *, rng: random.Random | None = None) -> None:
        self.name = name
        self._rng = rng or random.Random()
        self._backends: tuple[Backend, ...] = ()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"the router of {self.name} is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._backends

    def update(self, backends: Sequence[Backend]) -> None:
        """Route new requests by these backends (requests in flight finish where they are)."""
        self._backends = tuple(backends)

    async def start(self, preferred_port: int | None = None) -> int:
        """Listen on `preferred_port` when it is free (an address kept across restarts), else any port."""
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await runner.setup()
        for port in ([preferred_port] if preferred_port else []) + [0]:
            try:
                # SO_REUSEADDR: rebinding a port whose old connections linger in TIME_WAIT works; a
                # port another socket listens on still fails, and the router takes a fresh one.
                site = web.TCPSite(runner, HOST, port, reuse_address=True)
                await site.start()
            except OSError:
                continue
            break
        else:  # pragma: no cover - port 0 always binds
            await runner.cleanup()
            raise OSError(f"the router of {self.name} could not listen on {HOST}")
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession(
            auto_decompress=False,  # forward bodies byte for byte, compressed or not
            trust_env=False,  # loopback only: never through a proxy from the environment
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self.port

    async def stop(self) -> None:
        """Stop listening and close upstream connections (idempotent)."""
        runner, session = self._runner, self._session
        self._runner = self._session = None
        if runner is not None:
            await runner.cleanup()
        if session is not None:
            await session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        backend = choose_backend(self._backends, self._rng.random(), request.headers.get(TAG_HEADER))
        if backend is None:
            return web.Response(status=503, text=f"no revision of {self.name} is ready to serve traffic\n")
        if backend.url is None:
            return web.Response(status=503, text=f"revision {backend.revision} of {self.name} has no ready pod\n")
        assert self._session is not None
        headers = forwarded_headers(request.headers, request.remote)
        body = request.content if request.body_exists else None
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(request.method, backend.url + request.rel_url.raw_path_qs,
                                             headers=headers, data=body, allow_redirects=False,
                                             skip_auto_headers=("User-Agent", "Accept-Encoding")) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                              headers=response_headers(upstream.headers))
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionResetError) as exc:
            if response is not None and response.prepared:
                # The status line is out: like any proxy, cut the connection so the client sees a
                # truncated response instead of a complete-looking one.
                log.warning("%s: response of revision %s broke off: %s", self.name, backend.revision, exc)
                if request.transport is not None:
                    request.transport.close()
                return response
            log.warning("%s: revision %s at %s failed: %s", self.name, backend.revision, backend.url, exc)
            return web.Response(status=502, text=f"revision {backend.revision} of {self.name} at {backend.url} "
                                                 f"could not be reached: {exc}\n")
