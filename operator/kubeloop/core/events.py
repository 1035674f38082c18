"""Kubernetes Events about kubeloop's resources, posted through `KubeClient`.

Not `kopf.event`: a reconcile also runs outside kopf's handlers (the periodic resync, a child's
change), where kopf's event queue does not exist. The Event's name is derived from its content,
so two passes that see the same transition post it once (the second create is refused as a
conflict), however many passes run.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from kubernetes.client.exceptions import ApiException

from kubeloop.core.conditions import timestamp
from kubeloop.core.kube import KubeClient
from kubeloop.core.naming import short_hash
from kubeloop.core.reconcile import Observed

log = logging.getLogger("kubeloop.events")

EVENT_SOURCE = "kubeloop-operator"


class Event(NamedTuple):
    """A Kubernetes Event to post about a resource."""

    type: str  # Normal or Warning
    reason: str
    message: str


def post_event(client: KubeClient, api_version: str, kind: str, observed: Observed, event: Event) -> None:
    """Post `event` about the object `observed` (of `kind`); failures are logged, never raised:
    an Event is a courtesy, the status is the record."""
    digest = short_hash(f"{observed.uid}/{event.type}/{event.reason}/{event.message}", 16)
    when = timestamp(observed.now)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{observed.name[:200]}.{digest}", "namespace": observed.namespace},
        "involvedObject": {"apiVersion": api_version, "kind": kind, "name": observed.name,
                           "namespace": observed.namespace, "uid": observed.uid},
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "reportingInstance": EVENT_SOURCE,
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }
    try:
        client.request("POST", f"/api/v1/namespaces/{observed.namespace}/events", body=body)
    except ApiException as exc:
        if exc.status != 409:  # 409: this transition was already reported
            log.warning("could not post event %s about %s %s/%s: %s", event.reason, kind,
                        observed.namespace, observed.name, exc.reason)
