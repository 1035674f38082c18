"""The API semantics of the local API server: what create, update, patch and delete do.

The equivalent of kube-apiserver's generic registry plus the strategies of a few kinds:
identity and concurrency metadata (uid, creationTimestamp, generation, resourceVersion
preconditions), status subresource isolation, finalizers and deletionTimestamp, deletion
propagation finalizers for the garbage collector, dry runs, structural-schema pruning,
defaulting and validation of custom resources, and the special kinds (Namespace,
CustomResourceDefinition, the access reviews).

Everything here is synchronous: in one asyncio loop each request's check-then-write runs
without interleaving, which is what etcd's compare-and-swap gives kube-apiserver.
HTTP parsing and rendering live in `apiserver.py`.
"""

from __future__ import annotations

import datetime
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from kubeloop.local import crds, defaults, errors, objectmeta
from kubeloop.local.catalog import ResourceCatalog, ResourceDef
from kubeloop.local.errors import APIError, Cause
from kubeloop.local.patching import (
    PatchError,
    PatchMeta,
    PatchTestFailed,
    apply_json_patch,
    apply_merge_patch,
    apply_server_side,
    apply_strategic_merge_patch,
    patch_meta_for_builtin,
    patch_meta_from_schema,
)
from kubeloop.local.scale import scale_of, scaled
from kubeloop.local.schema import FieldError, apply_defaults, invalid_message, prune, validate
from kubeloop.local.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    supported_field_selectors,
)
from kubeloop.local.store import ObjectStore, metadata

NAMESPACES = ('', 'namespaces')
CRDS = (crds.CRD_GROUP, crds.CRD_PLURAL)
NAMESPACE_FINALIZER = 'kubernetes'
NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'
FOREGROUND_FINALIZER = 'foregroundDeletion'
ORPHAN_FINALIZER = 'orphan'
GC_FINALIZERS = (FOREGROUND_FINALIZER, ORPHAN_FINALIZER)
PROPAGATION_POLICIES = ('Foreground', 'Background', 'Orphan')
FIELD_VALIDATIONS = ('Strict', 'Warn', 'Ignore')

MERGE_PATCH = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
CUSTOM_RESOURCE_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)

# System-managed metadata that a client's body never sets; the server keeps or computes it.
_SERVER_OWNED_METADATA = ('uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds',
                          'generation', 'resourceVersion', 'managedFields', 'selfLink')
_GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # kube's: no vowels, no look-alikes
_GENERATE_NAME_SUFFIX = 5

# Kinds whose delete answers with the deleted object rather than a Status (kube's ReturnDeletedObject).
_RETURNS_DELETED_OBJECT = frozenset({('', 'pods'), ('', 'namespaces'), CRDS})

# Create-only kinds kube-apiserver answers without storing anything; the local server does not
# enforce RBAC, so every access review is allowed and says why.
_ACCESS_REVIEW_KINDS = frozenset({
    ('authorization.k8s.io', 'selfsubjectaccessreviews'),
    ('authorization.k8s.io', 'subjectaccessreviews'),
    ('authorization.k8s.io', 'localsubjectaccessreviews'),
})
_RULES_REVIEW = ('authorization.k8s.io', 'selfsubjectrulesreviews')
_SELF_SUBJECT_REVIEW = ('authentication.k8s.io', 'selfsubjectreviews')
LOCAL_USER = 'kubeloop-local'
NO_RBAC = 'the local API server does not enforce RBAC: everything is allowed'


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = 'Warn'  # kube-apiserver's default since 1.27
    field_manager: str | None = None
    force: bool = False


@dataclass(frozen=True)
class DeleteOptions:
    dry_run: bool = False
    propagation_policy: str | None = None  # None: the resource's default (background)
    orphan_dependents: bool | None = None  # the deprecated form of propagationPolicy
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None


@dataclass
class Outcome:
    """The object to answer with, the Warning headers to send, and whether it was created."""

    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    created: bool = False


@dataclass
class DeleteOutcome:
    obj: dict[str, Any]
    deleted: bool  # False: it waits for finalizers (its deletionTimestamp is set)


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def is_deleting(obj: dict[str, Any]) -> bool:
    return bool(metadata(obj).get('deletionTimestamp'))


