"""The model registry index (store/registry.py): the pure alias rules, and concurrent updates
against the real S3 server losing nothing."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from kubeloop.store import CorruptObject, ObjectStore
from kubeloop.store.registry import (
    CHAMPION,
    Registry,
    move_champion,
    read_registry,
    register_version,
    registry_key,
    with_champion,
    with_version,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ENTRY = {"trainingRun": "r1", "artifact": {"uri": "s3://b/x", "digest": "sha256:" + "a" * 64}, "metrics": {"auc": 0.9}}


def test_registering_a_version_points_its_user_aliases_at_it_and_records_history():
    doc = with_version(None, "fraud", "v1", ENTRY, ["staging"], NOW)
    assert doc["aliases"] == {"staging": "v1"}
    assert doc["versions"]["v1"]["registeredTime"] == NOW.isoformat()
    doc = with_version(doc, "fraud", "v2", ENTRY, ["staging"], NOW)
    assert doc["aliases"] == {"staging": "v2"}
    assert [(h["alias"], h["from"], h["to"]) for h in doc["history"]] == [("staging", None, "v1"),
                                                                           ("staging", "v1", "v2")]


def test_an_alias_a_version_no_longer_lists_is_released_but_champion_is_kept():
    doc = with_champion(with_version(None, "fraud", "v1", ENTRY, ["staging"], NOW), "fraud", "v1", "rollout", NOW)
    doc = with_version(doc, "fraud", "v1", ENTRY, [], NOW)
    assert doc["aliases"] == {CHAMPION: "v1"}


def test_registration_is_idempotent_and_keeps_the_first_registration_time():
    first = with_version(None, "fraud", "v1", ENTRY, [], NOW)
    again = with_version(first, "fraud", "v1", ENTRY, [], datetime(2027, 1, 1, tzinfo=UTC))
    assert again == first


def test_champion_moves_only_from_the_expected_version():
    doc = with_champion(None, "fraud", "v1", "first", NOW)
    assert with_champion(doc, "fraud", "v3", "stale", NOW, expected="v2")["aliases"][CHAMPION] == "v1"
    assert with_champion(doc, "fraud", "v2", "rollout", NOW, expected="v1")["aliases"][CHAMPION] == "v2"


def test_registry_reads_aliases_of_a_version_champion_first():
    registry = Registry("fraud", {"staging": "v2", CHAMPION: "v2", "canary": "v1"})
    assert registry.aliases_of("v2") == [CHAMPION, "staging"]
    assert registry.champion == "v2"


def test_a_document_that_is_not_a_registry_index_is_refused():
    with pytest.raises(CorruptObject, match="not a kubeloop model registry index"):
        Registry.from_document("fraud", {"schemaVersion": 7}, "s3://b/models/x/index.json")


def test_concurrent_registrations_and_champion_moves_lose_nothing(store: ObjectStore):
    namespace, model = f"ns-{uuid.uuid4().hex[:8]}", "fraud"
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            register_version(store, namespace, model, f"v{i}", {**ENTRY, "trainingRun": f"r{i}"}, [f"a{i}"], NOW)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    registry = read_registry(store, namespace, model)
    assert sorted(registry.versions) == [f"v{i}" for i in range(6)]
    assert registry.aliases == {f"a{i}": f"v{i}" for i in range(6)}
    assert move_champion(store, namespace, model, "v3", "rollout", NOW, expected=None).champion == "v3"
    assert move_champion(store, namespace, model, "v4", "stale", NOW, expected=None).champion == "v3"
    assert store.exists(registry_key(namespace, model))
