"""`kubeloop models list|show`: the model registry as text, read from the object store.

    list_models(store, namespace)          -> [Registry], by model name
    format_model_list(registries)          -> one line per model: champion, versions, aliases
    show_model(store, namespace, model)    -> every version with its lineage, metrics and aliases

The registry index (store/registry.py) outlives ModelVersion objects, so this shows versions
whose objects were deleted too: what was served, trained on which data, by which run.
Standard library and kubeloop.store only (no kubernetes client, no torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubeloop.store import ObjectStore
from kubeloop.store.registry import CHAMPION, Registry, read_registry


def list_models(store: ObjectStore, namespace: str) -> list[Registry]:
    """Every model with a registry index in `namespace`."""
    prefix = f"models/{namespace}/"
    names = sorted({info.key[len(prefix):].split("/", 1)[0] for info in store.list_objects(prefix)
                    if info.key.endswith("/index.json")})
    return [read_registry(store, namespace, name) for name in names]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def format_model_list(registries: Iterable[Registry]) -> str:
    rows = [["MODEL", "CHAMPION", "VERSIONS", "ALIASES"]]
    for registry in registries:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(registry.aliases.items()) if a != CHAMPION)
        rows.append([registry.model, registry.champion or "-", str(len(registry.versions)), aliases or "-"])
    if len(rows) == 1:
        return "no registered models"
    return _table(rows)


def _short(digest: Any) -> str:
    return str(digest)[7:19] if isinstance(digest, str) and digest.startswith("sha256:") else "-"


def _metrics(metrics: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, int | float)) or "-"


def format_model(registry: Registry) -> str:
    """Every version of one model, newest registration first, with lineage."""
    if not registry.versions:
        return f"model {registry.model}: no registered versions"
    rows = [["VERSION", "ALIASES", "TRAININGRUN", "FEATURESET", "DATA", "ARTIFACT", "METRICS", "REGISTERED"]]
    ordered = sorted(registry.versions.items(), key=lambda item: str(item[1].get("registeredTime", "")), reverse=True)
    for version, entry in ordered:
        feature_set = entry.get("featureSet") or {}
        rows.append([
            version, ",".join(registry.aliases_of(version)) or "-", str(entry.get("trainingRun") or "-"),
            f"{feature_set.get('name') or '-'}@{feature_set.get('version') or '-'}",
            _short(entry.get("dataDigest")), _short((entry.get("artifact") or {}).get("digest")),
            _metrics(entry.get("metrics") or {}), str(entry.get("registeredTime") or "-")[:19]])
    lines = [f"model {registry.model}: champion {registry.champion or '(none)'}", "", _table(rows)]
    if registry.history:
        lines += ["", "alias history (newest last):"]
        lines += [f"  {h.get('time', '')[:19]}  {h.get('alias')}: {h.get('from') or '-'} -> {h.get('to') or '-'}"
                  f"  ({h.get('reason', '')})" for h in registry.history[-10:]]
    return "\n".join(lines)


def show_model(store: ObjectStore, namespace: str, model: str) -> str:
    return format_model(read_registry(store, namespace, model))
