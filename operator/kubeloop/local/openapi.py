"""OpenAPI v3 documents (`/openapi/v3`) shaped the way kube-apiserver publishes them for kubectl.

Real kubectl reads these documents for three things, and each needs a precise shape:

- **server-side field validation** (`kubectl apply` without `--validate=false`): kubectl
  looks in the group-version document for the resource's PATCH operation carrying
  `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter; found, it sends
  `fieldValidation=Strict` and leaves validation to the server; not found, it falls back to
  client-side validation from `/openapi/v2`, which a local server does not serve.
- **`kubectl explain`**: it finds the GVK on an operation of `/apis/<g>/<v>/.../<plural>`,
  then the `components.schemas` entry listing that GVK in `x-kubernetes-group-version-kind`,
  and walks `properties`, `$ref`, `allOf`, `items` and `additionalProperties` from there.
- **caching**: the index `/openapi/v3` lists each document with a `hash` in its URL, and
  kubectl caches documents by that URL; the hash is a digest of the exact bytes served
  (`document_bytes`), so a changed CRD schema always reaches kubectl.

A custom resource is published as apiextensions-apiserver publishes it: its structural
schema with `metadata` replaced by a reference to ObjectMeta, `apiVersion`/`kind`
described, int-or-string unfolded, and the same operations and parameters as the CRD
OpenAPI builder. Built-in kinds are published from the Kubernetes definitions bundled with
`kubernetes-validate` when it is installed (so `kubectl explain configmap` works), else with
a permissive schema. Documents are deterministic: same input, same bytes, same hash.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "ResourceDoc",
    "builtin_definitions",
    "definition_name",
    "document_bytes",
    "document_hash",
    "group_version_path",
    "openapi_group_version",
    "openapi_index",
]

_COMPONENTS = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
OBJECT_META = _META + "ObjectMeta"
LIST_META = _META + "ListMeta"
STATUS = _META + "Status"
PATCH = _META + "Patch"
DELETE_OPTIONS = _META + "DeleteOptions"
SCALE = "io.k8s.api.autoscaling.v1.Scale"

_METADATA_DESCRIPTION = ("Standard object's metadata. More info: "
                         "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
_LIST_METADATA_DESCRIPTION = ("Standard list metadata. More info: "
                              "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
_API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
_KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this from "
    "the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")


@dataclass(frozen=True)
class ResourceDoc:
    """One served resource of a group version, as the OpenAPI document describes it.

    `schema` is the CRD version's `openAPIV3Schema`, or None for a built-in kind (published
    from Kubernetes' own definitions when available). `subresources` may hold "status" and
    "scale".
    """

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    schema: dict[str, Any] | None
    subresources: frozenset[str] = frozenset()


# --- Kubernetes' own definitions (bundled with kubernetes-validate) ---------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name))


@lru_cache(maxsize=1)
def builtin_definitions() -> Mapping[str, dict[str, Any]]:
    """Kubernetes' OpenAPI definitions by name (``io.k8s.api.core.v1.Pod``), newest bundled
    version, read once; empty when kubernetes-validate is not installed.

    The definitions are JSON-Schema flavoured (``$ref: #/$defs/...``, ``type: [string,
    null]``); `openapi_group_version` converts what it publishes.
    """
    try:
        import kubernetes_validate
    except ImportError:
        return MappingProxyType({})
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    candidates = [p for p in base.glob("v*-local") if (p / "_definitions.json").is_file()]
    if not candidates:
        return MappingProxyType({})
    newest = max(candidates, key=_version_key)
    data = json.loads((newest / "_definitions.json").read_text(encoding="utf-8"))
    return MappingProxyType(data.get("$defs") or data.get("definitions") or {})


@lru_cache(maxsize=1)
def _builtin_names_by_gvk() -> Mapping[tuple[str, str, str], str]:
    names: dict[tuple[str, str, str], str] = {}
    for name, definition in builtin_definitions().items():
        for gvk in definition.get("x-kubernetes-group-version-kind") or []:
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            names.setdefault(key, name)
    return MappingProxyType(names)


def _to_v3(node: Any) -> Any:
    """JSON-Schema-flavoured Kubernetes definitions as kube's OpenAPI v3 writes them.

    `$ref`s point into components, a `$ref` with siblings becomes `allOf: [$ref]` (OpenAPI
    3.0 ignores siblings of `$ref`), and nullable type lists become a single type.
    """
    if isinstance(node, list):
        return [_to_v3(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _COMPONENTS + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out[key] = types[0]
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _to_v3(sub) for name, sub in value.items()}
        elif key in ("x-kubernetes-group-version-kind", "enum", "required", "default", "example"):
            out[key] = copy.deepcopy(value)
        else:
            out[key] = _to_v3(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_COMPONENTS):
                found.add(value[len(_COMPONENTS):])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


# Used when kubernetes-validate is absent: enough for kubectl to resolve every reference.
_FALLBACK_DEFINITIONS: dict[str, dict[str, Any]] = {
    OBJECT_META: {
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
                       "users must create.",
        "type": "object",
        "properties": {
            "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                            "description": "Annotations is an unstructured key value map stored with a resource."},
            "creationTimestamp": {"type": "string", "format": "date-time",
                                  "description": "CreationTimestamp is the server time when this object was created."},
            "deletionTimestamp": {"type": "string", "format": "date-time",
                                  "description": "DeletionTimestamp is the time at which this resource will be "
                                                 "deleted, set when a graceful deletion is requested."},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""},
                           "x-kubernetes-list-type": "set",
                           "description": "Must be empty before the object is deleted from the registry."},
            "generateName": {"type": "string",
                             "description": "GenerateName is an optional prefix used by the server to generate a "
                                            "unique name if Name is not provided."},
            "generation": {"type": "integer", "format": "int64",
                           "description": "A sequence number representing a specific generation of the desired state."},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                       "description": "Map of string keys and values that can be used to organize and categorize "
                                      "(scope and select) objects."},
            "name": {"type": "string", "description": "Name must be unique within a namespace."},
            "namespace": {"type": "string", "description": "Namespace defines the space within which each name "
                                                           "must be unique."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                "description": "List of objects depended by this object."},
            "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal "
                                                                 "version of this object."},
            "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
        },
    },
    LIST_META: {
        "description": "ListMeta describes metadata that synthetic resources must have, including lists.",
        "type": "object",
        "properties": {
            "continue": {"type": "string", "description": "continue may be set if the user set a limit."},
            "remainingItemCount": {"type": "integer", "format": "int64",
                                   "description": "The number of subsequent items in the list."},
            "resourceVersion": {"type": "string", "description": "String that identifies the server's internal "
                                                                 "version of this object."},
        },
    },
    STATUS: {
        "description": "Status is a return value for calls that don't return other objects.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": _API_VERSION_DESCRIPTION},
            "code": {"type": "integer", "format": "int32", "description": "Suggested HTTP return code."},
            "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "description": "Extended data associated with the reason."},
            "kind": {"type": "string", "description": _KIND_DESCRIPTION},
            "message": {"type": "string", "description": "A human-readable description of the status."},
            "metadata": {"allOf": [{"$ref": _COMPONENTS + LIST_META}], "description": _LIST_METADATA_DESCRIPTION},
            "reason": {"type": "string", "description": "A machine-readable description of the failure."},
            "status": {"type": "string", "description": "Status of the operation: Success or Failure."},
        },
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}],
    },
    PATCH: {"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object"},
    DELETE_OPTIONS: {
        "description": "DeleteOptions may be provided when deleting an API object.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": _API_VERSION_DESCRIPTION},
            "dryRun": {"type": "array", "items": {"type": "string", "default": ""},
                       "description": "When present, indicates that modifications should not be persisted."},
            "gracePeriodSeconds": {"type": "integer", "format": "int64",
                                   "description": "The duration in seconds before the object should be deleted."},
            "kind": {"type": "string", "description": _KIND_DESCRIPTION},
            "propagationPolicy": {"type": "string", "description": "Whether and how garbage collection will be "
                                                                   "performed."},
        },
    },
    SCALE: {
        "description": "Scale represents a scaling request for a resource.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": _API_VERSION_DESCRIPTION},
            "kind": {"type": "string", "description": _KIND_DESCRIPTION},
            "metadata": {"allOf": [{"$ref": _COMPONENTS + OBJECT_META}], "description": _METADATA_DESCRIPTION},
            "spec": {"type": "object", "properties": {"replicas": {"type": "integer", "format": "int32"}}},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer", "format": "int32"},
                                                         "selector": {"type": "string"}}},
        },
        "x-kubernetes-group-version-kind": [{"group": "autoscaling", "kind": "Scale", "version": "v1"}],
    },
}


def _definition(name: str) -> dict[str, Any] | None:
    raw = builtin_definitions().get(name)
    if raw is not None:
        return _cached_v3(name)
    fallback = _FALLBACK_DEFINITIONS.get(name)
    return copy.deepcopy(fallback) if fallback is not None else None


@lru_cache(maxsize=2048)
def _cached_v3_json(name: str) -> str:
    return json.dumps(_to_v3(builtin_definitions()[name]), sort_keys=True)


def _cached_v3(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_cached_v3_json(name))
    return result


def _with_closure(schemas: dict[str, Any]) -> dict[str, Any]:
    """Add every definition the given schemas reference, transitively."""
    pending = sorted(set().union(*(_refs(s) for s in schemas.values())) - set(schemas)) if schemas else []
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        definition = _definition(name)
        if definition is None:
            definition = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        schemas[name] = definition
        pending.extend(sorted(_refs(definition) - set(schemas)))
    return schemas


# --- naming --------------------------------------------------------------------------------------


def definition_name(group: str, version: str, kind: str) -> str:
    """The component name kube gives a custom kind: the group reversed, e.g.
    ``dev.kubeloop.v1alpha1.TrainingRun`` (kube-openapi's ToRESTFriendlyName)."""
    if not group:
        return f"io.k8s.api.core.{version}.{kind}"
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def group_version_path(group_version: str) -> str:
    """The `/openapi/v3` key of a group version: ``api/v1`` or ``apis/<group>/<version>``."""
    group, _, version = group_version.rpartition("/")
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _friendly(group: str, version: str) -> str:
    group = group[: -len(".k8s.io")] if group.endswith(".k8s.io") else group
    words = [w for w in re.split(r"[.\-]", group or "core") if w]
    return "".join(w[:1].upper() + w[1:] for w in words) + version[:1].upper() + version[1:]


def _tag(group: str, version: str) -> str:
    group = group[: -len(".k8s.io")] if group.endswith(".k8s.io") else group
    words = [w for w in re.split(r"[.\-]", group or "core") if w]
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:]) + "_" + version


