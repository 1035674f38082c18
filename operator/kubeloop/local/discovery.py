"""Legacy API discovery documents (/api, /apis, /apis/<group>[/<version>], /version).

kubectl asks for aggregated discovery first and falls back to these when the server answers
plain JSON; the content negotiation in `apiserver.py` sees to that.
"""

from __future__ import annotations

from typing import Any

from kubeloop.local import errors
from kubeloop.local.catalog import ResourceCatalog, ResourceDef, version_priority

KUBERNETES_VERSION = {
    'major': '1',
    'minor': '37',
    'gitVersion': 'v1.37.0+kubeloop-local',
    'gitCommit': '0000000000000000000000000000000000000000',
    'gitTreeState': 'clean',
    'buildDate': '2026-01-01T00:00:00Z',
    'goVersion': 'go1.25',
    'compiler': 'gc',
    'platform': 'linux/amd64',
}

# Verbs of subresources (kmock's resource list keeps only their names).
_SUBRESOURCE_VERBS: dict[str, list[str]] = {
    'status': ['get', 'patch', 'update'],
    'scale': ['get', 'patch', 'update'],
    'finalize': ['update'],
    'approval': ['get', 'patch', 'update'],
    'ephemeralcontainers': ['get', 'patch', 'update'],
    'resize': ['get', 'patch', 'update'],
    'log': ['get'],
    'exec': ['create', 'get'],
    'attach': ['create', 'get'],
    'portforward': ['create', 'get'],
    'proxy': ['create', 'delete', 'get', 'patch', 'update'],
    'eviction': ['create'],
    'binding': ['create'],
    'token': ['create'],
}


def subresource_verbs(subresource: str) -> list[str]:
    return _SUBRESOURCE_VERBS.get(subresource, ['get'])


def api_versions(server_address: str) -> dict[str, Any]:
    return {'kind': 'APIVersions', 'versions': ['v1'],
            'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': server_address}]}


def _group_version(group: str, version: str) -> dict[str, str]:
    return {'groupVersion': f'{group}/{version}', 'version': version}


def _api_group(catalog: ResourceCatalog, group: str) -> dict[str, Any]:
    versions = catalog.versions_of(group)
    return {'name': group, 'versions': [_group_version(group, v) for v in versions],
            'preferredVersion': _group_version(group, versions[0])}


def api_group_list(catalog: ResourceCatalog) -> dict[str, Any]:
    groups = sorted({res.group for res in catalog.served() if res.group})
    return {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': [_api_group(catalog, g) for g in groups]}


def api_group(catalog: ResourceCatalog, group: str) -> dict[str, Any]:
    if not catalog.versions_of(group):
        raise errors.unknown_path()
    return {'kind': 'APIGroup', 'apiVersion': 'v1', **_api_group(catalog, group)}


def api_resource_list(catalog: ResourceCatalog, group: str, version: str) -> dict[str, Any]:
    served = sorted((res for res in catalog.served() if res.group == group and res.version == version),
                    key=lambda res: res.plural)
    if not served:
        raise errors.unknown_path()
    return {
        'kind': 'APIResourceList',
        'apiVersion': 'v1',
        'groupVersion': f'{group}/{version}' if group else version,
        'resources': [entry for res in served for entry in _resource_entries(res)],
    }


def _resource_entries(res: ResourceDef) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        'name': res.plural, 'singularName': res.singular, 'namespaced': res.namespaced,
        'kind': res.kind, 'verbs': sorted(res.verbs),
    }
    if res.short_names:
        main['shortNames'] = sorted(res.short_names)
    if res.categories:
        main['categories'] = sorted(res.categories)
    entries = [main]
    for sub in sorted(res.subresources):
        entry = {'name': f'{res.plural}/{sub}', 'singularName': '', 'namespaced': res.namespaced,
                 'kind': res.kind, 'verbs': subresource_verbs(sub)}
        if sub == 'scale':
            entry.update(kind='Scale', group='autoscaling', version='v1')
        entries.append(entry)
    return entries


def root_paths(catalog: ResourceCatalog) -> dict[str, Any]:
    paths = {'/api', '/api/v1', '/apis', '/healthz', '/livez', '/readyz', '/openapi/v3', '/version'}
    for res in catalog.served():
        if res.group:
            paths |= {f'/apis/{res.group}', f'/apis/{res.group}/{res.version}'}
    return {'paths': sorted(paths)}


def group_versions(catalog: ResourceCatalog) -> list[tuple[str, str]]:
    """All served (group, version) pairs, the core group first, then groups by name."""
    pairs = {(res.group, res.version) for res in catalog.served()}
    return sorted(pairs, key=lambda gv: (gv[0] != '', gv[0], version_priority(gv[1])))
