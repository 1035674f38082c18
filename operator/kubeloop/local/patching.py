"""The four ways kube-apiserver changes a stored object, as pure functions over JSON values.

The local API server answers PATCH (merge, JSON, strategic merge) and server-side apply
with these functions, so that what works against it works against a real cluster and
what a real cluster refuses is refused here too. Every function takes and returns plain
JSON values (``dict``/``list``/``str``/numbers/``bool``/``None``), never mutates its
arguments, and raises :class:`PatchError` (or :class:`PatchTestFailed`) with a message
that names the offending path.

* :func:`apply_merge_patch` — RFC 7386 (``application/merge-patch+json``).
* :func:`apply_json_patch` — RFC 6902 (``application/json-patch+json``), as kopf uses it
  for finalizers: a ``test`` of ``/metadata/resourceVersion`` followed by the changes.
* :func:`apply_strategic_merge_patch` — ``application/strategic-merge-patch+json``, which
  real ``kubectl apply`` sends for built-in kinds, following
  ``k8s.io/apimachinery/pkg/util/strategicpatch`` as kube-apiserver 1.37 applies it:
  list merging by ``patchMergeKey``, ``$patch``, ``$setElementOrder/…``,
  ``$deleteFromPrimitiveList/…`` and ``$retainKeys`` directives. Kubernetes offers it for
  built-in kinds only; for custom resources it answers 415, which is why
  :func:`patch_meta_for_builtin` returns ``None`` for them.
* :func:`apply_server_side` — ``application/apply-patch+yaml``, merging the applied
  configuration with list-map / set / atomic semantics (built-in ``listType`` markers or
  a CRD's ``x-kubernetes-list-type``).

How each field merges is described by a :class:`PatchMeta`: a tree built either from the
readable tables of built-in kinds below (verified by the test-suite against the 1.37
OpenAPI schema shipped by ``kubernetes-validate``) or from a CRD's structural schema.

Deliberate differences from kube-apiserver, each documented where it happens:

* Server-side apply does not track ``managedFields``, so a field removed from an applied
  configuration is *not* removed from the object (real SSA removes fields that only this
  manager owned) and there are no field-manager conflicts. This is the one known gap.
* Strategic merge patch values that are not merged with anything (new keys, replaced
  lists) come out as kube-apiserver's typed decoding leaves them: directive keys are never
  stored, and a new subtree is merged into an empty value, so its directives take effect
  instead of being stored literally or silently dropped.
* A merging list that its directives leave empty is dropped, as the typed object that
  kube-apiserver decodes omits it.
* Patches that kube-apiserver would corrupt silently or crash on (``$setElementOrder``
  or ``$deleteFromPrimitiveList`` on a list that does not merge, unknown ``$``-keys) are
  refused with a :class:`PatchError`, because the local server must fail loudly.
"""

from __future__ import annotations

import copy
import json
import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal

__all__ = [
    "FieldRule",
    "PatchError",
    "PatchMeta",
    "PatchTestFailed",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_server_side",
    "apply_strategic_merge_patch",
    "patch_meta_for_builtin",
    "patch_meta_from_schema",
]


class PatchError(ValueError):
    """A patch that cannot be applied: malformed, or not applicable to this object.

    The server answers 400 BadRequest for a malformed body and 422 Invalid for one that does
    not apply (kube-apiserver answers 422 for every failed JSON-patch operation). ``path``
    names the field or JSON pointer at fault so that callers can build a Status ``details``.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class PatchTestFailed(PatchError):
    """A JSON-patch ``test`` operation found another value: optimistic concurrency lost.

    kube-apiserver answers 422 Invalid; kopf relies on exactly that to retry its finalizer
    patch on the next cycle instead of looping forever.
    """


# --------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------

_MISSING: Final = object()


def _json_key(value: Any) -> Any:
    """A hashable identity for a JSON value with JSON's equality, not Python's.

    ``True == 1`` in Python but not in JSON; ``1 == 1.0`` in both (kube-apiserver decodes
    integral numbers to int64 either way).
    """
    if value is _MISSING:
        return ("missing",)
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        if isinstance(value, float) and value.is_integer():
            return ("num", int(value))
        return ("num", value)
    if isinstance(value, str):
        return ("str", value)
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))


def _json_equal(left: Any, right: Any) -> bool:
    """Deep JSON equality (RFC 6902 §4.6): bools are not numbers, key order does not matter."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    return bool(_json_key(left) == _json_key(right))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _item_path(path: str, item: Any, merge_key: str | None, index: int) -> str:
    if merge_key and isinstance(item, dict) and merge_key in item:
        return f"{path}[{merge_key}={json.dumps(item[merge_key])}]"
    return f"{path}[{index}]"


def _display(path: str) -> str:
    return path or "<root>"


