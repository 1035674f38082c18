"""Watch streams as kube-apiserver's watch cache serves them.

- `resourceVersion` unset or "0": synthetic ADDED events for the current objects, then live;
- `resourceVersion=N`: the logged changes after N, then live; N older than the change log's
  window: a single ERROR event with a 410 Expired Status (the client relists);
- `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan` and bookmarks): the
  current objects, then a BOOKMARK annotated `k8s.io/initial-events-end`, then live;
- `allowWatchBookmarks=true`: a BOOKMARK with the current resourceVersion when idle;
- `timeoutSeconds`: the stream ends cleanly after that long;
- selectors filter events; an object that stops matching is DELETED for that watcher and
  one that starts matching is ADDED, as the watch cache does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web

from kubeloop.local import errors
from kubeloop.local.catalog import ResourceDef
from kubeloop.local.store import ADDED, DELETED, MODIFIED, Change, ObjectStore, ResourceVersionTooOld, Watcher
from kubeloop.local.store import metadata as meta_of

logger = logging.getLogger(__name__)

INITIAL_EVENTS_END = 'k8s.io/initial-events-end'
BOOKMARK, ERROR = 'BOOKMARK', 'ERROR'
_LIVENESS_CHECK_SECONDS = 1.0  # how often an idle stream looks whether its client or server left


@dataclass(frozen=True)
class WatchParams:
    resource_version: str | None
    resource_version_match: str | None
    send_initial_events: bool | None
    allow_bookmarks: bool
    timeout_seconds: float


def check_params(params: WatchParams) -> None:
    """kube's validation of watch options (422 on the ListOptions, as kube answers)."""
    causes = []
    if params.send_initial_events is not None:
        if params.resource_version_match != 'NotOlderThan':
            causes.append(errors.Cause('resourceVersionMatch', 'FieldValueForbidden',
                                       'Forbidden: sendInitialEvents requires setting resourceVersionMatch to '
                                       'NotOlderThan'))
        if params.send_initial_events and not params.allow_bookmarks:
            causes.append(errors.Cause('allowWatchBookmarks', 'FieldValueRequired',
                                       'Required value: sendInitialEvents requires setting allowWatchBookmarks '
                                       'to true'))
    elif params.resource_version_match:
        causes.append(errors.Cause('resourceVersionMatch', 'FieldValueForbidden',
                                   'Forbidden: resourceVersionMatch is forbidden for watch unless '
                                   'sendInitialEvents is provided'))
    if causes:
        raise errors.invalid('meta.k8s.io', 'ListOptions', '', causes)


def parse_resource_version(text: str | None) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise errors.bad_request(f'invalid resource version: {text}') from None
    if value < 0:
        raise errors.bad_request(f'invalid resource version: {text}')
    return value


