"""An asyncio client of the Kubernetes API for the local node's controllers.

The node's controllers are written like real ones: list + watch into a cache (an
"informer"), react to events, write status through the status subresource. This module
holds that machinery once; controllers only decide what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """`/api/v1/namespaces/ns/pods/x/status` and friends."""
    parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata", {})
    return meta.get("namespace", "") or "", meta["name"]


class ApiError(Exception):
    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        try:
            self.message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            self.message = body
        super().__init__(f"{method} {path} -> {status}: {self.message}")


@dataclass
class NodeClient:
    """HTTP client of one API server (loopback, bearer token as in the kubeconfig)."""

    base_url: str
    token: str | None = None
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> NodeClient:
        config = yaml.safe_load(Path(path).read_text())
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user: dict[str, Any] = next((u["user"] for u in config.get("users", []) if u["name"] == context.get("user")), {})
        return cls(base_url=cluster["server"].rstrip("/"), token=user.get("token"))

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                self.base_url, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                trust_env=False)  # loopback only: never through a proxy from the environment
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, path, data=data, params=params,
                                        headers={"Content-Type": content_type}) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiError(response.status, text, method, path)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=dict(obj))

    async def patch(self, path: str, patch: Any, *, content_type: str = "application/merge-patch+json"
                    ) -> dict[str, Any]:
        return await self.request("PATCH", path, body=patch, content_type=content_type)

    async def patch_status(self, path: str, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch `status` (via the status subresource); None when the object is gone."""
        try:
            return await self.patch(f"{path}/status", {"status": dict(status)})
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def delete(self, path: str, *, propagation: str = "Background") -> bool:
        try:
            await self.request("DELETE", path, body={"propagationPolicy": propagation})
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list(self, path: str, *, label_selector: str | None = None, field_selector: str | None = None
                   ) -> tuple[list[dict[str, Any]], str]:
        params = {k: v for k, v in {"labelSelector": label_selector, "fieldSelector": field_selector}.items() if v}
        result = await self.request("GET", path, params=params)
        return list(result.get("items", [])), str(result.get("metadata", {}).get("resourceVersion", ""))

    async def watch_stream(self, path: str, resource_version: str, *, label_selector: str | None = None,
                           timeout_seconds: int = 300) -> AsyncIterator[dict[str, Any]]:
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        async with self.session.get(path, params=params) as response:
            if response.status >= 300:
                raise ApiError(response.status, await response.text(), "WATCH", path)
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)


@dataclass
class Informer:
    """list + watch of one resource into a cache, yielding (event type, object) like client-go.

    On a 410 Gone or a dropped stream it lists again and turns the difference into events,
    so a controller never misses a change and never sees one twice in a row.
    """

    client: NodeClient
    path: str
    label_selector: str | None = None
    cache: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        while True:
            try:
                items, version = await self.client.list(self.path, label_selector=self.label_selector)
            except (aiohttp.ClientError, ApiError) as exc:
                log.warning("listing %s failed (%s); retrying", self.path, exc)
                await asyncio.sleep(1)
                continue
            fresh = {object_key(obj): obj for obj in items}
            for key in list(self.cache):
                if key not in fresh:
                    yield "DELETED", self.cache.pop(key)
            for key, obj in fresh.items():
                kind = "MODIFIED" if key in self.cache else "ADDED"
                self.cache[key] = obj
                yield kind, obj
            self.synced.set()
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async for event in self.client.watch_stream(self.path, version, label_selector=self.label_selector):
                    kind, obj = event.get("type", ""), event.get("object", {})
                    if kind == "ERROR":
                        break  # 410 Gone (or another error): relist
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    if kind == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    if kind == "DELETED":
                        self.cache.pop(key, None)
                    else:
                        self.cache[key] = obj
                    yield kind, obj
