"""The custom resource that owns a child object, as the child's builders need it.

Each room subclasses `Owner` with its kind, so that `Owner(name=..., namespace=..., uid=...,
generation=...)` reads the same everywhere and the ownerReference is built in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from kubeloop import API_VERSION

if TYPE_CHECKING:
    from kubeloop.core.reconcile import Observed


@dataclass(frozen=True)
class Owner:
    """A kubeloop custom resource, as its metadata says; subclasses set `kind`."""

    kind: ClassVar[str]

    name: str
    namespace: str
    uid: str
    generation: int

    @classmethod
    def of(cls, observed: Observed) -> Self:
        """The owner a reconcile pass works for (generation 1 when the API server gives none)."""
        return cls(name=observed.name, namespace=observed.namespace, uid=observed.uid,
                   generation=observed.generation or 1)

    def child_metadata(self, name: str, labels: Mapping[str, str],
                       annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Metadata of a child object in the owner's namespace, controlled by the owner."""
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": dict(labels)}
        if annotations is not None:
            metadata["annotations"] = dict(annotations)
        metadata["ownerReferences"] = [self.reference()]
        return metadata

    def reference(self) -> dict[str, Any]:
        """A controller ownerReference: children are garbage-collected with their owner, and
        `blockOwnerDeletion` keeps foreground deletion waiting for them."""
        return {"apiVersion": API_VERSION, "kind": self.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}