# --- publishing a CRD schema -----------------------------------------------------------------------


def _type_meta_properties() -> dict[str, Any]:
    return {
        "apiVersion": {"type": "string", "description": _API_VERSION_DESCRIPTION},
        "kind": {"type": "string", "description": _KIND_DESCRIPTION},
    }


def _is_int_or_string_any_of(any_of: Any) -> bool:
    return bool(any_of == [{"type": "integer"}, {"type": "string"}])


def _publish_node(node: Any) -> Any:
    """apiextensions' Unfold + addEmbeddedProperties on one structural node, recursively."""
    if not isinstance(node, dict):
        return node
    out = {key: value for key, value in node.items() if key not in ("properties", "items", "additionalProperties")}
    if isinstance(node.get("properties"), dict):
        out["properties"] = {name: _publish_node(sub) for name, sub in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = _publish_node(node["items"])
    if "additionalProperties" in node:
        extra = node["additionalProperties"]
        out["additionalProperties"] = _publish_node(extra) if isinstance(extra, dict) else extra
    if node.get("x-kubernetes-int-or-string"):
        all_of = node.get("allOf") or []
        pattern = _is_int_or_string_any_of(node.get("anyOf")) or (
            all_of and isinstance(all_of[0], dict) and _is_int_or_string_any_of(all_of[0].get("anyOf")))
        if not pattern:
            unfolded = [{"type": "integer"}, {"type": "string"}]
            if node.get("anyOf") is None:
                out["anyOf"] = unfolded
            else:
                out["allOf"] = [{"anyOf": unfolded}, *all_of]
    if node.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        properties.update(_type_meta_properties())
        properties["metadata"] = {"allOf": [{"$ref": _COMPONENTS + OBJECT_META}], "description": _METADATA_DESCRIPTION}
    return out


def _published_custom_schema(resource: ResourceDoc) -> dict[str, Any]:
    schema: dict[str, Any] = _publish_node(copy.deepcopy(resource.schema or {}))
    schema.setdefault("type", "object")
    properties = schema.setdefault("properties", {})
    properties.update(_type_meta_properties())
    properties["metadata"] = {"allOf": [{"$ref": _COMPONENTS + OBJECT_META}], "description": _METADATA_DESCRIPTION}
    schema["x-kubernetes-group-version-kind"] = [_gvk(resource.group, resource.version, resource.kind)]
    return schema


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _list_schema(resource: ResourceDoc, item_name: str) -> dict[str, Any]:
    return {
        "description": f"{resource.kind}List is a list of {resource.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            **_type_meta_properties(),
            "items": {"type": "array", "items": {"$ref": _COMPONENTS + item_name},
                      "description": f"List of {resource.plural.lower()}. More info: "
                                     "https://git.k8s.io/community/contributors/devel/api-conventions.md"},
            "metadata": {"allOf": [{"$ref": _COMPONENTS + LIST_META}], "description": _LIST_METADATA_DESCRIPTION},
        },
        "x-kubernetes-group-version-kind": [_gvk(resource.group, resource.version, f"{resource.kind}List")],
    }