# --------------------------------------------------------------------------------------
# RFC 7386: JSON merge patch
# --------------------------------------------------------------------------------------


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, lists replace.

    kopf patches every status and most metadata this way. A patch that is not an object would
    replace the whole resource with a non-object, which no API server accepts.
    """
    if not isinstance(target, dict):
        raise PatchError(f"the patched document must be a JSON object, not {_type_name(target)}")
    if not isinstance(patch, dict):
        raise PatchError(f"a merge patch must be a JSON object, not {_type_name(patch)}")
    result = _merge_patch_value(target, patch)
    assert isinstance(result, dict)
    return result


def _merge_patch_value(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch_value(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------
# RFC 6902: JSON patch (with RFC 6901 pointers)
# --------------------------------------------------------------------------------------

_ARRAY_INDEX: Final = re.compile(r"0|[1-9][0-9]*")
_JSON_PATCH_OPS: Final = ("add", "remove", "replace", "move", "copy", "test")


def _parse_pointer(pointer: Any, *, member: str, op_index: int) -> list[str]:
    """Split an RFC 6901 pointer into unescaped reference tokens (``~1`` → ``/``, ``~0`` → ``~``)."""
    if not isinstance(pointer, str):
        raise PatchError(
            f"operation {op_index}: {member!r} must be a JSON pointer string, not {_type_name(pointer)}",
            path=str(pointer),
        )
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(
            f"operation {op_index}: invalid JSON pointer {pointer!r}: it must be empty or start with '/'",
            path=pointer,
        )
    tokens = []
    for raw in pointer[1:].split("/"):
        if re.search(r"~(?![01])", raw):
            raise PatchError(
                f"operation {op_index}: invalid JSON pointer {pointer!r}: '~' must be followed by 0 or 1",
                path=pointer,
            )
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _array_index(token: str, length: int, *, pointer: str, op_index: int, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return length
    if not _ARRAY_INDEX.fullmatch(token):
        raise PatchError(
            f"operation {op_index}: {pointer!r}: {token!r} is not an array index"
            + (" (nor '-')" if allow_end else ""),
            path=pointer,
        )
    index = int(token)
    limit = length if allow_end else length - 1
    if index > limit:
        raise PatchError(
            f"operation {op_index}: {pointer!r}: index {index} is out of bounds for an array of {length}",
            path=pointer,
        )
    return index


def _resolve_parent(doc: Any, tokens: list[str], *, pointer: str, op_index: int) -> Any:
    """Walk to the container that holds the last token; every step must exist."""
    node = doc
    for depth, token in enumerate(tokens[:-1]):
        here = "/" + "/".join(t.replace("~", "~0").replace("/", "~1") for t in tokens[: depth + 1])
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"operation {op_index}: {pointer!r}: {here!r} does not exist", path=pointer)
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), pointer=pointer, op_index=op_index, allow_end=False)]
        else:
            raise PatchError(
                f"operation {op_index}: {pointer!r}: {here!r} is inside a {_type_name(node)}, "
                f"which has no members",
                path=pointer,
            )
    return node


def _get(doc: Any, tokens: list[str], *, pointer: str, op_index: int) -> Any:
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, pointer=pointer, op_index=op_index)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"operation {op_index}: {pointer!r} does not exist", path=pointer)
        return parent[last]
    if isinstance(parent, list):
        return parent[_array_index(last, len(parent), pointer=pointer, op_index=op_index, allow_end=False)]
    raise PatchError(
        f"operation {op_index}: {pointer!r}: the parent is a {_type_name(parent)}, which has no members",
        path=pointer,
    )


def _add(doc: Any, tokens: list[str], value: Any, *, pointer: str, op_index: int) -> Any:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer=pointer, op_index=op_index)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(
            _array_index(last, len(parent), pointer=pointer, op_index=op_index, allow_end=True), value
        )
    else:
        raise PatchError(
            f"operation {op_index}: {pointer!r}: cannot add a member to a {_type_name(parent)}",
            path=pointer,
        )
    return doc


def _remove(doc: Any, tokens: list[str], *, pointer: str, op_index: int) -> Any:
    if not tokens:
        raise PatchError(f"operation {op_index}: cannot remove the whole document", path=pointer)
    parent = _resolve_parent(doc, tokens, pointer=pointer, op_index=op_index)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"operation {op_index}: {pointer!r} does not exist", path=pointer)
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(
            _array_index(last, len(parent), pointer=pointer, op_index=op_index, allow_end=False)
        )
    raise PatchError(
        f"operation {op_index}: {pointer!r}: the parent is a {_type_name(parent)}, which has no members",
        path=pointer,
    )


def _replace(doc: Any, tokens: list[str], value: Any, *, pointer: str, op_index: int) -> Any:
    """Replace an existing value in place (an object keeps its key order)."""
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer=pointer, op_index=op_index)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"operation {op_index}: {pointer!r} does not exist", path=pointer)
        parent[last] = value
    elif isinstance(parent, list):
        parent[_array_index(last, len(parent), pointer=pointer, op_index=op_index, allow_end=False)] = value
    else:
        raise PatchError(
            f"operation {op_index}: {pointer!r}: the parent is a {_type_name(parent)}, which has no members",
            path=pointer,
        )
    return doc


def apply_json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch atomically: all operations succeed or none is applied.

    Supports ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test``; pointers use
    RFC 6901 escapes (``~0``, ``~1``) and ``-`` appends to an array in ``add``/``move``/``copy``.
    A failed ``test`` raises :class:`PatchTestFailed` with kube-apiserver's wording
    (``testing value /metadata/resourceVersion failed``); every other failure raises
    :class:`PatchError`. The path of a ``test`` must exist (RFC 6902 §4.6), and negative
    array indices are refused (RFC 6901), both stricter than evanphx/json-patch.
    """
    if not isinstance(target, dict):
        raise PatchError(f"the patched document must be a JSON object, not {_type_name(target)}")
    if not isinstance(operations, list):
        raise PatchError(f"a JSON patch must be a list of operations, not {_type_name(operations)}")
    doc: Any = copy.deepcopy(target)
    for index, operation in enumerate(operations):
        doc = _apply_json_patch_operation(doc, operation, index)
    if not isinstance(doc, dict):
        raise PatchError(f"the patched document must remain a JSON object, not become a {_type_name(doc)}")
    return doc


def _apply_json_patch_operation(doc: Any, operation: Any, index: int) -> Any:
    if not isinstance(operation, dict):
        raise PatchError(f"operation {index}: must be a JSON object, not {_type_name(operation)}")
    op = operation.get("op")
    if op not in _JSON_PATCH_OPS:
        raise PatchError(
            f"operation {index}: unknown op {op!r}; expected one of {', '.join(_JSON_PATCH_OPS)}",
            path=str(operation.get("path", "")),
        )
    if "path" not in operation:
        raise PatchError(f"operation {index} ({op}): missing 'path'")
    pointer = operation["path"]
    tokens = _parse_pointer(pointer, member="path", op_index=index)
    if op in ("add", "replace", "test") and "value" not in operation:
        raise PatchError(f"operation {index} ({op} {pointer}): missing 'value'", path=pointer)
    value = copy.deepcopy(operation.get("value"))

    if op == "add":
        return _add(doc, tokens, value, pointer=pointer, op_index=index)
    if op == "remove":
        _remove(doc, tokens, pointer=pointer, op_index=index)
        return doc
    if op == "replace":
        return _replace(doc, tokens, value, pointer=pointer, op_index=index)
    if op == "test":
        actual = _get(doc, tokens, pointer=pointer, op_index=index)
        if not _json_equal(actual, value):
            raise PatchTestFailed(
                f"testing value {pointer} failed: expected {json.dumps(value)}, found {json.dumps(actual)}",
                path=pointer,
            )
        return doc

    # move and copy
    if "from" not in operation:
        raise PatchError(f"operation {index} ({op} {pointer}): missing 'from'", path=pointer)
    source = operation["from"]
    source_tokens = _parse_pointer(source, member="from", op_index=index)
    if op == "move":
        if source_tokens == tokens:
            _get(doc, source_tokens, pointer=source, op_index=index)
            return doc
        if tokens[: len(source_tokens)] == source_tokens:
            raise PatchError(
                f"operation {index}: cannot move {source!r} into its own child {pointer!r}", path=pointer
            )
        moved = _remove(doc, source_tokens, pointer=source, op_index=index)
        return _add(doc, tokens, moved, pointer=pointer, op_index=index)
    copied = copy.deepcopy(_get(doc, source_tokens, pointer=source, op_index=index))
    return _add(doc, tokens, copied, pointer=pointer, op_index=index)


# --------------------------------------------------------------------------------------
# Patch metadata: how each field merges
# --------------------------------------------------------------------------------------

ListType = Literal["atomic", "set", "map"]
MapType = Literal["atomic", "granular"]