def finalizers_of(obj: dict[str, Any]) -> list[str]:
    return list(metadata(obj).get('finalizers') or [])


def with_meta(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy with metadata keys changed (None removes a key); the input stays untouched."""
    meta = {**metadata(obj), **changes}
    return {**obj, 'metadata': {key: value for key, value in meta.items() if value is not None}}


def _without_resource_version(obj: dict[str, Any]) -> dict[str, Any]:
    return with_meta(obj, resourceVersion=None)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(',', ':'))


class ObjectAPI:
    """Create, read, update, patch and delete objects with kube-apiserver's semantics."""

    def __init__(self, store: ObjectStore, catalog: ResourceCatalog,
                 clock: Callable[[], datetime.datetime]) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock

    def now(self) -> str:
        return timestamp(self.clock())

    # Reading.

    def get(self, res: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(res.storage, namespace if res.namespaced else None, name)
        if obj is None:
            raise errors.not_found(res.group, res.plural, name)
        return self.as_version(res, obj)

    def select(self, res: ResourceDef, namespace: str | None,
               label_selector: str = '', field_selector: str = '') -> list[dict[str, Any]]:
        matches = self.matcher(res, label_selector, field_selector)
        return [self.as_version(res, obj) for obj in self.store.objects(res.storage, namespace)
                if matches(obj)]

    def matcher(self, res: ResourceDef, label_selector: str, field_selector: str,
                ) -> Callable[[dict[str, Any]], bool]:
        """A predicate for the selectors (400 BadRequest when they do not parse)."""
        if not label_selector and not field_selector:
            return lambda obj: True
        extra = res.custom.selectable_fields if res.custom else ()
        try:
            labels = parse_label_selector(label_selector) if label_selector else None
            fields = (parse_field_selector(field_selector, supported_field_selectors(res.api_version, res.kind, extra))
                      if field_selector else None)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc

        def matches(obj: dict[str, Any]) -> bool:
            if labels is not None and not labels.matches(metadata(obj).get('labels') or {}):
                return False
            return fields is None or fields.matches(obj)

        return matches

    @staticmethod
    def as_version(res: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        """Served versions of one resource share storage and schema: only apiVersion differs."""
        if obj.get('apiVersion') == res.api_version:
            return obj
        return {**obj, 'apiVersion': res.api_version}

    # Creating.

    def create(self, res: ResourceDef, namespace: str | None, body: Any, opts: WriteOptions) -> Outcome:
        obj = self._decode(res, body)
        obj = self._place_in_namespace(res, namespace, obj)
        if (res.group, res.plural) in _ACCESS_REVIEW_KINDS | {_RULES_REVIEW, _SELF_SUBJECT_REVIEW}:
            return Outcome(self._review(res, obj), created=True)
        meta = metadata(obj)
        if meta.get('resourceVersion'):
            raise errors.bad_request('resourceVersion should not be set on objects to be created')
        if not meta.get('name') and not meta.get('generateName'):
            raise errors.invalid(res.group, res.kind, '', [Cause(
                'metadata.name', 'FieldValueRequired', 'Required value: name or generateName is required')])
        self._require_live_namespace(res, meta.get('namespace'))
        self._refuse_creation_in_terminating_crd(res)

        obj = with_meta(obj, **{key: None for key in _SERVER_OWNED_METADATA})
        if res.has_status:
            obj = {key: value for key, value in obj.items() if key != 'status'}
        obj = with_meta(obj, name=meta.get('name') or self._generate_name(res, meta),
                        uid=str(uuid.uuid4()), creationTimestamp=self.now(), generation=1)
        obj = self._prepare_kind_for_create(res, obj)
        obj = self._default_built_in(res, obj, creating=True)
        obj, warnings = self._admit(res, obj, opts)
        name = metadata(obj)['name']
        if self.store.get(res.storage, metadata(obj).get('namespace'), name) is not None:
            raise errors.already_exists(res.group, res.plural, name)
        obj = self._finish_kind(res, obj, old=None)
        if opts.dry_run:
            return Outcome(self.as_version(res, obj), warnings, created=True)
        stored = self.store.add(res.storage, obj)
        return Outcome(self.as_version(res, stored), warnings, created=True)

    def _generate_name(self, res: ResourceDef, meta: dict[str, Any]) -> str:
        prefix = meta['generateName'][:63 - _GENERATE_NAME_SUFFIX]  # kube trims the prefix, not the suffix
        for _ in range(10):
            suffix = ''.join(secrets.choice(_GENERATE_NAME_ALPHABET) for _ in range(_GENERATE_NAME_SUFFIX))
            if self.store.get(res.storage, meta.get('namespace'), prefix + suffix) is None:
                return prefix + suffix
        raise APIError(409, 'AlreadyExists',
                       f'{errors.qualified_resource(res.group, res.plural)} "{prefix}" already exists, the server '
                       'was not able to generate a unique name for the object',
                       {'kind': res.plural, 'group': res.group, 'name': prefix, 'retryAfterSeconds': 1})

    def _require_live_namespace(self, res: ResourceDef, namespace: str | None) -> None:
        if not res.namespaced or namespace is None:
            return
        ns = self.store.get(NAMESPACES, None, namespace)
        if ns is None:
            raise errors.not_found('', 'namespaces', namespace)
        if is_deleting(ns):
            error = errors.forbidden(res.group, res.plural, '', f'unable to create new content in namespace '
                                     f'{namespace} because it is being terminated')
            error.details['causes'] = [{'reason': 'NamespaceTerminating', 'field': 'metadata.namespace',
                                        'message': f'namespace {namespace} is being terminated'}]
            raise error

    def _refuse_creation_in_terminating_crd(self, res: ResourceDef) -> None:
        if res.custom is None:
            return
        crd = self.store.get(CRDS, None, res.custom.crd_name)
        if crd is not None and is_deleting(crd):
            raise errors.method_not_allowed(
                'create not allowed while custom resource definition is terminating')

    # Updating: PUT on the object, its status, or a namespace's finalize subresource.

    def replace(self, res: ResourceDef, namespace: str | None, name: str, body: Any, opts: WriteOptions,
                subresource: str | None = None) -> Outcome:
        old = self.get(res, namespace, name)
        new = self._decode(res, body)
        self._check_identity(res, namespace, name, new)
        return self.update(res, old, new, opts, subresource=subresource)

    def update(self, res: ResourceDef, old: dict[str, Any], new: dict[str, Any], opts: WriteOptions,
               subresource: str | None = None) -> Outcome:
        """Store `new` in place of `old`: the update path shared by PUT, PATCH and the controllers."""
        self._check_preconditions(res, old, new)
        new = self._isolate_subresource(res, old, new, subresource)
        new = with_meta(new, **{key: metadata(old).get(key) for key in _SERVER_OWNED_METADATA})
        self._check_finalizers_while_deleting(res, old, new)
        new = self._prepare_kind_for_update(res, old, new, subresource)
        if subresource is None:
            new = self._default_built_in(res, new, creating=False)
        new, warnings = self._admit(res, new, opts)
        if self._generation_content(res, new) != self._generation_content(res, old):
            new = with_meta(new, generation=int(metadata(old).get('generation') or 0) + 1)
        new = self._finish_kind(res, new, old=old)

        if _without_resource_version(new) == _without_resource_version(old):
            return Outcome(old, warnings)  # a no-op: kube writes nothing and sends no event
        if is_deleting(new) and not self._blocks_deletion(res, new):
            if opts.dry_run:
                return Outcome(self.as_version(res, new), warnings)
            removed = self.store.remove(res.storage, metadata(new).get('namespace'), metadata(new)['name'],
                                        last_state=new)
            return Outcome(self.as_version(res, removed), warnings)
        if opts.dry_run:
            return Outcome(self.as_version(res, new), warnings)
        return Outcome(self.as_version(res, self.store.modify(res.storage, new)), warnings)

    def _check_identity(self, res: ResourceDef, namespace: str | None, name: str, new: dict[str, Any]) -> None:
        meta = metadata(new)
        if meta.get('name') != name:
            raise errors.bad_request(
                f'the name of the object ({meta.get("name", "")}) does not match the name on the URL ({name})')
        if res.namespaced and meta.get('namespace') not in (None, '', namespace):
            raise errors.bad_request(
                'the namespace of the provided object does not match the namespace sent on the request')

    def _check_preconditions(self, res: ResourceDef, old: dict[str, Any], new: dict[str, Any]) -> None:
        name = metadata(old)['name']
        sent_version = metadata(new).get('resourceVersion')
        if sent_version and sent_version != metadata(old).get('resourceVersion'):
            raise errors.stale(res.group, res.plural, name)
        sent_uid = metadata(new).get('uid')
        if sent_uid and sent_uid != metadata(old).get('uid'):
            raise errors.conflict(res.group, res.plural, name, f'Precondition failed: UID in precondition: '
                                  f'{metadata(old).get("uid")}, UID in object meta: {sent_uid}')

    def _isolate_subresource(self, res: ResourceDef, old: dict[str, Any], new: dict[str, Any],
                             subresource: str | None) -> dict[str, Any]:
        """The status endpoint writes only status; the main endpoint never writes it."""
        if subresource == 'status':
            updated = {key: value for key, value in old.items() if key != 'status'}
            if new.get('status') is not None:
                updated['status'] = new['status']
            return updated
        if subresource == 'finalize':  # namespaces: only spec.finalizers changes
            spec = {**(old.get('spec') or {}), 'finalizers': (new.get('spec') or {}).get('finalizers') or []}
            return {**old, 'spec': spec}
        new = with_meta(new, namespace=metadata(old).get('namespace'))
        if not res.has_status:
            return new
        kept = {key: value for key, value in new.items() if key != 'status'}
        if 'status' in old:
            kept['status'] = old['status']
        return kept

    def _check_finalizers_while_deleting(self, res: ResourceDef, old: dict[str, Any], new: dict[str, Any]) -> None:
        if not is_deleting(old):
            return
        added = [f for f in finalizers_of(new) if f not in finalizers_of(old)]
        if added:
            raise errors.invalid(res.group, res.kind, metadata(old)['name'], [Cause(
                'metadata.finalizers', 'FieldValueForbidden',
                'Forbidden: no new finalizers can be added if the object is being deleted, '
                f'found new finalizers []string{{{", ".join(json.dumps(f) for f in added)}}}')])

    @staticmethod
    def _generation_content(res: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        """What a generation counts: all but metadata (and status, when it is a subresource)."""
        return {key: value for key, value in obj.items()
                if key not in ('metadata', 'apiVersion', 'kind') and not (key == 'status' and res.has_status)}

    # Patching.

    def patch(self, res: ResourceDef, namespace: str | None, name: str, content_type: str, raw: bytes,
              opts: WriteOptions, subresource: str | None = None) -> Outcome:
        if content_type not in PATCH_TYPES or (res.custom and content_type not in CUSTOM_RESOURCE_PATCH_TYPES):
            supported = CUSTOM_RESOURCE_PATCH_TYPES if res.custom else PATCH_TYPES
            raise errors.unsupported_media_type(content_type, supported)
        if content_type == APPLY_PATCH:
            return self._server_side_apply(res, namespace, name, raw, opts, subresource)
        old = self.get(res, namespace, name)
        patched = self._apply_patch(res, old, content_type, raw)
        self._check_identity(res, namespace, name, patched)
        return self.update(res, old, patched, opts, subresource=subresource)

    def _apply_patch(self, res: ResourceDef, old: dict[str, Any], content_type: str, raw: bytes,
                     ) -> dict[str, Any]:
        document = _parse_json(raw, 'patch')
        try:
            if content_type == JSON_PATCH:
                return apply_json_patch(old, _json_patch_operations(document))
            if not isinstance(document, dict):
                raise errors.bad_request(f'the patch must be a JSON object, not {_json(document)[:80]}')
            if content_type == MERGE_PATCH:
                return apply_merge_patch(old, document)
            return apply_strategic_merge_patch(old, document, self._patch_meta(res, content_type))
        except PatchTestFailed as exc:
            raise errors.unprocessable(str(exc)) from exc
        except PatchError as exc:
            # kube answers a JSON patch that does not apply with 422, a bad merge patch with 400.
            if content_type == JSON_PATCH:
                raise errors.unprocessable(str(exc)) from exc
            raise errors.bad_request(str(exc)) from exc

    @staticmethod
    def _patch_meta(res: ResourceDef, content_type: str) -> PatchMeta:
        """How fields of this kind merge: from the CRD schema, or the built-in tables (415 without)."""
        if res.custom is not None:
            return patch_meta_from_schema(res.custom.schema or {})
        meta = patch_meta_for_builtin(res.api_version, res.kind)
        if meta is None:
            raise errors.unsupported_media_type(
                f'{content_type} for {res.kind} (the local API server has no merge metadata for this kind)',
                (JSON_PATCH, MERGE_PATCH))
        return meta

    def _server_side_apply(self, res: ResourceDef, namespace: str | None, name: str, raw: bytes,
                           opts: WriteOptions, subresource: str | None) -> Outcome:
        if not opts.field_manager:
            raise errors.bad_request('PATCH, application/apply-patch+yaml: fieldManager is required for apply '
                                     'requests')
        applied = self._decode(res, _parse_yaml(raw))
        if metadata(applied).get('name') not in (None, name):
            raise errors.bad_request(f'the name of the object ({metadata(applied)["name"]}) does not match the '
                                     f'name on the URL ({name})')
        applied = with_meta(applied, name=name)
        old = self.store.get(res.storage, namespace if res.namespaced else None, name)
        try:
            if old is None:
                if subresource is not None:
                    raise errors.not_found(res.group, res.plural, name)
                created = apply_server_side(None, applied, self._patch_meta(res, APPLY_PATCH))
                return self.create(res, namespace, created, opts)
            merged = apply_server_side(self.as_version(res, old), applied, self._patch_meta(res, APPLY_PATCH))
        except PatchError as exc:
            raise errors.bad_request(str(exc)) from exc
        return self.update(res, self.as_version(res, old), merged, opts, subresource=subresource)

    # The scale subresource.

    def get_scale(self, res: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        return scale_of(res, self.get(res, namespace, name))

    def replace_scale(self, res: ResourceDef, namespace: str | None, name: str, body: Any,
                      opts: WriteOptions) -> Outcome:
        old = self.get(res, namespace, name)
        outcome = self.update(res, old, scaled(res, old, body), opts)
        return Outcome(scale_of(res, outcome.obj), outcome.warnings)

    def patch_scale(self, res: ResourceDef, namespace: str | None, name: str, content_type: str, raw: bytes,
                    opts: WriteOptions) -> Outcome:
        if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            raise errors.unsupported_media_type(content_type, (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH))
        old = self.get(res, namespace, name)
        document = _parse_json(raw, 'patch')
        try:
            if content_type == JSON_PATCH:
                patched = apply_json_patch(scale_of(res, old), _json_patch_operations(document))
            elif isinstance(document, dict):  # a Scale has no lists: a strategic merge is a merge
                patched = apply_merge_patch(scale_of(res, old), document)
            else:
                raise errors.bad_request(f'the patch must be a JSON object, not {_json(document)[:80]}')
        except PatchError as exc:
            raise errors.unprocessable(str(exc)) from exc
        outcome = self.update(res, old, scaled(res, old, patched), opts)
        return Outcome(scale_of(res, outcome.obj), outcome.warnings)

    # Deleting.

    def delete(self, res: ResourceDef, namespace: str | None, name: str, opts: DeleteOptions) -> DeleteOutcome:
        obj = self.get(res, namespace, name)
        self._check_delete_preconditions(res, obj, opts)
        finalizers = self._finalizers_for_propagation(obj, opts)
        if finalizers or self._blocks_deletion(res, obj):
            marked = self._mark_deleting(res, obj, finalizers)
            if opts.dry_run or _without_resource_version(marked) == _without_resource_version(obj):
                return DeleteOutcome(self.as_version(res, marked), deleted=False)
            return DeleteOutcome(self.as_version(res, self.store.modify(res.storage, marked)), deleted=False)
        if opts.dry_run:
            return DeleteOutcome(obj, deleted=True)
        removed = self.store.remove(res.storage, metadata(obj).get('namespace'), name)
        return DeleteOutcome(self.as_version(res, removed), deleted=True)

    def delete_collection(self, res: ResourceDef, namespace: str | None, label_selector: str,
                          field_selector: str, opts: DeleteOptions) -> list[dict[str, Any]]:
        doomed = self.select(res, namespace, label_selector, field_selector)
        for obj in doomed:
            meta = metadata(obj)
            if self.store.get(res.storage, meta.get('namespace'), meta['name']) is not None:
                self.delete(res, meta.get('namespace'), meta['name'], opts)
        return doomed

    def deletion_response(self, res: ResourceDef, outcome: DeleteOutcome) -> dict[str, Any]:
        """kube answers an immediate delete of most kinds with a Status, of some with the object."""
        if not outcome.deleted or res.custom is not None or res.storage in _RETURNS_DELETED_OBJECT:
            return outcome.obj
        meta = metadata(outcome.obj)
        details = {'name': meta['name'], 'kind': res.plural, 'uid': meta.get('uid')}
        if res.group:
            details['group'] = res.group
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success', 'details': details}

    def _check_delete_preconditions(self, res: ResourceDef, obj: dict[str, Any], opts: DeleteOptions) -> None:
        meta = metadata(obj)
        if opts.precondition_uid is not None and opts.precondition_uid != meta.get('uid'):
            raise errors.conflict(res.group, res.kind, meta['name'], (
                f'the UID in the precondition ({opts.precondition_uid}) does not match the UID in record '
                f'({meta.get("uid")}). The object might have been deleted and then recreated'))
        if (opts.precondition_resource_version is not None
                and opts.precondition_resource_version != meta.get('resourceVersion')):
            raise errors.conflict(res.group, res.kind, meta['name'], (
                f'the ResourceVersion in the precondition ({opts.precondition_resource_version}) does not '
                f'match the ResourceVersion in record ({meta.get("resourceVersion")}). The object might have '
                'been modified'))

    @staticmethod
    def _finalizers_for_propagation(obj: dict[str, Any], opts: DeleteOptions) -> list[str]:
        """The finalizers after the propagation policy adds or removes the GC's own ones."""
        current = finalizers_of(obj)
        if opts.orphan_dependents is not None:
            orphan, foreground = opts.orphan_dependents, False
        elif opts.propagation_policy is not None:
            orphan = opts.propagation_policy == 'Orphan'
            foreground = opts.propagation_policy == 'Foreground'
        else:  # no explicit policy: whatever the object already asked for, else background
            orphan = ORPHAN_FINALIZER in current
            foreground = FOREGROUND_FINALIZER in current
        kept = [f for f in current if f not in GC_FINALIZERS]
        return kept + ([ORPHAN_FINALIZER] if orphan else []) + ([FOREGROUND_FINALIZER] if foreground else [])

    def _mark_deleting(self, res: ResourceDef, obj: dict[str, Any], finalizers: list[str]) -> dict[str, Any]:
        meta = metadata(obj)
        generation = meta.get('generation')
        if not is_deleting(obj) and generation:
            generation += 1  # controllers see that the object changed meaning
        marked = with_meta(obj, finalizers=finalizers or None, generation=generation,
                           deletionTimestamp=meta.get('deletionTimestamp') or self.now(),
                           deletionGracePeriodSeconds=0)
        if res.storage == NAMESPACES:
            marked = {**marked, 'status': {**(marked.get('status') or {}), 'phase': 'Terminating'}}
        return marked

    def _blocks_deletion(self, res: ResourceDef, obj: dict[str, Any]) -> bool:
        if finalizers_of(obj):
            return True
        # A namespace waits for its content to go: spec.finalizers, cleared by the namespace controller.
        return res.storage == NAMESPACES and bool((obj.get('spec') or {}).get('finalizers'))

    # Shared steps of writes.

    def _decode(self, res: ResourceDef, body: Any) -> dict[str, Any]:
        """Check the body's shape and type as kube's decoder does; fill in apiVersion and kind."""
        if not isinstance(body, dict):
            raise errors.bad_request(f'the body of the request must be a JSON object of kind {res.kind}')
        sent_version, sent_kind = body.get('apiVersion'), body.get('kind')
        if sent_kind not in (None, '', res.kind):
            raise errors.bad_request(f'the kind in the body ({sent_kind}) does not match the kind on the URL '
                                     f'({res.kind})')
        if sent_version not in (None, '', res.api_version) and not self._same_storage(res, sent_version):
            raise errors.bad_request(f'the API version in the data ({sent_version}) does not match the expected '
                                     f'API version ({res.api_version})')
        problem = objectmeta.decoding_problem(body.get('metadata', {}))
        if problem:
            raise errors.bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                                     f'{problem}')
        return {**body, 'apiVersion': res.api_version, 'kind': res.kind, 'metadata': dict(body.get('metadata') or {})}

    def _same_storage(self, res: ResourceDef, api_version: str) -> bool:
        group, _, version = api_version.rpartition('/')
        other = self.catalog.find(group, version, res.plural)
        return other is not None and other.storage == res.storage

    @staticmethod
    def _place_in_namespace(res: ResourceDef, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        sent = metadata(obj).get('namespace')
        if not res.namespaced:
            return with_meta(obj, namespace=None)
        if sent and sent != namespace:
            raise errors.bad_request(
                'the namespace of the provided object does not match the namespace sent on the request')
        if not namespace:
            raise errors.bad_request(f'{res.plural} is namespaced: create it under /namespaces/<namespace>/')
        return with_meta(obj, namespace=namespace)

    def _admit(self, res: ResourceDef, obj: dict[str, Any], opts: WriteOptions,
               ) -> tuple[dict[str, Any], list[str]]:
        """Schema handling of custom resources, then the metadata and kind checks of all kinds."""
        if opts.field_validation not in FIELD_VALIDATIONS:
            raise errors.bad_request(f'fieldValidation: Unsupported value: {json.dumps(opts.field_validation)}: '
                                     'supported values: "Ignore", "Strict", "Warn"')
        warnings: list[str] = []
        problems: list[FieldError] = []
        schema = res.custom.schema if res.custom is not None else None
        if schema is not None:
            obj, warnings = self._prune_and_default(res, obj, schema, opts)
            problems += validate(obj, schema)
        problems += objectmeta.metadata_errors(res.group, res.plural, obj, namespaced=res.namespaced)
        name = metadata(obj).get('name', '')
        if problems:
            raise errors.invalid(res.group, res.kind, name,
                                 [Cause(p.field, p.type, p.body()) for p in problems],
                                 message=invalid_message(res.kind, res.group, name, problems))
        causes = self._kind_causes(res, obj)
        if causes:
            raise errors.invalid(res.group, res.kind, name, causes)
        return obj, warnings

    @staticmethod
    def _prune_and_default(res: ResourceDef, obj: dict[str, Any], schema: dict[str, Any], opts: WriteOptions,
                           ) -> tuple[dict[str, Any], list[str]]:
        """Drop undeclared fields (refused or warned about, as fieldValidation says), then default."""
        pruned, unknown = prune(obj, schema)
        warnings: list[str] = []
        if unknown and opts.field_validation == 'Strict':
            listed = ', '.join(f'unknown field {json.dumps(path)}' for path in unknown)
            raise errors.bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                                     f'strict decoding error: {listed}')
        if unknown and opts.field_validation == 'Warn':
            warnings = [f'unknown field {json.dumps(path)}' for path in unknown]
        return apply_defaults(pruned, schema), warnings

    # What some kinds do differently (kube's per-kind strategies).

    def _prepare_kind_for_create(self, res: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        if res.storage == NAMESPACES:
            name = metadata(obj)['name']
            spec = {**(obj.get('spec') or {}), 'finalizers': [NAMESPACE_FINALIZER]}
            labels = {**(metadata(obj).get('labels') or {}), NAMESPACE_NAME_LABEL: name}
            return {**with_meta(obj, labels=labels), 'spec': spec, 'status': {'phase': 'Active'}}
        if res.storage == CRDS and crds.CLEANUP_FINALIZER not in finalizers_of(obj):
            return with_meta(obj, finalizers=[*finalizers_of(obj), crds.CLEANUP_FINALIZER])
        return obj

    def _prepare_kind_for_update(self, res: ResourceDef, old: dict[str, Any], new: dict[str, Any],
                                 subresource: str | None) -> dict[str, Any]:
        if res.storage == NAMESPACES:
            # The name label is the server's; spec.finalizers changes only through /finalize.
            labels = {**(metadata(new).get('labels') or {}), NAMESPACE_NAME_LABEL: metadata(old)['name']}
            source = new if subresource == 'finalize' else old
            spec = {**(new.get('spec') or {}), 'finalizers': (source.get('spec') or {}).get('finalizers', [])}
            return {**with_meta(new, labels=labels), 'spec': spec}
        if res.storage == CRDS:
            self._refuse_crd_identity_change(res, old, new)
        return new

    @staticmethod
    def _refuse_crd_identity_change(res: ResourceDef, old: dict[str, Any], new: dict[str, Any]) -> None:
        """A CRD's group, scope and plural name say where its objects are stored: kube keeps them fixed."""
        causes = []
        for path in (('spec', 'group'), ('spec', 'scope'), ('spec', 'names', 'plural')):
            before: Any = old
            after: Any = new
            for key in path:
                before = before.get(key) if isinstance(before, dict) else None
                after = after.get(key) if isinstance(after, dict) else None
            if before != after:
                causes.append(Cause('.'.join(path), 'FieldValueInvalid',
                                    f'Invalid value: {json.dumps(after)}: field is immutable'))
        if causes:
            raise errors.invalid(res.group, res.kind, metadata(old)['name'], causes)

    @staticmethod
    def _default_built_in(res: ResourceDef, obj: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        """kube's defaulting of built-in kinds (Pod, Job, CronJob): see `defaults.py`."""
        if res.custom is not None:
            return obj
        if creating:
            return defaults.default_on_create(res.group, res.kind, obj)
        return defaults.default_on_update(res.group, res.kind, obj)

    def _kind_causes(self, res: ResourceDef, obj: dict[str, Any]) -> list[Cause]:
        if res.custom is None and res.storage != CRDS:
            return defaults.validation_causes(res.group, res.kind, obj)
        if res.storage != CRDS:
            return []
        causes = crds.crd_problems(obj)
        if causes:
            return causes
        spec = obj['spec']
        served = self.catalog.preferred(spec['group'], spec['names']['plural'])
        if served is not None and (served.custom is None or served.custom.crd_name != metadata(obj)['name']):
            return [Cause('spec.names.plural', 'FieldValueInvalid',
                          f'Invalid value: {json.dumps(spec["names"]["plural"])}: '
                          f'{errors.qualified_resource(spec["group"], spec["names"]["plural"])} is already served '
                          'by this API server')]
        return []

    def _finish_kind(self, res: ResourceDef, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """The status a kind's controllers would write at once (the local ones are instantaneous)."""
        if res.storage == CRDS and not is_deleting(obj):
            status = crds.established_status(obj, (old or {}).get('status'), self.now())
            return {**obj, 'status': status}
        return obj

    def _review(self, res: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        status: dict[str, Any]
        if (res.group, res.plural) == _SELF_SUBJECT_REVIEW:
            status = {'userInfo': {'username': LOCAL_USER, 'groups': ['system:masters', 'system:authenticated']}}
        elif (res.group, res.plural) == _RULES_REVIEW:
            status = {'resourceRules': [{'verbs': ['*'], 'apiGroups': ['*'], 'resources': ['*']}],
                      'nonResourceRules': [{'verbs': ['*'], 'nonResourceURLs': ['*']}],
                      'incomplete': False, 'evaluationError': NO_RBAC}
        else:
            status = {'allowed': True, 'reason': NO_RBAC}
        return {**obj, 'status': status}


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise errors.bad_request(f'error decoding {what}: {exc}') from exc


def _parse_yaml(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f'error decoding YAML: {exc}') from exc


def _json_patch_operations(document: Any) -> list[dict[str, Any]]:
    """Only the shape kube's JSON-patch decoder checks; the operations are applied by patching.py."""
    if not isinstance(document, list) or not all(isinstance(op, dict) for op in document):
        raise errors.bad_request('json: cannot unmarshal the patch: a JSON patch is a list of operations')
    for op in document:
        if not isinstance(op.get('op'), str) or not isinstance(op.get('path'), str):
            raise errors.bad_request(f'invalid JSON patch operation (needs "op" and "path"): {_json(op)}')
    return document
