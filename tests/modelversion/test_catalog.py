"""`kubeloop models list|show` (modelversion/catalog.py): the registry index as text."""

from __future__ import annotations

from datetime import UTC, datetime

from kubeloop.modelversion.catalog import format_model, format_model_list
from kubeloop.store.registry import Registry, with_champion, with_version

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def registry() -> Registry:
    entry = {"trainingRun": "fraud-a", "artifact": {"uri": "s3://b/x", "digest": "sha256:" + "ab" * 32},
             "featureSet": {"name": "payments", "version": "fcca497ac689"}, "dataDigest": "sha256:" + "cd" * 32,
             "metrics": {"auc": 0.9785, "loss": 0.17}}
    doc = with_version(None, "fraud", "fraud-a", entry, ["staging"], NOW)
    doc = with_version(doc, "fraud", "fraud-b", {**entry, "trainingRun": "fraud-b"}, [], NOW)
    doc = with_champion(doc, "fraud", "fraud-a", "rollout of fraud-a completed", NOW)
    return Registry.from_document("fraud", doc)


def test_list_shows_each_model_with_its_champion_and_aliases():
    lines = format_model_list([registry()]).splitlines()
    assert lines[0].split() == ["MODEL", "CHAMPION", "VERSIONS", "ALIASES"]
    assert lines[1].split() == ["fraud", "fraud-a", "2", "staging=fraud-a"]
    assert format_model_list([]) == "no registered models"


def test_show_lists_versions_with_lineage_metrics_and_alias_history():
    text = format_model(registry())
    assert text.startswith("model fraud: champion fraud-a")
    row = next(line for line in text.splitlines() if line.startswith("fraud-a "))
    assert "champion,staging" in row and "payments@fcca497ac689" in row and "cdcdcdcdcdcd" in row
    assert "auc=0.9785" in row and "abababababab" in row
    assert "champion: - -> fraud-a  (rollout of fraud-a completed)" in text