@dataclass(frozen=True)
class FieldRule:
    """How one field merges, in both merge flavours Kubernetes has.

    ``strategy`` and ``merge_key`` are the Go struct tags ``patchStrategy`` /
    ``patchMergeKey`` (OpenAPI ``x-kubernetes-patch-strategy`` / ``-merge-key``) that
    strategic merge patch reads. ``list_type``, ``list_map_keys`` and ``map_type`` are the
    ``+listType`` / ``+listMapKey`` / ``+mapType`` markers (``x-kubernetes-list-type`` …)
    that server-side apply reads. The two disagree on purpose in a few places, e.g. a Job's
    ``status.conditions`` merge by ``type`` in a strategic patch but are atomic for apply,
    and container ``ports`` merge by ``containerPort`` alone in a strategic patch but by
    ``containerPort`` + ``protocol`` for apply. ``key_defaults`` lets apply identify list
    items that omit a defaulted key (``protocol: TCP``).
    """

    strategy: tuple[str, ...] = ()
    merge_key: str | None = None
    list_type: ListType | None = None
    list_map_keys: tuple[str, ...] = ()
    key_defaults: tuple[tuple[str, Any], ...] = ()
    map_type: MapType | None = None

    @property
    def merges_list(self) -> bool:
        """Strategic merge patch merges this list (by ``merge_key``, or as a set of scalars)."""
        return "merge" in self.strategy

    @property
    def replaces_map(self) -> bool:
        """Strategic merge patch replaces this map instead of merging it."""
        return "replace" in self.strategy

    @property
    def is_list(self) -> bool:
        """The field is declared to hold a list (so anything else there is an error)."""
        return self.merges_list or self.list_type is not None

    def default_for(self, key: str) -> Any:
        for name, value in self.key_defaults:
            if name == key:
                return value
        return _MISSING


def _merge_by(
    key: str,
    *,
    apply_keys: tuple[str, ...] | None = None,
    apply_list_type: ListType = "map",
    retain_keys: bool = False,
    key_defaults: Mapping[str, Any] | None = None,
) -> FieldRule:
    """A list of objects that strategic merge patch merges by ``key`` (a ``patchMergeKey``)."""
    return FieldRule(
        strategy=("merge", "retainKeys") if retain_keys else ("merge",),
        merge_key=key,
        list_type=apply_list_type,
        list_map_keys=(apply_keys or (key,)) if apply_list_type == "map" else (),
        key_defaults=tuple(sorted((key_defaults or {}).items())),
    )


def _list_map(*keys: str) -> FieldRule:
    """A list that server-side apply merges by ``keys`` but strategic merge patch replaces."""
    return FieldRule(list_type="map", list_map_keys=keys)


#: A list of scalars that both flavours merge as a set (``metadata.finalizers``).
_MERGE_SET: Final = FieldRule(strategy=("merge",), list_type="set")
#: A list of scalars that apply merges as a set; strategic merge patch replaces it.
_SET: Final = FieldRule(list_type="set")
#: A list replaced as a whole by both flavours (the default; written out where it matters).
_ATOMIC: Final = FieldRule(list_type="atomic")
#: An object apply replaces as a whole (``+mapType=atomic``, e.g. label selectors).
_ATOMIC_MAP: Final = FieldRule(map_type="atomic")
#: An object whose fields a ``$retainKeys`` directive prunes (``patchStrategy=retainKeys``).
_RETAIN_KEYS_STRATEGY: Final = FieldRule(strategy=("retainKeys",))
#: An object strategic merge patch replaces as a whole (``patchStrategy=replace``).
_REPLACE_MAP: Final = FieldRule(strategy=("replace",), map_type="atomic")

_DEFAULT_RULE: Final = FieldRule()

Table = Mapping[str, "FieldRule | PatchMeta"]


class PatchMeta:
    """How lists (and maps) at each field path merge: a tree of :class:`FieldRule`.

    Fields not described merge the default way: objects merge key by key, lists are
    replaced (strategic merge patch) or atomic (server-side apply). ``field(name)`` steps
    into an object field, ``element()`` into list items; both return an empty meta for
    undescribed paths. Treat instances as immutable.
    """

    __slots__ = ("rule", "_fields", "_item", "_values")

    def __init__(
        self,
        rule: FieldRule = _DEFAULT_RULE,
        fields: Mapping[str, PatchMeta] | None = None,
        item: PatchMeta | None = None,
        values: PatchMeta | None = None,
    ) -> None:
        self.rule = rule
        self._fields: dict[str, PatchMeta] = dict(fields or {})
        self._item = item
        self._values = values

    def field(self, name: str) -> PatchMeta:
        """The meta of object field ``name`` (or of any value, for maps with free keys)."""
        found = self._fields.get(name)
        if found is not None:
            return found
        return self._values if self._values is not None else _EMPTY_META

    def element(self) -> PatchMeta:
        """The meta of the items of this list."""
        return self._item if self._item is not None else _EMPTY_META

    def rule_at(self, path: str) -> FieldRule:
        """The rule at a dotted path such as ``spec.template.spec.containers[].env``."""
        node: PatchMeta = self
        for step in _parse_table_path(path):
            node = node.element() if step == "[]" else node.field(step)
        return node.rule

    def described_paths(self, prefix: str = "") -> Iterator[tuple[str, FieldRule]]:
        """Every path with a non-default rule, for tests and debugging (no recursion cycles)."""
        yield from self._described(prefix, set())

    def _described(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, FieldRule]]:
        if id(self) in seen:
            return
        seen = seen | {id(self)}
        if prefix and self.rule != _DEFAULT_RULE:
            yield prefix, self.rule
        for name, child in sorted(self._fields.items()):
            yield from child._described(_join(prefix, name), seen)
        if self._item is not None:
            yield from self._item._described(prefix + "[]", seen)
        if self._values is not None:
            yield from self._values._described(_join(prefix, "*"), seen)

    def __repr__(self) -> str:
        rows = ", ".join(f"{path}: {rule}" for path, rule in self.described_paths())
        return f"PatchMeta({rows})"

    @classmethod
    def from_table(cls, table: Table) -> PatchMeta:
        """Build the tree from rows ``"dotted.path[].with.*.steps" → FieldRule | PatchMeta``.

        ``[]`` steps into list items, ``*`` into the values of a map with free keys. A
        ``PatchMeta`` value grafts a whole subtree at that path.
        """
        root = _MetaBuilder()
        for path, value in table.items():
            node = root
            for step in _parse_table_path(path):
                node = node.child(step)
            if isinstance(value, PatchMeta):
                node.graft = value
            else:
                node.rule = value
        return root.build()


_EMPTY_META: Final = PatchMeta()


def _parse_table_path(path: str) -> list[str]:
    steps: list[str] = []
    for part in path.split("."):
        if not part:
            continue
        name = part
        items = 0
        while name.endswith("[]"):
            name = name[:-2]
            items += 1
        if name:
            steps.append(name)
        steps.extend(["[]"] * items)
    return steps


@dataclass
class _MetaBuilder:
    rule: FieldRule = _DEFAULT_RULE
    children: dict[str, _MetaBuilder] = field(default_factory=dict)
    graft: PatchMeta | None = None

    def child(self, step: str) -> _MetaBuilder:
        return self.children.setdefault(step, _MetaBuilder())

    def build(self) -> PatchMeta:
        if self.graft is not None:
            if self.children or self.rule != _DEFAULT_RULE:
                raise ValueError("a grafted PatchMeta cannot be combined with rows below it")
            return self.graft
        fields = {name: node.build() for name, node in self.children.items() if name not in ("[]", "*")}
        item = self.children["[]"].build() if "[]" in self.children else None
        values = self.children["*"].build() if "*" in self.children else None
        return PatchMeta(self.rule, fields, item, values)


