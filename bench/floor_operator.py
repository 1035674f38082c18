"""The floor: the least a kopf operator can do per resource (bench/operator.py compares).

On create: one owned ConfigMap and a status patch — the same work kubeloop's reconcile
does at minimum (an owned child plus status), with nothing else. Run with
`kopf run --standalone bench/floor_operator.py` and KUBECONFIG set.
"""

from __future__ import annotations

import os
from typing import Any

import kopf
from kubernetes import client, config

_configuration = client.Configuration()
config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=_configuration)
_core = client.CoreV1Api(client.ApiClient(_configuration))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.execution.max_workers = int(os.environ.get("FLOOR_MAX_WORKERS", "32"))
    settings.posting.enabled = False


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.create("bench.kubeloop.dev", "v1", "things")
def create_thing(body: kopf.Body, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{name}-child"}, "data": {"owner": name}}
    kopf.adopt(configmap, owner=body)
    _core.create_namespaced_config_map(namespace, configmap)
    patch.status["phase"] = "Done"