def _resource_schemas(resource: ResourceDoc) -> tuple[str, str, dict[str, Any]]:
    """(kind component, list component, schemas) for one resource."""
    if resource.schema is not None:
        name = definition_name(resource.group, resource.version, resource.kind)
        return name, name + "List", {name: _published_custom_schema(resource),
                                     name + "List": _list_schema(resource, name)}
    names = _builtin_names_by_gvk()
    builtin = names.get((resource.group, resource.version, resource.kind))
    if builtin is None:
        name = definition_name(resource.group, resource.version, resource.kind)
        permissive = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {**_type_meta_properties(),
                           "metadata": {"allOf": [{"$ref": _COMPONENTS + OBJECT_META}],
                                        "description": _METADATA_DESCRIPTION}},
            "x-kubernetes-group-version-kind": [_gvk(resource.group, resource.version, resource.kind)],
        }
        return name, name + "List", {name: permissive, name + "List": _list_schema(resource, name)}
    schemas = {builtin: _cached_v3(builtin)}
    list_name = names.get((resource.group, resource.version, f"{resource.kind}List"))
    if list_name is None:
        list_name = builtin + "List"
        schemas[list_name] = _list_schema(resource, builtin)
    else:
        schemas[list_name] = _cached_v3(list_name)
    return builtin, list_name, schemas