def _under(prefix: str, table: Table) -> dict[str, FieldRule | PatchMeta]:
    """Rows of ``table`` moved below ``prefix`` (to embed a shared struct such as PodSpec)."""
    return {f"{prefix}.{path}": rule for path, rule in table.items()}


# --------------------------------------------------------------------------------------
# Built-in kinds: the patch metadata of Kubernetes 1.37 (k8s.io/api struct tags)
# --------------------------------------------------------------------------------------
# One row per field that does not merge the default way (objects merge key by key; lists
# are replaced by a strategic merge patch and atomic for apply). A few default-atomic lists
# are written out because users ask about them (tolerations, envFrom, RBAC rules).
# tests/local/test_patching.py checks every row, and every merging field of these kinds,
# against the OpenAPI schema of Kubernetes 1.37.

_OBJECT_META: Final[Table] = {
    # labels and annotations are plain maps: merged key by key, null deletes a key.
    "ownerReferences": _merge_by("uid"),
    "ownerReferences[]": _ATOMIC_MAP,
    "finalizers": _MERGE_SET,
    "managedFields": _ATOMIC,
}

_CONTAINER: Final[Table] = {
    "env": _merge_by("name"),
    "env[].valueFrom.configMapKeyRef": _ATOMIC_MAP,
    "env[].valueFrom.fieldRef": _ATOMIC_MAP,
    "env[].valueFrom.fileKeyRef": _ATOMIC_MAP,
    "env[].valueFrom.resourceFieldRef": _ATOMIC_MAP,
    "env[].valueFrom.secretKeyRef": _ATOMIC_MAP,
    "envFrom": _ATOMIC,
    # A strategic merge patch can only merge by one key, so two ports differing only in
    # protocol collide there (kubernetes#39188); apply keys them by both.
    "ports": _merge_by(
        "containerPort", apply_keys=("containerPort", "protocol"), key_defaults={"protocol": "TCP"}
    ),
    "volumeMounts": _merge_by("mountPath"),
    "volumeMounts[].bindMountOptions": _SET,
    "volumeDevices": _merge_by("devicePath"),
    "resources.claims": _list_map("name"),
}

_PVC_SPEC: Final[Table] = {
    "dataSource": _ATOMIC_MAP,
    "selector": _ATOMIC_MAP,
}

_SECRET_REFS_OF_VOLUME_SOURCES: Final = (
    "cephfs.secretRef",
    "cinder.secretRef",
    "csi.nodePublishSecretRef",
    "flexVolume.secretRef",
    "iscsi.secretRef",
    "rbd.secretRef",
    "scaleIO.secretRef",
    "storageos.secretRef",
)

_POD_SPEC: Final[Table] = {
    "containers": _merge_by("name"),
    **_under("containers[]", _CONTAINER),
    "initContainers": _merge_by("name"),
    **_under("initContainers[]", _CONTAINER),
    "ephemeralContainers": _merge_by("name"),
    **_under("ephemeralContainers[]", _CONTAINER),
    "volumes": _merge_by("name", retain_keys=True),
    **{f"volumes[].{ref}": _ATOMIC_MAP for ref in _SECRET_REFS_OF_VOLUME_SOURCES},
    **_under("volumes[].ephemeral.volumeClaimTemplate.metadata", _OBJECT_META),
    **_under("volumes[].ephemeral.volumeClaimTemplate.spec", _PVC_SPEC),
    "imagePullSecrets": _merge_by("name"),
    "imagePullSecrets[]": _ATOMIC_MAP,
    "hostAliases": _merge_by("ip"),
    "tolerations": _ATOMIC,
    "topologySpreadConstraints": _merge_by("topologyKey", apply_keys=("topologyKey", "whenUnsatisfiable")),
    "topologySpreadConstraints[].labelSelector": _ATOMIC_MAP,
    "resourceClaims": _merge_by("name", retain_keys=True),
    "resources.claims": _list_map("name"),
    "schedulingGates": _merge_by("name"),
    "evictionResponders": _merge_by("name"),
    "evictionResponders[]": _ATOMIC_MAP,
    "nodeSelector": _ATOMIC_MAP,
    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution": _ATOMIC_MAP,
}

_POD_TEMPLATE_SPEC: Final[Table] = {
    **_under("metadata", _OBJECT_META),
    **_under("spec", _POD_SPEC),
}

_POD_STATUS: Final[Table] = {
    "conditions": _merge_by("type"),
    "podIPs": _merge_by("ip"),
    "hostIPs": _merge_by("ip", apply_list_type="atomic"),
    "resourceClaimStatuses": _merge_by("name", retain_keys=True),
    "nodeAllocatableResourceClaimStatuses": _merge_by("resourceClaimName"),
    "nodeAllocatableResourceClaimStatuses[].containers": _SET,
    "nodeAllocatableResourceClaimStatuses[].mapping": _merge_by("name"),
    "nodeAllocatableResourceClaimStatuses[].overhead": _merge_by("name"),
    "resources.claims": _list_map("name"),
    "volumeHealth": _list_map("name"),
    "volumeHealth[].healthConditions": _merge_by("status", apply_keys=("status", "reason")),
}

_CONDITIONS_BY_TYPE: Final[Table] = {"conditions": _merge_by("type")}

_JOB_SPEC: Final[Table] = {
    "selector": _ATOMIC_MAP,
    **_under("template", _POD_TEMPLATE_SPEC),
    "podFailurePolicy.rules": _ATOMIC,
    "scheduling.resourceClaims": _merge_by("name"),
}

_WORKLOAD_SPEC: Final[Table] = {
    "selector": _ATOMIC_MAP,
    **_under("template", _POD_TEMPLATE_SPEC),
}