class WatchStream:
    """One watch: its starting events, its live subscription, and how it is written out.

    `render(obj, first)` turns an object into what the client asked for (plain, Table...);
    `first` is true for the first object of the stream.
    """

    def __init__(self, *, store: ObjectStore, res: ResourceDef, namespace: str | None, params: WatchParams,
                 matches: Callable[[dict[str, Any]], bool],
                 render: Callable[[dict[str, Any], bool], dict[str, Any]],
                 current: Callable[[], list[dict[str, Any]]], bookmark_interval: float,
                 server_stopping: Callable[[], bool]) -> None:
        self.store = store
        self.res = res
        self.namespace = namespace
        self.params = params
        self.matches = matches
        self.render = render
        self.current = current
        self.bookmark_interval = bookmark_interval
        self.server_stopping = server_stopping
        self._sent_objects = 0

    def start(self) -> tuple[list[tuple[str, dict[str, Any]]], Watcher | None]:
        """The events to send first and the live subscription, taken atomically (no await)."""
        start = parse_resource_version(self.params.resource_version)
        if self.params.send_initial_events:
            initial = [(ADDED, obj) for obj in self.current()]
            initial.append((BOOKMARK, self._bookmark(initial_events_end=True)))
            return initial, self.store.watch(self.res.storage, self.namespace)
        if start is None or start == 0:
            initial = [(ADDED, obj) for obj in self.current()]
            return initial, self.store.watch(self.res.storage, self.namespace)
        try:
            changes = self.store.changes_since(self.res.storage, start)
        except ResourceVersionTooOld as exc:
            return [(ERROR, errors.expired(str(exc)).status())], None
        initial = [event for change in changes if (event := self._event_for(change)) is not None]
        return initial, self.store.watch(self.res.storage, self.namespace)

    async def serve(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        initial, watcher = self.start()
        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        response.enable_chunked_encoding()
        await response.prepare(raw_request)
        try:
            for kind, obj in initial:
                await self._send(response, kind, obj)
            if watcher is not None:
                await self._stream_live(raw_request, response, watcher)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away: nothing more to say
        except Exception as exc:  # a bug: say so in the stream (the status line is already sent)
            logger.exception("A watch of %s failed", self.res.plural)
            with contextlib.suppress(ConnectionError):
                await self._send(response, ERROR, errors.internal(f'{type(exc).__name__}: {exc}').status())
                await response.write_eof()
        finally:
            if watcher is not None:
                self.store.unwatch(watcher)
        return response

    async def _stream_live(self, raw_request: aiohttp.web.BaseRequest, response: aiohttp.web.StreamResponse,
                           watcher: Watcher) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.params.timeout_seconds
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            now = loop.time()
            if now >= deadline or self._client_gone(raw_request) or self.server_stopping():
                return
            if self.params.allow_bookmarks and now >= next_bookmark:
                await self._send(response, BOOKMARK, self._bookmark())
                next_bookmark = now + self.bookmark_interval
            wait = min(deadline, next_bookmark if self.params.allow_bookmarks else deadline) - now
            try:
                change = await asyncio.wait_for(watcher.queue.get(), timeout=max(0.0, min(wait,
                                                _LIVENESS_CHECK_SECONDS)))
            except TimeoutError:
                continue
            if change is None:  # the server stops, or the resource is no longer served
                return
            event = self._event_for(change)
            if event is not None:
                await self._send(response, *event)

    def _event_for(self, change: Change) -> tuple[str, dict[str, Any]] | None:
        """The event this watcher sees for a change, given its selectors (or none)."""
        if change.type == DELETED:
            return (DELETED, change.obj) if self.matches(change.obj) else None
        now_matches = self.matches(change.obj)
        was_matching = change.old is not None and change.type == MODIFIED and self.matches(change.old)
        if now_matches:
            return (MODIFIED if was_matching else ADDED), change.obj
        if was_matching:
            assert change.old is not None
            # It left the selection: the watcher sees its last matching state go, at this version.
            gone = {**change.old, 'metadata': {**meta_of(change.old),
                                               'resourceVersion': str(change.resource_version)}}
            return DELETED, gone
        return None

    def _bookmark(self, *, initial_events_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {'resourceVersion': str(self.store.resource_version)}
        if initial_events_end:
            meta['annotations'] = {INITIAL_EVENTS_END: 'true'}
        return {'kind': self.res.kind, 'apiVersion': self.res.api_version, 'metadata': meta}

    async def _send(self, response: aiohttp.web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
        if kind in (BOOKMARK, ERROR):
            rendered = obj
        else:
            rendered = self.render(obj, self._sent_objects == 0)  # e.g. Table headers only at first
            self._sent_objects += 1
        await response.write(json.dumps({'type': kind, 'object': rendered}, separators=(',', ':')).encode()
                             + b'\n')

    @staticmethod
    def _client_gone(raw_request: aiohttp.web.BaseRequest) -> bool:
        transport = raw_request.transport
        return transport is None or transport.is_closing()