# --- operations ------------------------------------------------------------------------------------

_QUERY_PARAMETERS: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers "
                            "that do not implement bookmarks may ignore this flag and bookmarks are sent at the "
                            "server's discretion."),
    "continue": ("string", "The continue option should be set when retrieving more results from the server."),
    "dryRun": ("string", "When present, indicates that modifications should not be persisted. An invalid or "
               "unrecognized dryRun directive will result in an error response and no further processing of the "
               "request. Valid values are: - All: all dry run stages will be processed"),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is making these "
                     "changes. The value must be less than or 128 characters long, and only contain printable "
                     "characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. Defaults to "
                      "everything."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle objects in the request "
                        "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This "
                        "will ignore any unknown fields that are silently dropped from the object, and will ignore "
                        "all but the last duplicate field that the decoder encounters. - Warn: This will send a "
                        "warning via the standard warning response header for each unknown field that is dropped "
                        "from the object, and for each duplicate field that is encountered. - Strict: This will fail "
                        "the request with a BadRequest error if any unknown fields would be dropped from the object, "
                        "or if any duplicate fields are present."),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting "
              "fields owned by other people. Force flag must be unset for non-apply patch requests."),
    "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be deleted."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. Defaults to "
                      "everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
    "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated "
                         "in 1.7. Should the dependent objects be orphaned."),
    "propagationPolicy": ("string", "Whether and how garbage collection will be performed. Acceptable values are: "
                          "'Orphan', 'Background', 'Foreground'."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a request may be "
                        "served from."),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is applied to list "
                             "calls."),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, "
              "and remove notifications. Specify resourceVersion."),
}
_ACTION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "list": ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
             "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"),
    "deletecollection": ("continue", "dryRun", "fieldSelector", "gracePeriodSeconds", "labelSelector", "limit",
                         "orphanDependents", "propagationPolicy", "resourceVersion", "resourceVersionMatch",
                         "sendInitialEvents", "timeoutSeconds"),
    "get": (),
    "post": ("dryRun", "fieldManager", "fieldValidation"),
    "put": ("dryRun", "fieldManager", "fieldValidation"),
    "patch": ("dryRun", "fieldManager", "fieldValidation", "force"),
    "delete": ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy"),
}