_BUILTIN_TABLES: Final[dict[tuple[str, str], Table]] = {
    # core/v1
    ("v1", "Pod"): {**_under("spec", _POD_SPEC), **_under("status", _POD_STATUS)},
    ("v1", "PodTemplate"): _under("template", _POD_TEMPLATE_SPEC),
    ("v1", "Service"): {
        "spec.ports": _merge_by("port", apply_keys=("port", "protocol"), key_defaults={"protocol": "TCP"}),
        "spec.selector": _ATOMIC_MAP,
        **_under("status", _CONDITIONS_BY_TYPE),
    },
    ("v1", "ConfigMap"): {},
    ("v1", "Secret"): {},
    ("v1", "Namespace"): _under("status", _CONDITIONS_BY_TYPE),
    ("v1", "Event"): {"involvedObject": _ATOMIC_MAP, "related": _ATOMIC_MAP},
    ("v1", "ServiceAccount"): {"secrets": _merge_by("name"), "secrets[]": _ATOMIC_MAP},
    ("v1", "Endpoints"): {"subsets": _ATOMIC},
    ("v1", "Node"): {
        "spec.podCIDRs": _MERGE_SET,
        "spec.podPreemptionPolicy.disableResizePreemption": _SET,
        "spec.taints": _ATOMIC,
        "status.addresses": _merge_by("type"),
        **_under("status", _CONDITIONS_BY_TYPE),
    },
    ("v1", "PersistentVolumeClaim"): {
        **_under("spec", _PVC_SPEC),
        **_under("status", _CONDITIONS_BY_TYPE),
        "status.healthStatus.healthConditions": _merge_by("status", apply_keys=("status", "reason")),
    },
    # batch/v1
    ("batch/v1", "Job"): {
        **_under("spec", _JOB_SPEC),
        "status.conditions": _merge_by("type", apply_list_type="atomic"),
        "status.uncountedTerminatedPods.failed": _SET,
        "status.uncountedTerminatedPods.succeeded": _SET,
    },
    ("batch/v1", "CronJob"): {
        **_under("spec.jobTemplate.metadata", _OBJECT_META),
        **_under("spec.jobTemplate.spec", _JOB_SPEC),
        "status.active": _ATOMIC,
    },
    # apps/v1
    ("apps/v1", "Deployment"): {
        **_under("spec", _WORKLOAD_SPEC),
        "spec.strategy": _RETAIN_KEYS_STRATEGY,
        **_under("status", _CONDITIONS_BY_TYPE),
    },
    ("apps/v1", "StatefulSet"): {
        **_under("spec", _WORKLOAD_SPEC),
        "spec.volumeClaimTemplates": _ATOMIC,
        **_under("status", _CONDITIONS_BY_TYPE),
    },
    ("apps/v1", "DaemonSet"): {**_under("spec", _WORKLOAD_SPEC), **_under("status", _CONDITIONS_BY_TYPE)},
    ("apps/v1", "ReplicaSet"): {**_under("spec", _WORKLOAD_SPEC), **_under("status", _CONDITIONS_BY_TYPE)},
    # coordination.k8s.io/v1
    ("coordination.k8s.io/v1", "Lease"): {},
    # rbac.authorization.k8s.io/v1: rules and subjects are atomic, a PATCH replaces them whole.
    ("rbac.authorization.k8s.io/v1", "Role"): {"rules": _ATOMIC},
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {
        "rules": _ATOMIC,
        "aggregationRule.clusterRoleSelectors": _ATOMIC,
    },
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): {"roleRef": _ATOMIC_MAP, "subjects": _ATOMIC},
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): {"roleRef": _ATOMIC_MAP, "subjects": _ATOMIC},
    # apiextensions.k8s.io/v1: `kubectl apply -f crds/` patches CRDs strategically.
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): {
        "spec.versions": _ATOMIC,
        "status.conditions": _list_map("type"),
    },
    # a few more kinds that `kubectl apply` commonly sends
    ("policy/v1", "PodDisruptionBudget"): {
        "spec.selector": _REPLACE_MAP,
        **_under("status", _CONDITIONS_BY_TYPE),
    },
    ("networking.k8s.io/v1", "Ingress"): {
        "spec.defaultBackend.resource": _ATOMIC_MAP,
        "spec.defaultBackend.service.port": _ATOMIC_MAP,
    },
    ("networking.k8s.io/v1", "NetworkPolicy"): {"spec.podSelector": _ATOMIC_MAP},
    ("events.k8s.io/v1", "Event"): {"regarding": _ATOMIC_MAP, "related": _ATOMIC_MAP},
}


@cache
def patch_meta_for_builtin(api_version: str, kind: str) -> PatchMeta | None:
    """The patch metadata of a built-in kind, or ``None`` when there is none.

    ``None`` means strategic merge patch is not available: for custom resources that is
    what Kubernetes does too (415 Unsupported Media Type); for a built-in kind missing from
    the table the server must refuse the same way rather than merge lists wrongly.
    ``metadata`` rules (ownerReferences by uid, finalizers as a set) apply to every kind.
    """
    table = _BUILTIN_TABLES.get((api_version, kind))
    if table is None:
        return None
    return PatchMeta.from_table({**_under("metadata", _OBJECT_META), **table})


# --------------------------------------------------------------------------------------
# CRD structural schemas
# --------------------------------------------------------------------------------------


def patch_meta_from_schema(openapi_v3_schema: dict[str, Any]) -> PatchMeta:
    """The apply metadata of a custom resource, from its structural ``openAPIV3Schema``.

    Reads ``x-kubernetes-list-type`` (``atomic``, the default; ``set``; ``map``),
    ``x-kubernetes-list-map-keys`` (with each key's ``default``, which identifies items
    that omit it) and ``x-kubernetes-map-type`` through ``properties``, ``items`` and
    ``additionalProperties``. ``metadata`` always gets the ObjectMeta rules, as the API
    server gives every custom resource the standard ObjectMeta. There is no strategic
    merge metadata: Kubernetes refuses strategic merge patches for custom resources.
    """
    if not isinstance(openapi_v3_schema, dict):
        raise PatchError(f"an OpenAPI v3 schema must be an object, not {_type_name(openapi_v3_schema)}")
    root = _meta_from_schema(openapi_v3_schema, "")
    metadata = PatchMeta.from_table(_OBJECT_META)
    fields = dict(root._fields)
    fields["metadata"] = metadata
    return PatchMeta(root.rule, fields, root._item, root._values)


def _meta_from_schema(schema: Mapping[str, Any], path: str) -> PatchMeta:
    list_type = schema.get("x-kubernetes-list-type")
    map_type = schema.get("x-kubernetes-map-type")
    keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
    items = schema.get("items") if isinstance(schema.get("items"), dict) else None
    if list_type not in (None, "atomic", "set", "map"):
        raise PatchError(f"{_display(path)}: unknown x-kubernetes-list-type {list_type!r}", path=path)
    if map_type not in (None, "atomic", "granular"):
        raise PatchError(f"{_display(path)}: unknown x-kubernetes-map-type {map_type!r}", path=path)
    if list_type == "map" and not keys:
        raise PatchError(
            f"{_display(path)}: x-kubernetes-list-type: map needs x-kubernetes-list-map-keys", path=path
        )
    defaults: list[tuple[str, Any]] = []
    if list_type == "map" and items is not None:
        for key in keys:
            key_schema = (items.get("properties") or {}).get(key) or {}
            if "default" in key_schema:
                defaults.append((key, key_schema["default"]))
    rule = FieldRule(
        list_type=list_type,
        list_map_keys=keys if list_type == "map" else (),
        key_defaults=tuple(defaults),
        map_type=map_type,
    )
    fields = {
        name: _meta_from_schema(sub, _join(path, name))
        for name, sub in (schema.get("properties") or {}).items()
        if isinstance(sub, dict)
    }
    item = _meta_from_schema(items, path + "[]") if items is not None else None
    extra = schema.get("additionalProperties")
    values = _meta_from_schema(extra, _join(path, "*")) if isinstance(extra, dict) else None
    return PatchMeta(rule, fields, item, values)


# --------------------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------------------

_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS_DIRECTIVE: Final = "$retainKeys"
_SET_ORDER: Final = "$setElementOrder/"
_DELETE_FROM: Final = "$deleteFromPrimitiveList/"


class _Deleted:
    """The value of a map patched with ``$patch: delete``: its key disappears."""


_DELETED: Final = _Deleted()


def _is_directive_key(key: str) -> bool:
    return key in (_DIRECTIVE, _RETAIN_KEYS_DIRECTIVE) or key.startswith((_SET_ORDER, _DELETE_FROM))


