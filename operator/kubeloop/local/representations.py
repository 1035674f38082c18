"""Content negotiation: which representation of objects a client asked for, and rendering it.

kubectl asks for server-side printed Tables (`as=Table;v=v1;g=meta.k8s.io`), some clients for
metadata only (`as=PartialObjectMetadata`), most for plain JSON. Protobuf is not spoken: a
client that accepts nothing else gets 406 Not Acceptable, as from a server without it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from kubeloop.local import errors
from kubeloop.local.catalog import ResourceDef
from kubeloop.local.tables import columns_for, render_table

JSON, YAML, TABLE, PARTIAL = 'json', 'yaml', 'table', 'partial'
SERVED_MEDIA_TYPES = ('application/json', 'application/yaml', 'application/json;as=Table;v=v1;g=meta.k8s.io',
                      'application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io')
META_API_VERSION = 'meta.k8s.io/v1'


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]


def parse_accept(header: str | None) -> list[MediaRange]:
    if not header:
        return [MediaRange('*/*', {})]
    ranges = []
    for part in header.split(','):
        media_type, *raw_params = (piece.strip() for piece in part.split(';'))
        params = dict(p.split('=', 1) for p in raw_params if '=' in p)
        ranges.append(MediaRange(media_type.lower(), {k.strip(): v.strip() for k, v in params.items()}))
    return ranges


def negotiate(header: str | None, *, transforms: bool = True) -> str:
    """The first representation (in the client's order) that we serve; 406 if there is none.

    `transforms=False` is for documents that are not API objects (discovery): only plain
    JSON (or YAML) then, so aggregated-discovery requests fall back to legacy discovery.
    """
    for media in parse_accept(header):
        conversion = media.params.get('as')
        if media.type in ('*/*', 'application/*') and conversion is None:
            return JSON
        if media.type == 'application/yaml' and conversion is None:
            return YAML
        if media.type != 'application/json':
            continue
        if conversion is None:
            return JSON
        meta_v1 = media.params.get('g') == 'meta.k8s.io' and media.params.get('v') == 'v1'
        if transforms and meta_v1 and conversion == 'Table':
            return TABLE
        if transforms and meta_v1 and conversion in ('PartialObjectMetadata', 'PartialObjectMetadataList'):
            return PARTIAL
    raise errors.not_acceptable(SERVED_MEDIA_TYPES if transforms else SERVED_MEDIA_TYPES[:2])


def encode(representation: str, document: Any) -> tuple[bytes, str]:
    """The bytes and content type of a document in plain JSON or YAML."""
    if representation == YAML:
        return yaml.safe_dump(document, sort_keys=False).encode(), 'application/yaml'
    return json.dumps(document, separators=(',', ':')).encode(), 'application/json'


@dataclass(frozen=True)
class ObjectRenderer:
    """Renders objects of one resource in the negotiated representation."""

    representation: str
    res: ResourceDef
    clock: Callable[[], datetime.datetime]  # read at each rendering: a watch's Table ages stay current
    include_object: str = 'Metadata'  # the Table option kube defaults to

    def one(self, obj: dict[str, Any], *, headers: bool = True) -> dict[str, Any]:
        """One object; a watch sends a Table's column definitions with its first event only."""
        if self.representation == TABLE:
            list_metadata = {'resourceVersion': obj.get('metadata', {}).get('resourceVersion', '')}
            return self._table([obj], list_metadata, headers=headers)
        if self.representation == PARTIAL:
            return {'kind': 'PartialObjectMetadata', 'apiVersion': META_API_VERSION,
                    'metadata': obj.get('metadata', {})}
        return obj

    def many(self, items: list[dict[str, Any]], list_metadata: dict[str, Any]) -> dict[str, Any]:
        if self.representation == TABLE:
            return self._table(items, list_metadata)
        if self.representation == PARTIAL:
            return {'kind': 'PartialObjectMetadataList', 'apiVersion': META_API_VERSION, 'metadata': list_metadata,
                    'items': [{'kind': 'PartialObjectMetadata', 'apiVersion': META_API_VERSION,
                               'metadata': obj.get('metadata', {})} for obj in items]}
        return {'kind': self.res.list_kind, 'apiVersion': self.res.api_version, 'metadata': list_metadata,
                'items': items}

    def _table(self, items: list[dict[str, Any]], list_metadata: dict[str, Any], *,
               headers: bool = True) -> dict[str, Any]:
        crd_version = self.res.custom.version if self.res.custom else None
        columns = columns_for(self.res.api_version, self.res.kind, crd_version)
        return render_table(items, columns, now=self.clock(), include_object=self.include_object,
                            list_metadata=list_metadata, no_headers=not headers)