def _query_parameter(name: str) -> dict[str, Any]:
    type_, description = _QUERY_PARAMETERS[name]
    schema: dict[str, Any] = {"type": type_}
    if name == "dryRun":
        schema["uniqueItems"] = True
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _content(name: str, media_types: tuple[str, ...] = ("application/json", "application/yaml")) -> dict[str, Any]:
    return {media: {"schema": {"$ref": _COMPONENTS + name}} for media in media_types}


def _operation(resource: ResourceDoc, action: str, verb: str, subresource: str, response: str,
               *, all_namespaces: bool = False) -> dict[str, Any]:
    kind = resource.kind
    sub_title = subresource[:1].upper() + subresource[1:]
    scope = "Namespaced" if resource.namespaced and not all_namespaces else ""
    operation_id = f"{verb}{_friendly(resource.group, resource.version)}{scope}{kind}{sub_title}"
    if all_namespaces:
        operation_id += "ForAllNamespaces"
    sub_text = f" {subresource} of" if subresource else ""
    an = " an " if kind[:1] in "AEIOU" else " a "
    article = {"list": " objects of kind ", "read": " the specified ", "replace": " the specified ",
               "patch": " the specified ", "create": an, "delete": an}.get(verb, " ")
    description = {"patch": f"partially update{sub_text}{article}{kind}",
                   "deletecollection": f"delete collection of{sub_text} {kind}"}.get(
        verb, f"{verb}{sub_text}{article}{kind}")
    operation: dict[str, Any] = {
        "tags": [_tag(resource.group, resource.version)],
        "description": description,
        "operationId": operation_id,
        "parameters": [_query_parameter(name) for name in _ACTION_PARAMETERS[action]],
        "responses": {"200": {"description": "OK", "content": _content(response)},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource.group, resource.version, kind),
    }
    if action in ("post", "put"):
        body = SCALE if subresource == "scale" else response
        operation["requestBody"] = {"content": _content(body), "required": True}
    if action == "patch":
        media = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if resource.schema is None:
            media.append("application/strategic-merge-patch+json")
        operation["requestBody"] = {"content": _content(PATCH, tuple(sorted(media))), "required": True}
    if action in ("delete", "deletecollection"):
        operation["requestBody"] = {"content": _content(DELETE_OPTIONS)}
    if action == "post":
        operation["responses"]["201"] = {"description": "Created", "content": _content(response)}
        operation["responses"]["202"] = {"description": "Accepted", "content": _content(response)}
    if action == "put":
        operation["responses"]["201"] = {"description": "Created", "content": _content(response)}
    if action == "delete":
        operation["responses"]["202"] = {"description": "Accepted", "content": _content(response)}
    return operation


def _path_parameters(path: str, kind: str, query_pretty: bool = True) -> list[dict[str, Any]]:
    parameters = []
    if "{name}" in path:
        parameters.append({"name": "name", "in": "path", "description": f"name of the {kind}", "required": True,
                           "schema": {"type": "string", "uniqueItems": True}})
    if "{namespace}" in path:
        parameters.append({"name": "namespace", "in": "path", "description": "object name and auth scope, such as "
                           "for teams and projects", "required": True, "schema": {"type": "string",
                                                                                  "uniqueItems": True}})
    if query_pretty:
        parameters.append({"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty "
                           "printed. Defaults to 'false' unless the user-agent indicates a browser or command-line "
                           "HTTP tool (curl and wget).", "schema": {"type": "string", "uniqueItems": True}})
    return parameters


