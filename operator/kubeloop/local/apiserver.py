"""The local Kubernetes API server: kmock's emulator made faithful for kopf and real kubectl.

`LocalAPIServer` is a `kmock.KubernetesEmulator` whose state logic is kubeloop's own (see
`operations.py`, `store.py`, `watching.py`, `controllers.py`): it parses Kubernetes URLs
itself, answers every request as kube-apiserver would, and refuses what it does not emulate
with a proper `Status` error instead of a silent success. kmock's DSL keeps working for
fault injection: a reaction such as ``server['patch trainingruns'] << 500`` is tried first,
and only requests that no reaction answers reach the emulation.

Run it in a test::

    async with LocalAPIServer() as server, kmock.Server(server, host='127.0.0.1', port=port):
        ...

in a background thread (`RunningAPIServer`), or as a process: `kubeloop local apiserver`.

Deliberately not emulated (each answered loudly): protobuf (406/415), managedFields and
field-manager conflicts of server-side apply (applies merge; a field dropped from an applied
configuration stays), CEL rules, conversion and admission webhooks (CRDs using them: 422),
authentication and RBAC (any token; access reviews say "allowed" and why), graceful pod
termination (pods are deleted at once), the pod subresources (log, exec...) except through
`register_subresource_handler` (405) -- a served server (`serving`, `RunningAPIServer`, the CLI)
registers `pods/log`, proxied to the pod's node as kube-apiserver does (see podlogs.py) --, validation of built-in kinds beyond metadata, and
the storage of events.k8s.io/v1 and v1 Events being shared (they are two separate lists).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web
import attrs
import kmock
from kmock._internal import k8s_dicts
from kmock._internal.rendering import StreamingError

from kubeloop.local import discovery, errors, openapi, podlogs
from kubeloop.local.catalog import ResourceCatalog, ResourceDef
from kubeloop.local.controllers import Controllers
from kubeloop.local.errors import APIError
from kubeloop.local.kubeconfig import write_kubeconfig
from kubeloop.local.operations import (
    NAMESPACES,
    ObjectAPI,
    Outcome,
    WriteOptions,
)
from kubeloop.local.pagination import ListPages
from kubeloop.local.representations import JSON, ObjectRenderer, encode, negotiate
from kubeloop.local.request_options import (
    Route,
    decode_body,
    delete_options,
    is_watch,
    kmock_action,
    non_negative_int,
    optional_bool,
    parse_route,
    refuse_shard_selector,
    require_body,
    write_options,
)
from kubeloop.local.store import ObjectStore, metadata
from kubeloop.local.watching import WatchParams, WatchStream, check_params, parse_resource_version

logger = logging.getLogger(__name__)

HOST = '127.0.0.1'
INITIAL_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')
DEFAULT_WATCH_TIMEOUT_SECONDS = 1800.0  # kube-apiserver picks 30-60 minutes when the client says nothing
_BUILT_IN_SUBRESOURCES = frozenset({'status', 'finalize', 'scale'})

T = TypeVar('T')


@dataclass(frozen=True)
class SubresourceCall:
    """What a registered subresource handler gets: the request and the object it is about."""

    request: kmock.Request
    resource: ResourceDef
    namespace: str | None
    name: str
    subresource: str
    obj: dict[str, Any]

    @property
    def raw_request(self) -> aiohttp.web.BaseRequest:
        assert self.request._raw_request is not None
        return self.request._raw_request


SubresourceResult = aiohttp.web.StreamResponse | dict[str, Any] | str | bytes
SubresourceHandler = Callable[[SubresourceCall], Awaitable[SubresourceResult]]


@dataclass(frozen=True)
class OpenAPIDocuments:
    fingerprint: str  # of the served resources the documents describe
    index: dict[str, Any]
    by_path: dict[str, bytes]  # "apis/<group>/<version>" -> the document's canonical bytes


class ReadOnlyObjects(kmock.ObjectsArray):
    """A snapshot of the stored objects for assertions; the store is changed through the API."""

    def __setitem__(self, key: Any, value: Any, /) -> None:
        raise TypeError('LocalAPIServer.objects is a read-only snapshot: create or change objects through the API')

    def __delitem__(self, key: Any, /) -> None:
        raise TypeError('LocalAPIServer.objects is a read-only snapshot: delete objects through the API')


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define(kw_only=True)
class LocalAPIServer(kmock.KubernetesEmulator):
    """A Kubernetes API server in memory, faithful where kopf and kubectl depend on it."""

    request_window: int = 1000  # how many recent requests kmock keeps for assertions and filters
    change_window: int = 10_000  # how far back watches may resume (older: 410 Gone)
    bookmark_interval: float = 5.0  # seconds between BOOKMARK events of idle watches that allow them
    watch_timeout: float = DEFAULT_WATCH_TIMEOUT_SECONDS
    clock: Callable[[], datetime.datetime] = _utcnow
    proxy_pod_logs: bool = False  # serve pods/log from the pods' nodes (the served servers turn it on)

    _store: ObjectStore = attrs.field(init=False)
    _catalog: ResourceCatalog = attrs.field(init=False)
    _api: ObjectAPI = attrs.field(init=False)
    _controllers: Controllers = attrs.field(init=False)
    _controllers_task: asyncio.Task[None] | None = attrs.field(init=False, default=None)
    _pages: ListPages = attrs.field(init=False, factory=ListPages)
    _subresource_handlers: list[tuple[kmock.resource, str, SubresourceHandler]] = attrs.field(
        init=False, factory=list)
    _openapi_cache: OpenAPIDocuments | None = attrs.field(init=False, default=None)
    _stopping: bool = attrs.field(init=False, default=False)
    _served_by_kmock: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        # Deliberately not the parents' initialisation: they register kmock's own state handlers
        # as DSL fallbacks; here the emulation is ours and only user reactions go through the DSL.
        self._store = ObjectStore(change_window=self.change_window)
        self._catalog = ResourceCatalog(self._resources)
        self._catalog.load_built_ins()
        self._api = ObjectAPI(self._store, self._catalog, self.clock)
        self._controllers = Controllers(self._api, self._catalog)
        namespaces = self._catalog.preferred(*NAMESPACES)
        assert namespaces is not None
        for name in INITIAL_NAMESPACES:
            self._api.create(namespaces, None, {'metadata': {'name': name}}, WriteOptions())
        if self.proxy_pod_logs:
            self.register_subresource_handler('v1/pods', 'log', podlogs.pod_log_handler(self._node))

    # Public surface beyond kmock's.

    @property
    def store(self) -> ObjectStore:
        return self._store

    @property
    def api(self) -> ObjectAPI:
        """The API semantics without HTTP: for tools and tests that run in the server's loop."""
        return self._api

    @property
    def catalog(self) -> ResourceCatalog:
        return self._catalog

    @property
    def objects(self) -> kmock.ObjectsArray:
        """A read-only snapshot of all stored objects, keyed as kmock keys them."""
        snapshot = ReadOnlyObjects()
        for storage in self._store.storages():
            res = self._catalog.preferred(*storage)
            if res is None:
                continue
            key = kmock.resource(res.group, res.version, res.plural)
            for obj in self._store.objects(storage):
                meta = metadata(obj)
                snapshot._objects[key, meta.get('namespace'), meta['name']] = k8s_dicts.Object(obj)
        return snapshot

    def _node(self, name: str) -> dict[str, Any] | None:
        nodes = self._catalog.preferred('', 'nodes')
        return self._store.get(nodes.storage, None, name) if nodes is not None else None

    def register_subresource_handler(self, resource: str, subresource: str, handler: SubresourceHandler) -> None:
        """Serve GET/POST/... on `<resource>/<name>/<subresource>` (e.g. 'pods', 'log') with `handler`.

        `resource` is anything kmock parses: 'pods', 'v1/pods', 'jobs.v1.batch'. The object
        must exist (404 otherwise); the handler gets a `SubresourceCall` and returns a response,
        a JSON-able dict, or text/bytes. Unregistered pod subresources answer 405.
        """
        self._subresource_handlers.append((kmock.resource(resource), subresource, handler))

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until the controllers (GC, namespaces, CRDs) have nothing left to do now."""
        async with asyncio.timeout(timeout):
            while not self._controllers.idle:
                await asyncio.sleep(0.005)

    def stop_watches(self) -> None:
        """End all open watch streams (before shutting the HTTP server down)."""
        self._stopping = True
        self._store.stop_watchers()

    # Lifecycle.

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._stopping = False
        self._ensure_controllers()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop_watches()
        if self._controllers_task is not None:
            self._controllers_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controllers_task
            self._controllers_task = None
        await super().__aexit__(exc_type, exc_value, tb)

    def _ensure_controllers(self) -> None:
        if self._controllers_task is None or self._controllers_task.done():
            self._controllers_task = asyncio.get_running_loop().create_task(self._controllers.run())

    # Requests: parsing (kmock's parser misreads /api/v1/namespaces), a bounded history, serving.

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            if self.limit is not None and len(self._requests) >= self.limit:
                raise kmock.KMockError('Too many requests have been served so far.')
            request = await self._parse_request(raw_request)
            self._remember(request)
            return await self._handle(request)
        except StreamingError as exc:  # a user reaction's stream failed after it began: end it with an ERROR
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            self._collect_error(cause)
            response: aiohttp.web.StreamResponse = exc.args[0]
            await self._stream_error(cause, response)
            await response.write_eof()
            return response
        except Exception as exc:
            if not isinstance(exc, kmock.KubernetesError):  # those are injected on purpose
                logger.exception("The local API server failed on %s %s", raw_request.method, raw_request.path_qs)
            self._collect_error(exc)
            return await self._render_error(exc)

    def _collect_error(self, exc: Exception) -> None:
        if self._errors:  # kmock's convention: collected, and raised on exit in strict mode
            self._errors[-1].append(exc)

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest) -> kmock.Request:
        body = await raw_request.read()
        route = parse_route(raw_request.path)
        resource = (kmock.resource(route.group, route.version, route.plural)
                    if route.group is not None else None)
        return kmock.Request(
            id=self._request_count(),
            method=raw_request.method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            body=body,
            text=body.decode('utf-8', errors='replace'),
            data=decode_body(raw_request.content_type, body),
            action=kmock_action(route, raw_request.method, raw_request.query.get('watch')),
            resource=resource,
            namespace=route.namespace,
            name=route.name,
            subresource=route.subresource,
            raw_request=raw_request,
        )

    def _request_count(self) -> int:
        return self._requests[-1].id + 1 if self._requests else 0

    def _remember(self, request: kmock.Request) -> None:
        """Keep a bounded window: kmock filters each request against the whole history."""
        self._requests.append(request)
        excess = len(self._requests) - self.request_window
        if excess > 0:
            del self._requests[:excess]
        for reaction in self._payloads:
            if len(reaction._requests) > self.request_window:
                del reaction._requests[:len(reaction._requests) - self.request_window]

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._ensure_controllers()
        if self.servers:
            self._served_by_kmock = True
        if self._payloads:  # users' reactions (fault injection) come first
            try:
                return await kmock.RawHandler._handle(self, request)
            except NotImplementedError:
                pass  # no reaction took it: emulate
        try:
            return await self._serve(request)
        except APIError as exc:
            return _json_response(exc.status(), status=exc.code)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, APIError):
            return _json_response(exc.status(), status=exc.code)
        if isinstance(exc, kmock.KubernetesError):
            return await super()._render_error(exc)
        status = errors.internal(f'{type(exc).__name__}: {exc}').status()
        status['details']['causes'].append({'message': traceback.format_exc()})
        return _json_response(status, status=500)

    # Routing.

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        route = parse_route(raw.path)
        if route.group is None or route.version is None or route.plural is None:
            return self._serve_non_resource(raw, route)
        res = self._catalog.find(route.group, route.version, route.plural)
        if res is None or (route.namespace is not None and not res.namespaced):
            raise errors.unknown_path()
        namespace = route.namespace if res.namespaced else None
        if route.name is None:
            return await self._serve_collection(request, raw, res, namespace)
        if res.namespaced and namespace is None and res.storage != NAMESPACES:
            raise errors.unknown_path()
        if route.subresource is not None:
            return await self._serve_subresource(request, raw, res, namespace, route.name, route.subresource)
        return await self._serve_object(request, raw, res, namespace, route.name)

    def _serve_non_resource(self, raw: aiohttp.web.BaseRequest, route: Route) -> aiohttp.web.StreamResponse:
        if raw.method != 'GET':
            raise errors.method_not_allowed()
        path = raw.path.rstrip('/') or '/'
        if path in ('/healthz', '/livez', '/readyz') or path.startswith(('/healthz/', '/livez/', '/readyz/')):
            return aiohttp.web.Response(text='ok')
        documents: dict[str, Callable[[], dict[str, Any]]] = {
            '/': lambda: discovery.root_paths(self._catalog),
            '/version': lambda: dict(discovery.KUBERNETES_VERSION),
            '/api': lambda: discovery.api_versions(f'{raw.host}'),
            '/apis': lambda: discovery.api_group_list(self._catalog),
        }
        if path in documents:
            return self._document(raw, documents[path]())
        if path == '/openapi/v3' or path.startswith('/openapi/v3/'):
            return self._serve_openapi(raw, path)
        if route.group is not None and route.version is None:
            return self._document(raw, discovery.api_group(self._catalog, route.group))
        if route.group is not None and route.version is not None:
            return self._document(raw, discovery.api_resource_list(self._catalog, route.group, route.version))
        raise errors.unknown_path()

    def _document(self, raw: aiohttp.web.BaseRequest, document: dict[str, Any]) -> aiohttp.web.StreamResponse:
        representation = negotiate(raw.headers.get('Accept'), transforms=False)
        body, content_type = encode(representation, document)
        return aiohttp.web.Response(body=body, content_type=content_type)

    def _openapi(self) -> OpenAPIDocuments:
        """The OpenAPI v3 index and documents, rebuilt only when what is served changes."""
        served = sorted(self._catalog.served(), key=lambda res: (res.group, res.version, res.plural))
        fingerprint = json.dumps([(res.group, res.version, res.plural, res.kind, res.namespaced,
                                   sorted(res.subresources), res.custom.schema if res.custom else None)
                                  for res in served], sort_keys=True)
        if self._openapi_cache is None or self._openapi_cache.fingerprint != fingerprint:
            documents = {}
            for group, version in discovery.group_versions(self._catalog):
                docs = [openapi.ResourceDoc(group=res.group, version=res.version, kind=res.kind, plural=res.plural,
                                            namespaced=res.namespaced,
                                            schema=res.custom.schema if res.custom else None,
                                            subresources=res.subresources)
                        for res in served if (res.group, res.version) == (group, version)]
                group_version = f'{group}/{version}' if group else version
                documents[group_version] = openapi.openapi_group_version(group_version, docs)
            self._openapi_cache = OpenAPIDocuments(
                fingerprint, openapi.openapi_index(documents),
                {openapi.group_version_path(gv): openapi.document_bytes(doc) for gv, doc in documents.items()})
        return self._openapi_cache

    def _serve_openapi(self, raw: aiohttp.web.BaseRequest, path: str) -> aiohttp.web.StreamResponse:
        negotiate(raw.headers.get('Accept'), transforms=False)  # JSON only: 406 for protobuf-only clients
        documents = self._openapi()
        if path == '/openapi/v3':
            return _json_response(documents.index)
        body = documents.by_path.get(path.removeprefix('/openapi/v3/'))
        if body is None:
            raise errors.unknown_path()
        return aiohttp.web.Response(body=body, content_type='application/json')

    async def _serve_collection(self, request: kmock.Request, raw: aiohttp.web.BaseRequest, res: ResourceDef,
                                namespace: str | None) -> aiohttp.web.StreamResponse:
        if raw.method == 'GET' and is_watch(raw):
            self._require_verb(res, 'watch')
            return await self._watch(raw, res, namespace, name=None)
        if raw.method == 'GET':
            self._require_verb(res, 'list')
            return self._list(raw, res, namespace)
        if raw.method == 'POST':
            self._require_verb(res, 'create')
            outcome = self._api.create(res, namespace, require_body(raw, request), write_options(raw))
            return self._object_response(raw, outcome, status=201)
        if raw.method == 'DELETE':
            self._require_verb(res, 'deletecollection')
            query = raw.query
            deleted = self._api.delete_collection(res, namespace, query.get('labelSelector', ''),
                                                  query.get('fieldSelector', ''), delete_options(raw, request))
            listing = {'kind': res.list_kind, 'apiVersion': res.api_version,
                       'metadata': {'resourceVersion': str(self._store.resource_version)}, 'items': deleted}
            return _json_response(listing)
        raise errors.method_not_allowed()

    async def _serve_object(self, request: kmock.Request, raw: aiohttp.web.BaseRequest, res: ResourceDef,
                            namespace: str | None, name: str) -> aiohttp.web.StreamResponse:
        if raw.method == 'GET' and is_watch(raw):
            self._require_verb(res, 'watch')
            return await self._watch(raw, res, namespace, name=name)
        if raw.method == 'GET':
            self._require_verb(res, 'get')
            return self._respond_with_object(raw, res, self._api.get(res, namespace, name))
        if raw.method == 'PUT':
            self._require_verb(res, 'update')
            outcome = self._api.replace(res, namespace, name, require_body(raw, request), write_options(raw))
            return self._object_response(raw, outcome)
        if raw.method == 'PATCH':
            self._require_verb(res, 'patch')
            return self._patch(request, raw, res, namespace, name, subresource=None)
        if raw.method == 'DELETE':
            self._require_verb(res, 'delete')
            deletion = self._api.delete(res, namespace, name, delete_options(raw, request))
            return _json_response(self._api.deletion_response(res, deletion))
        raise errors.method_not_allowed()

    def _patch(self, request: kmock.Request, raw: aiohttp.web.BaseRequest, res: ResourceDef,
               namespace: str | None, name: str, subresource: str | None) -> aiohttp.web.StreamResponse:
        outcome = self._api.patch(res, namespace, name, raw.content_type, request.body, write_options(raw),
                                  subresource=subresource)
        return self._object_response(raw, outcome, status=201 if outcome.created else 200)

    async def _serve_subresource(self, request: kmock.Request, raw: aiohttp.web.BaseRequest, res: ResourceDef,
                                 namespace: str | None, name: str, subresource: str) -> aiohttp.web.StreamResponse:
        handler = self._subresource_handler(res, subresource)
        if handler is not None:
            obj = self._api.get(res, namespace, name)
            result = await handler(SubresourceCall(request, res, namespace, name, subresource, obj))
            return _subresource_response(result)
        if subresource not in res.subresources:
            raise errors.unknown_path()
        if subresource not in _BUILT_IN_SUBRESOURCES:
            raise errors.method_not_allowed(
                f'{res.plural}/{subresource} is not emulated by the local API server')
        if subresource == 'scale':
            return self._serve_scale(request, raw, res, namespace, name)
        if raw.method == 'GET' and subresource == 'status':
            return self._respond_with_object(raw, res, self._api.get(res, namespace, name))
        if raw.method == 'PUT':
            self._require_verb(res, 'update')
            outcome = self._api.replace(res, namespace, name, require_body(raw, request), write_options(raw),
                                        subresource=subresource)
            return self._object_response(raw, outcome)
        if raw.method == 'PATCH' and subresource == 'status':
            self._require_verb(res, 'patch')
            return self._patch(request, raw, res, namespace, name, subresource=subresource)
        raise errors.method_not_allowed()

    def _serve_scale(self, request: kmock.Request, raw: aiohttp.web.BaseRequest, res: ResourceDef,
                     namespace: str | None, name: str) -> aiohttp.web.StreamResponse:
        if raw.method == 'GET':
            self._require_verb(res, 'get')
            return _json_response(self._api.get_scale(res, namespace, name))
        if raw.method == 'PUT':
            self._require_verb(res, 'update')
            outcome = self._api.replace_scale(res, namespace, name, require_body(raw, request), write_options(raw))
            return self._object_response(raw, outcome)
        if raw.method == 'PATCH':
            self._require_verb(res, 'patch')
            outcome = self._api.patch_scale(res, namespace, name, raw.content_type, request.body,
                                            write_options(raw))
            return self._object_response(raw, outcome)
        raise errors.method_not_allowed()

    def _subresource_handler(self, res: ResourceDef, subresource: str) -> SubresourceHandler | None:
        for pattern, sub, handler in reversed(self._subresource_handlers):  # the latest registration wins
            if sub == subresource and pattern.check(kmock.resource(res.group, res.version, res.plural)):
                return handler
        return None

    @staticmethod
    def _require_verb(res: ResourceDef, verb: str) -> None:
        if not res.allows(verb):
            raise errors.APIError(405, 'MethodNotAllowed',
                                  f'{verb} is not supported on resources of kind '
                                  f'"{errors.qualified_resource(res.group, res.plural)}"',
                                  {'kind': res.plural, 'group': res.group} if res.group else {'kind': res.plural})

    # Reading: objects, lists, watches.

    def _renderer(self, raw: aiohttp.web.BaseRequest, res: ResourceDef) -> ObjectRenderer:
        representation = negotiate(raw.headers.get('Accept'))
        include_object = raw.query.get('includeObject', 'Metadata')
        if include_object not in ('None', 'Metadata', 'Object'):
            raise errors.bad_request(f'includeObject: Unsupported value: "{include_object}": supported values: '
                                     '"None", "Metadata", "Object"')
        return ObjectRenderer(representation, res, self.clock, include_object)

    def _respond_with_object(self, raw: aiohttp.web.BaseRequest, res: ResourceDef,
                             obj: dict[str, Any]) -> aiohttp.web.StreamResponse:
        renderer = self._renderer(raw, res)
        body, content_type = encode(renderer.representation, renderer.one(obj))
        return aiohttp.web.Response(body=body, content_type=content_type)

    def _object_response(self, raw: aiohttp.web.BaseRequest, outcome: Outcome,
                         status: int = 200) -> aiohttp.web.StreamResponse:
        representation = negotiate(raw.headers.get('Accept'), transforms=False)
        body, content_type = encode(representation, outcome.obj)
        response = aiohttp.web.Response(body=body, content_type=content_type, status=status)
        for warning in outcome.warnings:
            response.headers.add('Warning', f'299 - {json.dumps(warning)}')
        return response

    def _list(self, raw: aiohttp.web.BaseRequest, res: ResourceDef, namespace: str | None,
              ) -> aiohttp.web.StreamResponse:
        query = raw.query
        refuse_shard_selector(raw)
        renderer = self._renderer(raw, res)
        limit = non_negative_int(query, 'limit')
        label_selector, field_selector = query.get('labelSelector', ''), query.get('fieldSelector', '')
        if query.get('continue'):
            page = self._pages.next(query['continue'], limit)
        else:
            self._check_list_resource_version(raw)
            items = self._api.select(res, namespace, label_selector, field_selector)
            page = self._pages.first(items, self._store.resource_version, limit)
        list_metadata: dict[str, Any] = {'resourceVersion': str(page.resource_version)}
        if page.continue_token:
            list_metadata['continue'] = page.continue_token
            if not label_selector and not field_selector:
                list_metadata['remainingItemCount'] = page.remaining
        body, content_type = encode(renderer.representation, renderer.many(page.items, list_metadata))
        return aiohttp.web.Response(body=body, content_type=content_type)

    def _check_list_resource_version(self, raw: aiohttp.web.BaseRequest) -> None:
        requested = parse_resource_version(raw.query.get('resourceVersion'))
        match = raw.query.get('resourceVersionMatch')
        current = self._store.resource_version
        if match not in (None, '', 'Exact', 'NotOlderThan'):
            raise errors.invalid('meta.k8s.io', 'ListOptions', '', [errors.Cause(
                'resourceVersionMatch', 'FieldValueNotSupported',
                f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"')])
        if match and requested is None:
            raise errors.invalid('meta.k8s.io', 'ListOptions', '', [errors.Cause(
                'resourceVersionMatch', 'FieldValueForbidden',
                'Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided')])
        if requested and requested > current:
            raise errors.timeout(f'Too large resource version: {requested}, current: {current}')
        if match == 'Exact' and requested not in (0, current):
            raise errors.expired(f'The resourceVersion for the provided list is too old: {requested}; '
                                 'the local API server keeps no older snapshots')

    async def _watch(self, raw: aiohttp.web.BaseRequest, res: ResourceDef, namespace: str | None,
                     name: str | None) -> aiohttp.web.StreamResponse:
        query = raw.query
        refuse_shard_selector(raw)
        params = WatchParams(
            resource_version=query.get('resourceVersion'),
            resource_version_match=query.get('resourceVersionMatch'),
            send_initial_events=optional_bool(query, 'sendInitialEvents'),
            allow_bookmarks=optional_bool(query, 'allowWatchBookmarks') or False,
            timeout_seconds=float(non_negative_int(query, 'timeoutSeconds') or self.watch_timeout),
        )
        check_params(params)
        selected = self._api.matcher(res, query.get('labelSelector', ''), query.get('fieldSelector', ''))

        def matches(obj: dict[str, Any]) -> bool:
            meta = metadata(obj)
            if namespace is not None and meta.get('namespace') != namespace:
                return False
            return (name is None or meta.get('name') == name) and selected(obj)

        renderer = self._renderer(raw, res)
        stream = WatchStream(
            store=self._store, res=res, namespace=namespace, params=params, matches=matches,
            render=lambda obj, first: renderer.one(self._api.as_version(res, obj), headers=first),
            current=lambda: [obj for obj in self._store.objects(res.storage, namespace) if matches(obj)],
            bookmark_interval=self.bookmark_interval,
            server_stopping=lambda: self._stopping or (self._served_by_kmock and not self.servers),
        )
        return await stream.serve(raw)


def _json_response(document: dict[str, Any], status: int = 200) -> aiohttp.web.Response:
    body, content_type = encode(JSON, document)
    return aiohttp.web.Response(body=body, content_type=content_type, status=status)


def _subresource_response(result: SubresourceResult) -> aiohttp.web.StreamResponse:
    if isinstance(result, aiohttp.web.StreamResponse):
        return result
    if isinstance(result, dict):
        return _json_response(result)
    if isinstance(result, str):
        return aiohttp.web.Response(text=result, content_type='text/plain')
    return aiohttp.web.Response(body=result, content_type='application/octet-stream')


# Running it: in a background thread (tests, tools), or as a process (the CLI).

class RunningAPIServer:
    """A `LocalAPIServer` served on 127.0.0.1 from a background thread with its own event loop.

    ::

        with RunningAPIServer(kubeconfig_path=tmp / 'kubeconfig') as running:
            subprocess.run(['kubectl', '--kubeconfig', running.kubeconfig_path, 'get', 'ns'])
    """

    def __init__(self, *, port: int = 0, kubeconfig_path: str | Path | None = None,
                 **server_options: Any) -> None:
        self._requested_port = port
        self._kubeconfig_path = Path(kubeconfig_path) if kubeconfig_path is not None else None
        self._server_options = server_options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: LocalAPIServer | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> Self:
        self._thread = threading.Thread(target=self._run, name='kubeloop-local-apiserver', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f'the local API server did not start within {timeout}s')
        if self._failure is not None:
            raise RuntimeError('the local API server failed to start') from self._failure
        if self._kubeconfig_path is not None:
            self.write_kubeconfig(self._kubeconfig_path)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    @property
    def server(self) -> LocalAPIServer:
        if self._server is None:
            raise RuntimeError('the local API server is not running')
        return self._server

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError('the local API server is not running')
        return self._port

    @property
    def url(self) -> str:
        return f'http://{HOST}:{self.port}'

    @property
    def kubeconfig_path(self) -> Path:
        if self._kubeconfig_path is None:
            raise RuntimeError('no kubeconfig was written: pass kubeconfig_path= or call write_kubeconfig()')
        return self._kubeconfig_path

    def write_kubeconfig(self, path: str | Path) -> Path:
        self._kubeconfig_path = write_kubeconfig(path, self.url)
        return self._kubeconfig_path

    def call(self, fn: Callable[[LocalAPIServer], T], timeout: float = 30.0) -> T:
        """Run `fn(server)` in the server's loop (the store is not thread-safe) and return its result."""
        assert self._loop is not None

        async def in_loop() -> T:
            return fn(self.server)

        return asyncio.run_coroutine_threadsafe(in_loop(), self._loop).result(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() if it happens before readiness
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving(self._requested_port, **self._server_options) as (server, port):
            self._server, self._port = server, port
            self._ready.set()
            await self._stop.wait()


class serving:  # noqa: N801 - used as `async with serving(...)`, like a function
    """Serve a `LocalAPIServer` on 127.0.0.1:`port` (0: any free port) until the block exits."""

    def __init__(self, port: int = 0, **server_options: Any) -> None:
        self._port = port
        server_options.setdefault('proxy_pod_logs', True)  # a served cluster has nodes to ask
        self._server = LocalAPIServer(**server_options)
        self._runner: aiohttp.web.ServerRunner | None = None

    async def __aenter__(self) -> tuple[LocalAPIServer, int]:
        await self._server.__aenter__()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._port))
        self._runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self._server, handler_cancellation=True),
                                                shutdown_timeout=5.0)
        await self._runner.setup()
        await aiohttp.web.SockSite(self._runner, sock).start()
        return self._server, sock.getsockname()[1]

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._server.stop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        await self._server.__aexit__(exc_type, exc_value, tb)


