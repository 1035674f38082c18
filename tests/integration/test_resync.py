"""The periodic half of the level-triggered reconcile, against the local API server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeloop.core.kube import KubeClient
from kubeloop.core.reconcile import Reconcilable, Runtime, resync_all, resync_object
from kubeloop.core.settings import Settings
from kubeloop.featureset import handlers as featureset_handlers
from kubeloop.featureset.api import RESOURCE as FEATURESET
from tests.conftest import KubectlCLI
from tests.integration.conftest import wait_for
from tests.integration.test_operator_kubectl import sample

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(apiserver: Any) -> Iterator[KubeClient]:
    kube = KubeClient.connect(str(apiserver.kubeconfig_path))
    # Reconciles apply children and read the object store through the runtime, as in the operator.
    previous = Runtime.current
    Runtime.install(Runtime(kube, Settings()))
    yield kube
    Runtime.current = previous
    kube.close()


def outdated(kubectl: KubectlCLI, name: str, namespace: str) -> None:
    """Make the stored status out of date once the operator has handled the object's creation
    (it reacts to spec changes and to changes of children, which nothing changes here, so it
    leaves this alone)."""
    wait_for(lambda: "kubeloop.dev/last-handled-configuration" in
             (kubectl.json("get", "fs", name, "-n", namespace)["metadata"].get("annotations") or {}),
             what=f"the operator to handle the creation of {name}")
    kubectl("patch", "fs", name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", '{"status": {"observedGeneration": 0}}')


def test_resync_writes_status_once_then_nothing(operator_process: Any, kubectl_session: KubectlCLI,
                                                namespace: str, client: KubeClient):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "resynced", "namespace": namespace}
    kubectl_session.apply(fs)
    outdated(kubectl_session, "resynced", namespace)
    items = [Reconcilable(FEATURESET, featureset_handlers.reconcile)]
    assert resync_all(client, items, [namespace]) == 1
    status = kubectl_session.json("get", "fs", "resynced", "-n", namespace)["status"]
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    assert resync_all(client, items, [namespace]) == 0  # level-triggered: nothing changed, nothing written


def test_resync_skips_a_stale_read(operator_process: Any, kubectl_session: KubectlCLI, namespace: str,
                                   client: KubeClient):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "stale", "namespace": namespace}
    kubectl_session.apply(fs)
    outdated(kubectl_session, "stale", namespace)
    stale_body = client.get(FEATURESET.api_version, FEATURESET.kind, namespace, "stale")
    kubectl_session("label", "fs", "stale", "-n", namespace, "touched=yes")  # a newer resourceVersion
    item = Reconcilable(FEATURESET, featureset_handlers.reconcile)
    assert resync_object(client, item, stale_body, now=datetime.now(UTC)) is False
    assert kubectl_session.json("get", "fs", "stale", "-n", namespace)["status"]["observedGeneration"] == 0


def test_resync_reports_invalid_specs(crds_installed: None, kubectl_session: KubectlCLI, namespace: str,
                                      client: KubeClient):
    fs = sample("FeatureSet")
    fs["metadata"] = {"name": "bad", "namespace": namespace}
    fs["spec"]["schedule"] = "61 * * * *"
    kubectl_session.apply(fs)
    resync_all(client, [Reconcilable(FEATURESET, featureset_handlers.reconcile)], [namespace])
    status = kubectl_session.json("get", "fs", "bad", "-n", namespace)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "spec.schedule" in ready["message"]
