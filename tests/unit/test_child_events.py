"""Which child events re-reconcile their owner (core.reconcile): a child of the owner's own,
or a grandchild through the child's controller (a Job a child CronJob created)."""

from __future__ import annotations

from typing import Any

from kubeloop.core.reconcile import _controller_kind, _descends_from


class FakeClient:
    """`get` from a dict of (apiVersion, kind, name) -> object; unknown kinds raise ValueError
    as KubeClient does."""

    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.gets: list[tuple[str, str, str]] = []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if kind not in ("CronJob", "Job"):
            raise ValueError(kind)
        self.gets.append((api_version, kind, name))
        return self.objects.get((api_version, kind, name))


def meta(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"namespace": "ml", "ownerReferences": list(refs)}


def ref(kind: str, name: str, uid: str, api_version: str = "batch/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


FS = ref("FeatureSet", "tx", "fs-uid", "kubeloop.dev/v1alpha1")
CRONJOB = {"metadata": {"name": "tx-materialize", "uid": "cj-uid", "ownerReferences": [FS]}}


def test_a_direct_child_needs_no_lookup():
    client = FakeClient({})
    assert _descends_from(client, meta(FS), "fs-uid")  # type: ignore[arg-type]
    assert client.gets == []


def test_a_job_of_a_child_cronjob_descends_from_the_owner():
    client = FakeClient({("batch/v1", "CronJob", "tx-materialize"): CRONJOB})
    assert _descends_from(client, meta(ref("CronJob", "tx-materialize", "cj-uid")), "fs-uid")  # type: ignore[arg-type]
    assert not _descends_from(client, meta(ref("CronJob", "tx-materialize", "cj-uid")), "other")  # type: ignore[arg-type]


def test_a_cronjob_replaced_under_the_same_name_is_not_the_parent():
    client = FakeClient({("batch/v1", "CronJob", "tx-materialize"): CRONJOB})
    assert not _descends_from(client, meta(ref("CronJob", "tx-materialize", "old-cj-uid")), "fs-uid")  # type: ignore[arg-type]


def test_unknown_or_missing_parents_are_not_owners():
    client = FakeClient({})
    assert not _descends_from(client, meta(ref("ReplicaSet", "x", "rs", "apps/v1")), "fs-uid")  # type: ignore[arg-type]
    assert not _descends_from(client, meta(ref("CronJob", "gone", "cj-uid")), "fs-uid")  # type: ignore[arg-type]
    assert not _descends_from(client, meta(), "fs-uid")  # type: ignore[arg-type]


def test_controller_kind():
    assert _controller_kind(meta(FS)) == ("kubeloop.dev/v1alpha1", "FeatureSet")
    assert _controller_kind(meta({**FS, "controller": False})) is None