def apply_strategic_merge_patch(
    target: dict[str, Any], patch: dict[str, Any], meta: PatchMeta
) -> dict[str, Any]:
    """Apply a strategic merge patch as kube-apiserver does, using ``meta`` for list strategies.

    Maps merge key by key and ``null`` deletes a key. Lists whose field merges
    (``patchStrategy: merge``) merge items by their ``patchMergeKey`` — or as a set of
    scalars for lists like ``metadata.finalizers`` — and every other list is replaced.
    Directives: ``$patch: replace|delete`` in a map (``merge`` is refused there, as by
    kube-apiserver), ``$patch: delete`` on a list item (by merge key), ``$patch: replace`` as
    a list item (replace the whole list), ``$setElementOrder/<field>`` (the order real
    ``kubectl apply`` wants; precedence: that list, then the patch, then the live object),
    ``$deleteFromPrimitiveList/<field>`` and ``$retainKeys``. Directives are never stored.

    Without ``$setElementOrder``, the items a patch names keep the patch's order and the
    others their live order, interleaved by live position; an item new to the list goes
    before the live items not yet placed, so a patch adding one container lists it first
    (as ``kubectl patch`` shows on a real cluster).
    """
    if not isinstance(target, dict):
        raise PatchError(f"the patched document must be a JSON object, not {_type_name(target)}")
    if not isinstance(patch, dict):
        raise PatchError(f"a strategic merge patch must be a JSON object, not {_type_name(patch)}")
    result = _smp_map(copy.deepcopy(target), patch, meta, "")
    return {} if isinstance(result, _Deleted) else result


def _smp_map(original: dict[str, Any], patch: dict[str, Any], meta: PatchMeta, path: str) -> Any:
    """Merge ``patch`` into ``original`` (owned by us: mutated and returned)."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            return _raw({k: v for k, v in patch.items() if k != _DIRECTIVE})
        if directive == "delete":
            return _DELETED
        raise PatchError(
            f"{_display(path)}: unknown patch type {directive!r} in a map: kube-apiserver accepts "
            f"'$patch: replace' or '$patch: delete' here",
            path=path,
        )
    result = original

    if _RETAIN_KEYS_DIRECTIVE in patch:
        _apply_retain_keys(result, patch, path)

    handled: set[str] = {_RETAIN_KEYS_DIRECTIVE}
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        name = key[len(_SET_ORDER) :]
        if not name:
            raise PatchError(f"{_display(path)}: {key!r} does not name a list field", path=path)
        handled.update((key, name))
        child_path = _join(path, name)
        patch_list = patch.get(name, _MISSING)
        if patch_list is None:
            raise PatchError(
                f"{child_path}: a list with {key!r} cannot also be deleted with null", path=child_path
            )
        merged = _smp_ordered_list(
            result.get(name, _MISSING), patch_list, patch[key], meta.field(name), child_path, key
        )
        if merged is _MISSING:
            continue
        if merged:
            result[name] = merged
        else:
            result.pop(name, None)

    deletions: list[tuple[str, Any]] = []
    for key, value in patch.items():
        if key in handled:
            continue
        if key.startswith(_DELETE_FROM):
            deletions.append((key, value))
            continue
        if key.startswith("$"):
            raise PatchError(
                f"{_join(path, key)}: unknown patch directive {key!r}; kube-apiserver understands "
                f"$patch, $retainKeys, $setElementOrder/<field> and $deleteFromPrimitiveList/<field>",
                path=_join(path, key),
            )
        child_path = _join(path, key)
        child_meta = meta.field(key)
        if value is None:
            result.pop(key, None)
            continue
        merged = _smp_value(result.get(key, _MISSING), value, child_meta, child_path)
        if isinstance(merged, _Deleted) or merged == [] and child_meta.rule.merges_list:
            # A map deleted with `$patch: delete`, or a merging list emptied by its
            # directives: the typed object kube-apiserver decodes has no such field.
            result.pop(key, None)
        else:
            result[key] = merged

    for key, values in deletions:
        _delete_from_primitive_list(result, key, values, meta, path)
    return result


def _apply_retain_keys(result: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    retain = patch[_RETAIN_KEYS_DIRECTIVE]
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise PatchError(
            f"{_display(path)}: invalid patch format of retainKeys: $retainKeys must be a list of field names",
            path=path,
        )
    for key, value in patch.items():
        if value is None or _is_directive_key(key):
            continue
        if key not in retain:
            raise PatchError(
                f"{_join(path, key)}: invalid patch format of retainKeys: the patch sets {key!r} "
                f"but $retainKeys {retain} does not keep it",
                path=_join(path, key),
            )
    for key in [k for k in result if k not in retain]:
        del result[key]


def _smp_value(original: Any, value: Any, meta: PatchMeta, path: str) -> Any:
    """The new value of one field: merged, replaced, or new."""
    rule = meta.rule
    if rule.is_list and not isinstance(value, list):
        raise PatchError(
            f"{path}: expected a list, got {_type_name(value)} (the field holds a list in this kind)",
            path=path,
        )
    if (
        original is _MISSING
        or type(original) is not type(value)
        and not (isinstance(original, dict) and isinstance(value, dict))
    ):
        # Nothing to merge with: take the patch value as the typed decoder would keep it.
        return _fresh(value, meta, path)
    if isinstance(value, dict):
        if rule.replaces_map:
            return _raw(value)
        return _smp_map(original, value, meta, path)
    if isinstance(value, list):
        if rule.merges_list:
            return _smp_list(original, value, meta, path)
        return _raw(value)
    return copy.deepcopy(value)


def _fresh(value: Any, meta: PatchMeta, path: str) -> Any:
    """A patch value that merges with nothing: merged into an empty value of its shape."""
    if isinstance(value, dict):
        return _smp_value({}, value, meta, path)
    if isinstance(value, list):
        return _smp_value([], value, meta, path) if meta.rule.merges_list else _raw(value)
    return copy.deepcopy(value)


def _raw(value: Any) -> Any:
    """A value stored as sent, minus directive keys: a typed object has no fields for them."""
    if isinstance(value, dict):
        return {k: _raw(v) for k, v in value.items() if not _is_directive_key(k)}
    if isinstance(value, list):
        return [_raw(v) for v in value]
    return value


def _smp_list(original: list[Any], patch: list[Any], meta: PatchMeta, path: str) -> list[Any]:
    """Merge a patch list into a merging list (``patchStrategy: merge``), ordering as the server does."""
    merged, patch_items = _smp_list_merge(original, patch, meta, path)
    key = meta.rule.merge_key
    return _normalize_order(merged, patch_items, original, key, path)


def _smp_list_merge(
    original: list[Any], patch: list[Any], meta: PatchMeta, path: str
) -> tuple[list[Any], list[Any]]:
    """The merged items (unordered) and the patch items left once directives are applied."""
    key = meta.rule.merge_key
    if not original and not patch:
        return [], []
    _check_uniform(original, patch, key, path)
    if key is None:
        merged: list[Any] = []
        seen: set[Any] = set()
        for item in [*original, *patch]:
            identity = _json_key(item)
            if identity not in seen:
                seen.add(identity)
                merged.append(copy.deepcopy(item))
        return merged, patch

    items = list(original)
    plain: list[dict[str, Any]] = []
    replace = False
    for index, item in enumerate(patch):
        item_path = _item_path(path, item, key, index)
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise PatchError(
                    f"{item_path}: a list item with '$patch: delete' must name its merge key {key!r}",
                    path=item_path,
                )
            doomed = _json_key(item[key])
            items = [x for x in items if _json_key(x.get(key, _MISSING)) != doomed]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError(
                f"{item_path}: merging lists cannot yet be specified in the patch ('$patch: merge')",
                path=item_path,
            )
        else:
            raise PatchError(
                f"{item_path}: unknown patch type {directive!r} in a list item: kube-apiserver accepts "
                f"'$patch: delete' (with the merge key) or '$patch: replace'",
                path=item_path,
            )
    if replace:
        replaced = [_raw(item) for item in plain]
        return replaced, []

    element = meta.element()
    for index, item in enumerate(plain):
        item_path = _item_path(path, item, key, index)
        if key not in item:
            raise PatchError(
                f"{item_path}: list item {json.dumps(item, sort_keys=True)} does not contain "
                f"declared merge key {key!r}",
                path=item_path,
            )
        wanted = _json_key(item[key])
        position = next((i for i, x in enumerate(items) if _json_key(x.get(key, _MISSING)) == wanted), None)
        if position is None:
            fresh = _smp_value({}, item, element, item_path)
            if not isinstance(fresh, _Deleted):
                items.append(fresh)
        else:
            merged_item = _smp_value(items[position], item, element, item_path)
            if isinstance(merged_item, _Deleted):
                del items[position]
            else:
                items[position] = merged_item
    return items, plain


def _check_uniform(original: list[Any], patch: list[Any], key: str | None, path: str) -> None:
    """Merging lists hold objects (with a merge key) or scalars (without): never a mix."""
    for where, items in (("live object", original), ("patch", patch)):
        for index, item in enumerate(items):
            if isinstance(item, list):
                raise PatchError(f"{path}[{index}]: lists of lists cannot be merged ({where})", path=path)
            if key is not None and not isinstance(item, dict):
                raise PatchError(
                    f"{path}[{index}]: expected an object with merge key {key!r}, "
                    f"got {_type_name(item)} ({where})",
                    path=path,
                )
            if key is None and isinstance(item, dict):
                raise PatchError(
                    f"{path}[{index}]: cannot merge a list of objects without a merge key ({where}); "
                    f"this list merges as a set of scalars",
                    path=path,
                )


def _identity(item: Any, key: str | None) -> Any:
    """What identifies a list item: its merge key's value, or the scalar itself."""
    if key is None:
        return _json_key(item)
    return _json_key(item.get(key, _MISSING) if isinstance(item, dict) else _MISSING)


