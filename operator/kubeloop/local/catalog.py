"""Which resources the local API server serves: built-in kinds plus registered CRDs.

The declarations live in kmock's `ResourcesArray` (`server.resources`), so that tests can
still declare resources the kmock way; this module adds what kmock does not keep (the
schema and printer columns of a custom resource version) and answers lookups.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import re
from dataclasses import dataclass
from typing import Any

import kmock

from kubeloop.local.store import StorageKey

# Groups of kmock's bundled k3s resource list that a plain cluster does not serve as built-ins:
# metrics.k8s.io needs metrics-server (we serve no metrics; `kubectl top` must say so), and the
# Gateway API is installed from CRDs (serving it built-in would clash with those CRDs).
NOT_BUILT_IN_GROUPS = frozenset({'metrics.k8s.io', 'gateway.networking.k8s.io'})

ALL_VERBS = frozenset({'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'})


@dataclass(frozen=True)
class CustomVersion:
    """What a CustomResourceDefinition says about one served version of its resource."""

    crd_name: str
    version: dict[str, Any]  # the CRD's spec.versions[] entry, verbatim

    @property
    def schema(self) -> dict[str, Any] | None:
        return (self.version.get('schema') or {}).get('openAPIV3Schema')

    @property
    def selectable_fields(self) -> list[str]:
        return [entry['jsonPath'].lstrip('.') for entry in self.version.get('selectableFields') or []]


@dataclass(frozen=True)
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    verbs: frozenset[str]
    short_names: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    subresources: frozenset[str] = frozenset()
    custom: CustomVersion | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> StorageKey:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return 'status' in self.subresources

    def allows(self, verb: str) -> bool:
        return verb in self.verbs


@functools.cache
def _bundled_resource_list() -> bytes:
    """kmock's list of k3s built-in resources (what `load_bundled` reads, without its deprecated API)."""
    return gzip.decompress(importlib.resources.files('kmock._internal').joinpath('resources.json.gz').read_bytes())


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version ordering key: GA before beta before alpha, higher numbers first."""
    match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if match is None:
        return (3, 0, 0, version)  # not kube-like: after all kube-like versions, alphabetically
    major, stage, minor = int(match[1]), match[2], int(match[3] or 0)
    stage_rank = {None: 0, 'beta': 1, 'alpha': 2}[stage]
    return (stage_rank, -major, -minor, '')


class ResourceCatalog:
    """Lookups over the declared resources (kmock's array) and custom resource versions."""

    def __init__(self, declared: kmock.ResourcesArray) -> None:
        self._declared = declared
        self._custom: dict[tuple[str, str, str], CustomVersion] = {}

    def load_built_ins(self) -> None:
        bundled = kmock.ResourcesArray()
        bundled.load_data(_bundled_resource_list())
        for resource in bundled:
            if resource.group not in NOT_BUILT_IN_GROUPS:
                self._declared[resource] = bundled[resource]

    def find(self, group: str, version: str, plural: str) -> ResourceDef | None:
        resource = kmock.resource(group, version, plural)
        if resource not in self._declared:
            return None
        return self._definition(resource, self._declared[resource])

    def served(self) -> list[ResourceDef]:
        return [self._definition(resource, self._declared[resource]) for resource in self._declared
                if resource.group is not None and resource.version and resource.plural]

    def versions_of(self, group: str) -> list[str]:
        versions = {res.version for res in self.served() if res.group == group}
        return sorted(versions, key=version_priority)

    def preferred(self, group: str, plural: str) -> ResourceDef | None:
        candidates = [res for res in self.served() if res.group == group and res.plural == plural]
        return min(candidates, key=lambda res: version_priority(res.version), default=None)

    def register_custom(self, definition: ResourceDef) -> None:
        assert definition.custom is not None
        self._declared[kmock.resource(definition.group, definition.version, definition.plural)] = (
            kmock.ResourceInfo(
                kind=definition.kind, singular=definition.singular, namespaced=definition.namespaced,
                verbs=set(definition.verbs), shortnames=set(definition.short_names),
                categories=set(definition.categories), subresources=set(definition.subresources),
            ))
        self._custom[(definition.group, definition.version, definition.plural)] = definition.custom

    def unregister_custom(self, crd_name: str) -> list[ResourceDef]:
        """Forget every version a CRD registered; returns what was served."""
        gone = [res for res in self.served() if res.custom is not None and res.custom.crd_name == crd_name]
        for res in gone:
            del self._declared[kmock.resource(res.group, res.version, res.plural)]
            del self._custom[(res.group, res.version, res.plural)]
        return gone

    def _definition(self, resource: kmock.resource, info: kmock.ResourceInfo) -> ResourceDef:
        assert resource.group is not None and resource.version is not None and resource.plural is not None
        kind = info.kind or resource.plural.capitalize()
        return ResourceDef(
            group=resource.group,
            version=resource.version,
            plural=resource.plural,
            kind=kind,
            singular=info.singular or kind.lower(),
            # Resources declared by tests the kmock way often say nothing: most kinds are namespaced.
            namespaced=info.namespaced if info.namespaced is not None else True,
            verbs=frozenset(info.verbs) or ALL_VERBS,
            short_names=frozenset(info.shortnames),
            categories=frozenset(info.categories),
            subresources=frozenset(info.subresources),
            custom=self._custom.get((resource.group, resource.version, resource.plural)),
        )