def _resource_paths(resource: ResourceDoc, kind_name: str, list_name: str) -> dict[str, Any]:
    prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    paths: dict[str, Any] = {}
    if resource.namespaced:
        every = f"{prefix}/{resource.plural}"
        paths[every] = {"get": _operation(resource, "list", "list", "", list_name, all_namespaces=True),
                        "parameters": _path_parameters(every, resource.kind)}
        root = f"{prefix}/namespaces/{{namespace}}/{resource.plural}"
    else:
        root = f"{prefix}/{resource.plural}"
    paths[root] = {
        "get": _operation(resource, "list", "list", "", list_name),
        "post": _operation(resource, "post", "create", "", kind_name),
        "delete": _operation(resource, "deletecollection", "deletecollection", "", STATUS),
        "parameters": _path_parameters(root, resource.kind),
    }
    item = f"{root}/{{name}}"
    paths[item] = {
        "get": _operation(resource, "get", "read", "", kind_name),
        "put": _operation(resource, "put", "replace", "", kind_name),
        "patch": _operation(resource, "patch", "patch", "", kind_name),
        "delete": _operation(resource, "delete", "delete", "", STATUS),
        "parameters": _path_parameters(item, resource.kind),
    }
    for subresource in sorted(resource.subresources & {"status", "scale"}):
        path = f"{item}/{subresource}"
        body = SCALE if subresource == "scale" else kind_name
        paths[path] = {
            "get": _operation(resource, "get", "read", subresource, body),
            "put": _operation(resource, "put", "replace", subresource, body),
            "patch": _operation(resource, "patch", "patch", subresource, body),
            "parameters": _path_parameters(path, resource.kind),
        }
    return paths


# --- documents -------------------------------------------------------------------------------------


def openapi_group_version(group_version: str, resources: list[ResourceDoc]) -> dict[str, Any]:
    """The document kube-apiserver serves at `/openapi/v3/<api/v1 | apis/<g>/<v>>`.

    Paths for every resource (list, create, delete-collection, read, replace, patch,
    delete, and status/scale when present), each operation tagged with
    `x-kubernetes-group-version-kind` and the query parameters kube declares (PATCH, PUT and
    POST carry `fieldValidation` and `dryRun`); components with each kind, its list, and
    every definition they reference (ObjectMeta, ListMeta, Status, Patch, DeleteOptions...).
    Serve it as `document_bytes(doc)` so that the index hash matches what kubectl caches.
    """
    group, _, version = group_version.rpartition("/")
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for resource in sorted(resources, key=lambda r: (r.plural, r.kind)):
        if (resource.group, resource.version) != (group, version):
            raise ValueError(f"resource {resource.plural}.{resource.group}/{resource.version} is not in "
                             f"group version {group_version!r}")
        kind_name, list_name, resource_schemas = _resource_schemas(resource)
        schemas.update(resource_schemas)
        paths.update(_resource_paths(resource, kind_name, list_name))
    for name in (OBJECT_META, LIST_META, STATUS, PATCH, DELETE_OPTIONS):
        schemas.setdefault(name, _definition(name) or {"type": "object"})
    if any("scale" in r.subresources for r in resources):
        schemas.setdefault(SCALE, _definition(SCALE) or {"type": "object"})
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "kubeloop-local"},
        "paths": paths,
        "components": {
            "schemas": _with_closure(schemas),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                                "name": "authorization", "in": "header"}},
        },
    }


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a document: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def document_hash(document: Mapping[str, Any]) -> str:
    """The hash kubectl sees in the document URL: SHA-512 of `document_bytes`, uppercase hex,
    as kube-apiserver computes its OpenAPI etags."""
    return hashlib.sha512(document_bytes(document)).hexdigest().upper()


def openapi_index(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The `/openapi/v3` discovery document for the given group-version documents.

    `documents` maps a group version ("v1", "kubeloop.dev/v1alpha1") to its document from
    `openapi_group_version`; each entry's `serverRelativeURL` carries the document's hash,
    so any change of content changes the URL and kubectl refetches it.
    """
    paths = {}
    for group_version in sorted(documents, key=group_version_path):
        path = group_version_path(group_version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={document_hash(documents[group_version])}"}
    return {"paths": paths}
