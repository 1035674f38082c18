"""Paginated lists (`limit` + `continue`), each a consistent snapshot as kube-apiserver serves.

The first page keeps the full filtered list (references to immutable stored dicts: cheap)
under a random id; continue tokens point into it. Snapshots expire after a while or when
too many are held: a continue token then answers 410 Gone, and the client starts over.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeloop.local import errors

EXPIRED_MESSAGE = (
    'The provided continue parameter is too old to display a consistent list result. You can start a new '
    'list without the continue parameter.')


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    resource_version: int  # of the snapshot the page comes from
    continue_token: str | None
    remaining: int


@dataclass(frozen=True)
class _Snapshot:
    items: list[dict[str, Any]]
    resource_version: int
    taken_at: float


class ListPages:
    """Held list snapshots, served page by page."""

    def __init__(self, *, capacity: int = 64, ttl_seconds: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._snapshots: collections.OrderedDict[str, _Snapshot] = collections.OrderedDict()
        self._capacity = capacity
        self._ttl = ttl_seconds
        self._monotonic = monotonic

    def first(self, items: list[dict[str, Any]], resource_version: int, limit: int | None) -> Page:
        if not limit or len(items) <= limit:
            return Page(items, resource_version, None, 0)
        snapshot_id = secrets.token_hex(8)
        self._snapshots[snapshot_id] = _Snapshot(items, resource_version, self._monotonic())
        while len(self._snapshots) > self._capacity:
            self._snapshots.popitem(last=False)
        return self._page(snapshot_id, 0, limit)

    def next(self, token: str, limit: int | None) -> Page:
        snapshot_id, offset = _decode_token(token)
        snapshot = self._snapshots.get(snapshot_id)
        if snapshot is None or self._monotonic() - snapshot.taken_at > self._ttl:
            self._snapshots.pop(snapshot_id, None)
            raise errors.expired(EXPIRED_MESSAGE)
        return self._page(snapshot_id, offset, limit or len(snapshot.items))

    def _page(self, snapshot_id: str, offset: int, limit: int) -> Page:
        snapshot = self._snapshots[snapshot_id]
        end = offset + limit
        items = snapshot.items[offset:end]
        if end >= len(snapshot.items):
            del self._snapshots[snapshot_id]
            return Page(items, snapshot.resource_version, None, 0)
        return Page(items, snapshot.resource_version, _encode_token(snapshot_id, end), len(snapshot.items) - end)


def _encode_token(snapshot_id: str, offset: int) -> str:
    raw = json.dumps({'snapshot': snapshot_id, 'offset': offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip('=')


def _decode_token(token: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(token + '=' * (-len(token) % 4))
        decoded = json.loads(raw)
        snapshot_id, offset = decoded['snapshot'], decoded['offset']
        if not isinstance(snapshot_id, str) or not isinstance(offset, int) or offset < 0:
            raise ValueError('unexpected content')
        return snapshot_id, offset
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request(f'continue key is not valid: {exc}') from exc