def _normalize_order(
    merged: list[Any], order: list[Any], server_order: list[Any], key: str | None, path: str
) -> list[Any]:
    """Order merged items as kube-apiserver does (its ``normalizeElementOrder``).

    Items named in ``order`` (the patch list, or ``$setElementOrder``) keep that relative
    order; the other items keep their live order; the two sequences interleave by live
    position, and an item that is not live goes before the live items still pending.
    """
    wanted: dict[Any, int] = {}
    for i, x in enumerate(order):
        wanted.setdefault(_identity(x, key), i)
    live: dict[Any, int] = {}
    for i, x in enumerate(server_order):
        live.setdefault(_identity(x, key), i)
    patch_items = sorted(
        (x for x in merged if _identity(x, key) in wanted), key=lambda x: wanted[_identity(x, key)]
    )
    server_only = sorted(
        (x for x in merged if _identity(x, key) not in wanted),
        key=lambda x: live.get(_identity(x, key), len(server_order)),
    )
    result: list[Any] = []
    left, right = deque(server_only), deque(patch_items)
    while left and right:
        left_at = live.get(_identity(left[0], key))
        right_at = live.get(_identity(right[0], key))
        if left_at is not None and right_at is not None and left_at < right_at:
            result.append(left.popleft())
        else:
            result.append(right.popleft())
    result.extend(left)
    result.extend(right)
    return result


def _smp_ordered_list(
    original: Any, patch_list: Any, set_order: Any, meta: PatchMeta, path: str, directive: str
) -> Any:
    """Merge a list that comes with ``$setElementOrder/<field>`` and order it by that list."""
    rule = meta.rule
    if not rule.merges_list:
        raise PatchError(
            f"{path}: {directive!r} applies only to lists that merge, and {path} is replaced "
            f"as a whole in this kind",
            path=path,
        )
    if not isinstance(set_order, list):
        raise PatchError(
            f"{path}: invalid patch format of setElementOrder list: {directive!r} must be a list", path=path
        )
    key = rule.merge_key
    for index, entry in enumerate(set_order):
        if key is not None and (not isinstance(entry, dict) or key not in entry):
            raise PatchError(
                f"{path}: {directive}[{index}] must be an object holding the merge key {key!r}", path=path
            )
        if key is None and isinstance(entry, dict | list):
            raise PatchError(f"{path}: {directive}[{index}] must be a scalar list value", path=path)
    if patch_list is not _MISSING and not isinstance(patch_list, list):
        raise PatchError(f"{path}: expected a list, got {_type_name(patch_list)}", path=path)
    if not isinstance(original, list) and patch_list is _MISSING:
        return _MISSING
    # A live value that is not a list is replaced, as for any type change.
    live: list[Any] = original if isinstance(original, list) else []
    patch_items: list[Any] = patch_list if isinstance(patch_list, list) else []
    _check_set_order_consistent(patch_items, set_order, key, path, directive)
    merged, _ = _smp_list_merge(live, patch_items, meta, path)
    return _normalize_order(merged, set_order, live, key, path)


def _check_set_order_consistent(
    patch_items: list[Any], set_order: list[Any], key: str | None, path: str, directive: str
) -> None:
    """The patch list must be a subsequence of ``$setElementOrder`` (deletions aside), as the server checks."""
    position = 0
    order = [_identity(x, key) for x in set_order]
    for item in patch_items:
        if isinstance(item, dict) and _DIRECTIVE in item:
            continue
        identity = _identity(item, key)
        while position < len(order) and order[position] != identity:
            position += 1
        if position == len(order):
            raise PatchError(
                f"{path}: the order in the patch list {json.dumps(patch_items)} doesn't match the "
                f"{directive} list {json.dumps(set_order)}",
                path=path,
            )
        position += 1


def _delete_from_primitive_list(
    result: dict[str, Any], key: str, values: Any, meta: PatchMeta, path: str
) -> None:
    name = key[len(_DELETE_FROM) :]
    child_path = _join(path, name)
    rule = meta.field(name).rule
    if not name:
        raise PatchError(f"{_display(path)}: {key!r} does not name a list field", path=path)
    if not rule.merges_list or rule.merge_key is not None:
        raise PatchError(
            f"{child_path}: {key!r} applies only to lists of scalars that merge (like "
            f"metadata.finalizers), and {child_path} is not one",
            path=child_path,
        )
    if not isinstance(values, list) or any(isinstance(v, dict | list) for v in values):
        raise PatchError(
            f"{child_path}: invalid patch format of deleteFromPrimitiveList: {key!r} must be a list of scalars",
            path=child_path,
        )
    current = result.get(name)
    if not isinstance(current, list):
        return
    doomed = {_json_key(v) for v in values}
    remaining = [v for v in current if _json_key(v) not in doomed]
    if remaining:
        result[name] = remaining
    else:
        result.pop(name)  # as the typed decoder leaves an emptied list: absent