def main(argv: list[str] | None = None) -> int:
    """`kubeloop local apiserver --port P --kubeconfig FILE`: serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog='kubeloop local apiserver',
                                     description='Run the local Kubernetes API server on 127.0.0.1.')
    parser.add_argument('--port', type=int, default=0, help='TCP port on 127.0.0.1 (default: any free port)')
    parser.add_argument('--kubeconfig', type=Path, help='write a kubeconfig for this server to FILE')
    parser.add_argument('--log-level', default='WARNING', help='Python logging level (default: WARNING)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    try:
        asyncio.run(_serve_until_signalled(args.port, args.kubeconfig))
    except OSError as exc:
        print(f'kubeloop local apiserver: cannot listen on {HOST}:{args.port}: {exc}', file=sys.stderr)
        return 1
    return 0


async def _serve_until_signalled(port: int, kubeconfig_path: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serving(port) as (_, actual_port):
        url = f'http://{HOST}:{actual_port}'
        if kubeconfig_path is not None:
            write_kubeconfig(kubeconfig_path, url)
            print(f'kubeconfig written to {kubeconfig_path} (context kubeloop-local)', flush=True)
        print(f'kubeloop local API server listening on {url}', flush=True)
        await stop.wait()
    print('kubeloop local API server stopped', flush=True)
