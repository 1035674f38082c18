"""The model registry index: one compare-and-swap JSON document per registered model.

    models/<namespace>/<model>/index.json
    {"schemaVersion": 1, "kind": "kubeloop.dev/ModelRegistryIndex", "model": "fraud",
     "aliases": {"champion": "fraud-v3", "staging": "fraud-v4"},
     "versions": {"fraud-v3": {"trainingRun", "artifact": {uri, digest}, "featureSet": {name, version,
                  digest}, "metrics": {...}, "registeredTime"}},
     "history": [{"time", "alias", "from", "to", "reason"}]}

The ModelVersion objects in the cluster say what users asked for; this index is the registry's
memory outside the cluster: which version each alias points at (the `champion` alias moves only
when a rollout completes), and the lineage of every version ever registered, kept when a
ModelVersion object is deleted. Several writers update it (one operator reconciling several
versions of a model at once, a user with the CLI), so every change is a pure function of the
current document applied with `ObjectStore.update_json` (If-Match): no change is lost.

The pure `with_*` functions take and return documents, so the rules are unit-tested without a
store; the I/O wrappers below apply them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubeloop.store.errors import CorruptObject

if TYPE_CHECKING:
    from kubeloop.store.client import ObjectStore

REGISTRY_SCHEMA_VERSION = 1
REGISTRY_KIND = "kubeloop.dev/ModelRegistryIndex"
CHAMPION = "champion"
# The alias history is for people reading it; keep the document small however long a model lives.
HISTORY_LIMIT = 200


def registry_key(namespace: str, model: str) -> str:
    return f"models/{namespace}/{model}/index.json"


@dataclass(frozen=True)
class Registry:
    """A model's registry index as read (empty when the model has none yet)."""

    model: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()

    @property
    def champion(self) -> str | None:
        return self.aliases.get(CHAMPION)

    def aliases_of(self, version: str) -> list[str]:
        """The aliases pointing at `version`, champion first, then by name."""
        return sorted((a for a, v in self.aliases.items() if v == version), key=lambda a: (a != CHAMPION, a))

    @classmethod
    def from_document(cls, model: str, doc: Any, where: str = "") -> Registry:
        if doc is None:
            return cls(model)
        if not isinstance(doc, Mapping) or doc.get("schemaVersion") != REGISTRY_SCHEMA_VERSION:
            raise CorruptObject(f"{where or registry_key('?', model)} is not a kubeloop model registry index "
                                f"(schemaVersion {REGISTRY_SCHEMA_VERSION})")
        aliases = doc.get("aliases") or {}
        versions = doc.get("versions") or {}
        if not isinstance(aliases, Mapping) or not isinstance(versions, Mapping):
            raise CorruptObject(f"{where}: aliases and versions must be objects")
        return cls(model, {str(k): str(v) for k, v in aliases.items()},
                   {str(k): dict(v) for k, v in versions.items() if isinstance(v, Mapping)},
                   tuple(h for h in doc.get("history") or [] if isinstance(h, Mapping)))


# -- pure changes -------------------------------------------------------------------------------


def _base(doc: Any, model: str) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        return {"schemaVersion": REGISTRY_SCHEMA_VERSION, "kind": REGISTRY_KIND, "model": model,
                "aliases": {}, "versions": {}, "history": []}
    return {**doc, "aliases": dict(doc.get("aliases") or {}), "versions": dict(doc.get("versions") or {}),
            "history": list(doc.get("history") or [])}


def _moved(doc: dict[str, Any], alias: str, version: str | None, reason: str, now: datetime) -> dict[str, Any]:
    previous = doc["aliases"].get(alias)
    if previous == version:
        return doc
    if version is None:
        doc["aliases"].pop(alias, None)
    else:
        doc["aliases"][alias] = version
    entry = {"time": now.isoformat(), "alias": alias, "from": previous, "to": version, "reason": reason}
    doc["history"] = [*doc["history"], entry][-HISTORY_LIMIT:]
    return doc


def with_version(doc: Any, model: str, version: str, entry: Mapping[str, Any], user_aliases: list[str],
                 now: datetime) -> dict[str, Any]:
    """`doc` with `version` registered (its lineage entry; `registeredTime` kept from the first
    registration) and the version's user aliases pointing at it. Aliases this version held and
    no longer lists are released; `champion` is never touched here."""
    updated = _base(doc, model)
    known = updated["versions"].get(version) or {}
    updated["versions"][version] = {**entry, "registeredTime": known.get("registeredTime", now.isoformat())}
    for alias, holder in list(updated["aliases"].items()):
        if holder == version and alias != CHAMPION and alias not in user_aliases:
            updated = _moved(updated, alias, None, f"no longer listed by {version}", now)
    for alias in user_aliases:
        updated = _moved(updated, alias, version, f"listed in spec.aliases of {version}", now)
    return updated


def with_champion(doc: Any, model: str, version: str | None, reason: str, now: datetime, *,
                  expected: str | None | object = ...) -> dict[str, Any]:
    """`doc` with the champion alias on `version` (None removes it). With `expected`, only if the
    champion is still that version: a writer acting on a stale read changes nothing."""
    updated = _base(doc, model)
    if expected is not ... and updated["aliases"].get(CHAMPION) != expected:
        return updated
    return _moved(updated, CHAMPION, version, reason, now)


# -- I/O ------------------------------------------------------------------------------------------


def read_registry(store: ObjectStore, namespace: str, model: str) -> Registry:
    key = registry_key(namespace, model)
    return Registry.from_document(model, store.read_json_with_etag(key).doc, store.uri(key))


def register_version(store: ObjectStore, namespace: str, model: str, version: str, entry: Mapping[str, Any],
                     user_aliases: list[str], now: datetime) -> Registry:
    key = registry_key(namespace, model)
    written = store.update_json(key, lambda doc: with_version(doc, model, version, entry, user_aliases, now))
    return Registry.from_document(model, written.doc, store.uri(key))


def move_champion(store: ObjectStore, namespace: str, model: str, version: str | None, reason: str,
                  now: datetime, *, expected: str | None | object = ...) -> Registry:
    key = registry_key(namespace, model)
    written = store.update_json(key, lambda doc: with_champion(doc, model, version, reason, now, expected=expected))
    return Registry.from_document(model, written.doc, store.uri(key))
