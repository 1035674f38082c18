"""The one place that talks to the Kubernetes API (besides kopf itself).

- `KubeClient`: a small generic REST client over the official `kubernetes` library's
  transport (auth, TLS, kubeconfig/in-cluster config), working on plain dicts because
  kubeloop's builders produce plain manifests.
- `apply`: create-or-patch with server-side apply under one field manager, so the
  operator owns exactly the fields it sets and users/other controllers keep theirs.
- `translate_api_error`: API errors become kopf errors in one place: 409/429/5xx are
  retried later (TemporaryError), 422 is a permanent problem with what we built.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import kopf
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException


@dataclass(frozen=True)
class ResourceType:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def base_path(self) -> str:
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        parts = [self.base_path]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


# The kinds the operator reads or writes. Declared, not discovered: the set is small and
# fixed, and discovery would cost a round trip per kind on every start.
_KNOWN: tuple[ResourceType, ...] = (
    ResourceType("v1", "ConfigMap", "configmaps"),
    ResourceType("v1", "Secret", "secrets"),
    ResourceType("v1", "Service", "services"),
    ResourceType("v1", "Pod", "pods"),
    ResourceType("v1", "Event", "events"),
    ResourceType("v1", "Namespace", "namespaces", namespaced=False),
    ResourceType("v1", "Node", "nodes", namespaced=False),
    ResourceType("batch/v1", "Job", "jobs"),
    ResourceType("batch/v1", "CronJob", "cronjobs"),
    ResourceType("serving.kserve.io/v1beta1", "InferenceService", "inferenceservices"),
    ResourceType("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    ResourceType("kubeloop.dev/v1alpha1", "FeatureSet", "featuresets"),
    ResourceType("kubeloop.dev/v1alpha1", "TrainingRun", "trainingruns"),
    ResourceType("kubeloop.dev/v1alpha1", "ModelVersion", "modelversions"),
    ResourceType("kubeloop.dev/v1alpha1", "DriftMonitor", "driftmonitors"),
)
_BY_KIND = {(r.api_version, r.kind): r for r in _KNOWN}


def resource_type(api_version: str, kind: str) -> ResourceType:
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise ValueError(
            f"kubeloop does not know the resource of {kind} ({api_version}); add it to core.kube._KNOWN"
        ) from None


class KubeClient:
    """Synchronous JSON client; kopf runs sync handlers in its thread pool."""

    def __init__(self, api_client: k8s_client.ApiClient, *, field_manager: str = "kubeloop") -> None:
        self._api = api_client
        self.field_manager = field_manager

    @classmethod
    def connect(cls, kubeconfig: str | None = None, *, field_manager: str = "kubeloop") -> KubeClient:
        """From an explicit kubeconfig, else in-cluster, else the default kubeconfig.

        The configuration is loaded explicitly into a fresh object: the `kubernetes`
        library reads $KUBECONFIG at import time, which is wrong for local clusters
        started later in the same process.
        """
        configuration = k8s_client.Configuration()
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(client_configuration=configuration)
        return cls(k8s_client.ApiClient(configuration), field_manager=field_manager)

    def close(self) -> None:
        self._api.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self._api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=json.dumps(body) if content_type.endswith("yaml") and body is not None else body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*serialized)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=data.decode(errors="replace"), data=None)
        return json.loads(data) if data else {}

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", resource_type(api_version, kind).path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return list(self.request("GET", resource_type(api_version, kind).path(namespace), query=query)["items"])

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update `manifest` with server-side apply (force: the operator owns its fields)."""
        rtype = resource_type(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        path = rtype.path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": self.field_manager, "force": "true"}
        return self.request("PATCH", path, query=query, body=dict(manifest),
                            content_type="application/apply-patch+yaml")

    def create(self, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create `manifest` unless an object of that name exists: (the object, whether created).

        For children that must never be modified once they exist (a Job's pod template is
        immutable, and a running attempt must keep the spec it started with)."""
        rtype = resource_type(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        try:
            return self.request("POST", rtype.path(meta.get("namespace")), query={"fieldManager": self.field_manager},
                                body=dict(manifest)), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = self.get(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        if existing is None:  # deleted between the two requests: the next pass creates it
            raise kopf.TemporaryError(f"{manifest['kind']} {meta['name']} was deleted while being created", delay=1)
        return existing, False

    def merge_patch(self, api_version: str, kind: str, namespace: str | None, name: str,
                    patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the object (not its status)."""
        return self.request("PATCH", resource_type(api_version, kind).path(namespace, name), body=dict(patch),
                            content_type="application/merge-patch+json")

    def patch_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = resource_type(api_version, kind).path(namespace, name, "status")
        return self.request("PATCH", path, body={"status": dict(status)},
                            content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
               *, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        path = resource_type(api_version, kind).path(namespace, name)
        try:
            self.request("DELETE", path, body={"propagationPolicy": propagation})
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.body or exc.reason)


def translate_api_error(exc: ApiException, action: str) -> kopf.TemporaryError | kopf.PermanentError:
    """Map an API error met while doing `action` to what kopf should do about it."""
    message = _api_message(exc)
    status = exc.status or 0
    if status == 409:
        return kopf.TemporaryError(f"{action}: conflict ({message}); retrying with fresh state", delay=1)
    if status == 422:
        return kopf.PermanentError(f"{action}: refused as invalid: {message}")
    if status == 429:
        retry_after = (exc.headers or {}).get("Retry-After", "5")
        delay = float(retry_after) if str(retry_after).isdigit() else 5.0
        return kopf.TemporaryError(f"{action}: throttled by the API server ({message})", delay=delay)
    if status in (401, 403):
        return kopf.TemporaryError(
            f"{action}: {message} (check the operator's ServiceAccount and ClusterRole)", delay=60)
    if status == 404:
        return kopf.TemporaryError(f"{action}: not found ({message}); waiting for it to exist", delay=10)
    if status >= 500 or status == 0:
        return kopf.TemporaryError(f"{action}: API server error {status} ({message}); retrying", delay=10)
    return kopf.PermanentError(f"{action}: API error {status}: {message}")


@contextlib.contextmanager
def api_errors_translated(action: str) -> Iterator[None]:
    """Run a block of API calls; API errors leave it as kopf errors (see `translate_api_error`)."""
    try:
        yield
    except ApiException as exc:
        raise translate_api_error(exc, action) from exc
