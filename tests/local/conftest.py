"""Helpers for the local API server's own tests: a JSON client over kmock's fixture, a CRD."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

GROUP = 'test.kubeloop.dev'
WIDGETS = f'/apis/{GROUP}/v1/namespaces/default/widgets'
CONFIGMAPS = '/api/v1/namespaces/default/configmaps'
HANG_GUARD = 30.0  # seconds: only stops a test that would hang; never a performance limit

WIDGET_SCHEMA: dict[str, Any] = {
    'type': 'object',
    'properties': {
        'spec': {
            'type': 'object',
            'required': ['size'],
            'properties': {
                'size': {'type': 'integer', 'minimum': 1},
                'color': {'type': 'string', 'default': 'blue', 'enum': ['blue', 'red']},
                'tags': {'type': 'array', 'items': {'type': 'string'}},
                'parts': {'type': 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'],
                          'items': {'type': 'object', 'required': ['name'],
                                    'properties': {'name': {'type': 'string'}, 'count': {'type': 'integer'}}}},
            },
        },
        'status': {'type': 'object', 'properties': {'phase': {'type': 'string'}}},
    },
}


def widget_crd(**changes: Any) -> dict[str, Any]:
    """A small namespaced CRD (kind Widget) with a status subresource and printer columns."""
    crd: dict[str, Any] = {
        'apiVersion': 'apiextensions.k8s.io/v1',
        'kind': 'CustomResourceDefinition',
        'metadata': {'name': f'widgets.{GROUP}'},
        'spec': {
            'group': GROUP,
            'scope': 'Namespaced',
            'names': {'plural': 'widgets', 'singular': 'widget', 'kind': 'Widget', 'shortNames': ['wd'],
                      'categories': ['kubeloop']},
            'versions': [{
                'name': 'v1', 'served': True, 'storage': True,
                'schema': {'openAPIV3Schema': copy.deepcopy(WIDGET_SCHEMA)},
                'subresources': {'status': {}},
                'additionalPrinterColumns': [
                    {'name': 'Size', 'type': 'integer', 'jsonPath': '.spec.size'},
                    {'name': 'Phase', 'type': 'string', 'jsonPath': '.status.phase'},
                ],
            }],
        },
    }
    crd['spec'].update(changes)
    return crd


def widget(name: str, size: int = 1, **spec: Any) -> dict[str, Any]:
    return {'apiVersion': f'{GROUP}/v1', 'kind': 'Widget', 'metadata': {'name': name},
            'spec': {'size': size, **spec}}


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name}, 'data': data}


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    def __repr__(self) -> str:
        return f'Reply({self.status}, {json.dumps(self.body)[:600]})'


class Client:
    """JSON requests to the kmock-served LocalAPIServer."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = 'application/json',
                      params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Reply:
        data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        all_headers = {'Content-Type': content_type, **(headers or {})}
        async with self.server.request(method, path, data=data, params=params, headers=all_headers) as response:
            raw = await response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode()
            return Reply(response.status, parsed, response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request('GET', path, **kwargs)

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request('POST', path, body, **kwargs)

    async def put(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request('PUT', path, body, **kwargs)

    async def patch(self, path: str, body: Any, content_type: str = 'application/merge-patch+json',
                    **kwargs: Any) -> Reply:
        return await self.request('PATCH', path, body, content_type=content_type, **kwargs)

    async def delete(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.request('DELETE', path, body, **kwargs)

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """The body of a successful request (fails the test with the Status otherwise)."""
        reply = await self.request(method, path, body, **kwargs)
        assert reply.status < 300, reply
        return reply.body

    async def install_widgets(self, crd: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.ok('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd or widget_crd())

    async def eventually(self, path: str, predicate: Any, *, what: str) -> Reply:
        """Poll a GET until `predicate(reply)` holds (the controllers act asynchronously)."""
        async with asyncio.timeout(HANG_GUARD):
            while True:
                reply = await self.get(path)
                if predicate(reply):
                    return reply
                await asyncio.sleep(0.01)


class Watch:
    """An open watch stream, read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(HANG_GUARD):
            line = await self.response.content.readline()
        assert line, 'the watch stream ended'
        return json.loads(line)

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]

    async def rest(self) -> list[dict[str, Any]]:
        """All remaining events until the server ends the stream."""
        events = []
        async with asyncio.timeout(HANG_GUARD):
            async for line in self.response.content:
                if line.strip():
                    events.append(json.loads(line))
        return events


@contextlib.asynccontextmanager
async def open_watch(server: Any, path: str, **params: str) -> AsyncIterator[Watch]:
    async with server.get(path, params={'watch': 'true', **params}) as response:
        assert response.status == 200, await response.text()
        yield Watch(response)


@pytest.fixture()
def client(kmock: Any) -> Client:
    return Client(kmock)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, name) of each event, for compact assertions."""
    return [(event['type'], event['object'].get('metadata', {}).get('name', '')) for event in events]