# --------------------------------------------------------------------------------------
# Server-side apply (without managedFields)
# --------------------------------------------------------------------------------------


def apply_server_side(
    target: dict[str, Any] | None, applied: dict[str, Any], meta: PatchMeta
) -> dict[str, Any]:
    """Merge an applied configuration into the live object, as server-side apply merges.

    ``target`` ``None`` creates the object from ``applied``. Otherwise objects merge key by
    key (``x-kubernetes-map-type: atomic`` ones are replaced), lists follow their list type:
    ``map`` lists merge items by their list-map keys (a missing key takes its schema default,
    else it is an error), ``set`` lists merge as sets of scalars, ``atomic`` lists (the
    default) are replaced. Items keep the applied order; live items that the configuration
    does not mention stay at their place. A ``null`` in the configuration is stored as
    ``null``, as structured-merge-diff does; the caller's schema step decides what a null
    means for the kind.

    Known gap, by design: there is no ``managedFields`` tracking, so a field that an earlier
    apply set and this one omits is *kept* (real server-side apply removes it when no other
    manager owns it), and there are no conflicts between field managers.
    """
    if not isinstance(applied, dict):
        raise PatchError(f"an applied configuration must be a JSON object, not {_type_name(applied)}")
    if target is not None and not isinstance(target, dict):
        raise PatchError(f"the live object must be a JSON object, not {_type_name(target)}")
    result = _ssa_value(_MISSING if target is None else target, applied, meta, "")
    assert isinstance(result, dict)
    return result


def _ssa_value(live: Any, applied: Any, meta: PatchMeta, path: str) -> Any:
    rule = meta.rule
    if rule.is_list and applied is not None and not isinstance(applied, list):
        raise PatchError(f"{_display(path)}: expected list, got {_type_name(applied)}", path=path)
    if isinstance(applied, dict):
        if rule.map_type == "atomic" or not isinstance(live, dict):
            _validate_applied(applied, meta, path)
            return copy.deepcopy(applied)
        result = copy.deepcopy(live)
        for key, value in applied.items():
            result[key] = _ssa_value(live.get(key, _MISSING), value, meta.field(key), _join(path, key))
        return result
    if isinstance(applied, list):
        if rule.list_type in ("map", "set"):
            return _ssa_list(live if isinstance(live, list) else [], applied, meta, path)
        _validate_applied(applied, meta, path)
        return copy.deepcopy(applied)
    return copy.deepcopy(applied)


def _validate_applied(value: Any, meta: PatchMeta, path: str) -> None:
    """Check list keys below a value that replaces the live one, as apply validates it."""
    if isinstance(value, dict):
        for key, sub in value.items():
            child = meta.field(key)
            if child.rule.is_list and sub is not None and not isinstance(sub, list):
                raise PatchError(
                    f"{_join(path, key)}: expected list, got {_type_name(sub)}", path=_join(path, key)
                )
            _validate_applied(sub, child, _join(path, key))
    elif isinstance(value, list) and meta.rule.list_type in ("map", "set"):
        _index_list(value, meta.rule, path, "applied configuration")
        for index, item in enumerate(value):
            _validate_applied(item, meta.element(), f"{path}[{index}]")


def _list_key(item: Any, rule: FieldRule, path: str, where: str) -> Any:
    if rule.list_type == "set":
        if isinstance(item, dict | list):
            raise PatchError(
                f"{path}: a set (x-kubernetes-list-type: set) holds scalars, found {_type_name(item)} ({where})",
                path=path,
            )
        return _json_key(item)
    if not isinstance(item, dict):
        raise PatchError(
            f"{path}: items of a list-map (keyed by {', '.join(rule.list_map_keys)}) must be objects, "
            f"found {_type_name(item)} ({where})",
            path=path,
        )
    parts = []
    for name in rule.list_map_keys:
        value = item.get(name, _MISSING)
        if value is _MISSING or value is None:
            value = rule.default_for(name)
        if value is _MISSING:
            raise PatchError(
                f"{path}: associative list with keys has an element that omits key field {name!r} "
                f"(and doesn't have default value) ({where})",
                path=path,
            )
        parts.append(_json_key(value))
    return tuple(parts)


def _key_text(item: Any, rule: FieldRule) -> str:
    if rule.list_type == "set" or not isinstance(item, dict):
        return json.dumps(item)
    return ",".join(f"{k}={json.dumps(item.get(k, rule.default_for(k)))}" for k in rule.list_map_keys)


def _index_list(items: list[Any], rule: FieldRule, path: str, where: str) -> list[Any]:
    keys = []
    seen: set[Any] = set()
    for index, item in enumerate(items):
        key = _list_key(item, rule, f"{path}[{index}]", where)
        if key in seen:
            raise PatchError(
                f"{path}: duplicate entries for key [{_key_text(item, rule)}] in the {where}", path=path
            )
        seen.add(key)
        keys.append(key)
    return keys


def _ssa_list(live: list[Any], applied: list[Any], meta: PatchMeta, path: str) -> list[Any]:
    """Merge an associative list or a set, in structured-merge-diff's order.

    Applied items come in applied order; a live item the configuration does not mention
    stays right after the live items that precede it.
    """
    rule = meta.rule
    live_keys = _index_list(live, rule, path, "live object")
    applied_keys = _index_list(applied, rule, path, "applied configuration")
    live_by_key = dict(zip(live_keys, live, strict=True))
    applied_by_key = dict(zip(applied_keys, applied, strict=True))
    pending_shared = deque(k for k in applied_keys if k in live_by_key)
    element = meta.element()

    def merged(key: Any, index: int) -> Any:
        item_path = f"{path}[{index}]"
        if key not in applied_by_key:
            return copy.deepcopy(live_by_key[key])
        if rule.list_type == "set":
            return copy.deepcopy(applied_by_key[key])
        return _ssa_value(live_by_key.get(key, _MISSING), applied_by_key[key], element, item_path)

    result: list[Any] = []
    emitted: set[Any] = set()
    i = j = 0
    while i < len(live_keys) or j < len(applied_keys):
        if i < len(live_keys) and j < len(applied_keys):
            key = live_keys[i]
            if key == applied_keys[j]:
                result.append(merged(key, j))
                emitted.add(key)
                i += 1
                j += 1
                if pending_shared:
                    pending_shared.popleft()
                continue
            if key in applied_by_key and pending_shared and pending_shared[0] != key:
                i += 1  # the configuration places this one later
                continue
        if i < len(live_keys):
            key = live_keys[i]
            if key not in applied_by_key:
                result.append(merged(key, i))
                i += 1
                continue
            if key in emitted:
                i += 1
                continue
        if j < len(applied_keys):
            key = applied_keys[j]
            result.append(merged(key, j))
            emitted.add(key)
            j += 1
            if pending_shared and pending_shared[0] == key:
                pending_shared.popleft()
    return result
