"""`kubectl get` tables: the meta.k8s.io/v1 `Table` kube-apiserver answers to `Accept: ...;as=Table`.

kubectl does not format objects itself: it asks the server for a Table and prints its cells
(a `null` cell as ``<none>``). So the columns users see — the printer columns of our CRDs,
the READY/STATUS/RESTARTS of a pod — are whatever the server computes. This module computes
them as kube-apiserver does:

- custom resources: a Name column, then the CRD version's `additionalPrinterColumns`
  evaluated with client-go JSONPath semantics (only the first match is shown; a missing
  value is a null cell; `date` columns become ages like ``5m``); a CRD that declares no
  columns gets a single Age column, exactly as apiextensions-apiserver serves it;
- built-in kinds: the columns and cell logic of kube's printers (pkg/printers/internalversion)
  for the kinds the local cluster runs (pods, jobs, cronjobs, services, configmaps, secrets,
  namespaces, events, deployments and a few more); any other kind gets kube's default
  convertor (Name, Created At), which is what `kubectl get crd` shows.

Where kube-apiserver's defaulting would have filled a field the printer reads (service type,
port protocol, replicas, namespace phase), the printer assumes that default, so an
emulator that stores objects undefaulted still prints what a cluster prints.

The clock is a parameter (`now`): ages are exact in tests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeloop.local.openapi import builtin_definitions
from kubeloop.local.schema import go_json, go_kind, go_print

__all__ = ["JSONPathError", "columns_for", "find_jsonpath", "human_duration", "render_table"]

TABLE_API_VERSION = "meta.k8s.io/v1"

_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_CREATION_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
_STANDARD_COLUMN_KEYS = ("name", "type", "format", "description", "priority")


# --- durations and timestamps -------------------------------------------------------------------


def human_duration(delta: timedelta) -> str:
    """k8s.io/apimachinery's `duration.HumanDuration`: ~2-3 significant figures (``5m30s``,
    ``3h2m``, ``2d4h``, ``400d``, ``3y45d``); up to a second in the future reads ``0s``."""
    total = delta / timedelta(seconds=1)
    seconds = int(total)  # Go truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = int(total // 60)
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = int(total // 3600)
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as kube stores them, or None when absent or not one."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match[7] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    zone = match[8]
    try:
        stamp = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return stamp


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _since(value: Any, now: datetime) -> str:
    """kube's translateTimestampSince: the age of a timestamp, ``<unknown>`` when unset."""
    stamp = _parse_time(value)
    if stamp is None:
        return "<unknown>"
    return human_duration(_aware(now) - stamp)


# --- client-go JSONPath ------------------------------------------------------------------------


class JSONPathError(ValueError):
    """A JSONPath that does not parse, or fails on this data (kube then shows an empty cell)."""


@dataclass(frozen=True)
class _Node:
    kind: str  # field | recursive | wildcard | array | union | filter
    value: Any = None


def _parse_jsonpath(expression: str) -> list[_Node]:
    """Parse the inside of a `{...}` client-go JSONPath template (a printer column's jsonPath)."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    nodes: list[_Node] = []
    i, n = 0, len(text)
    if i < n and text[i] in "$@":
        i += 1
    while i < n:
        char = text[i]
        if text.startswith("..", i):
            nodes.append(_Node("recursive"))
            i += 1  # the second dot starts the field that follows
            if i + 1 < n and text[i + 1] == "[":
                i += 1
            continue
        if char == ".":
            i += 1
            start, name = i, []
            while i < n and text[i] not in ".[":
                if text[i] == "\\" and i + 1 < n:
                    name.append(text[i + 1])
                    i += 2
                    continue
                name.append(text[i])
                i += 1
            field = "".join(name)
            if field == "*":
                nodes.append(_Node("wildcard"))
            elif field or i > start:
                nodes.append(_Node("field", field))
            continue
        if char == "[":
            end = _closing_bracket(text, i)
            nodes.append(_parse_bracket(text[i + 1:end]))
            i = end + 1
            continue
        if char.isspace():
            i += 1
            continue
        raise JSONPathError(f"unrecognized character in action: {char!r}")
    return nodes


def _closing_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth == 0:
                return index
    raise JSONPathError(f"unterminated array in {text[start:]!r}")


def _parse_literal(text: str) -> tuple[str, Any]:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return "literal", text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return "literal", int(text)
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?|-?\d+[eE][-+]?\d+", text):
        return "literal", float(text)
    if text in ("true", "false"):
        return "literal", text == "true"
    if text.startswith(("@", "$")):
        return "path", _parse_jsonpath(text)
    raise JSONPathError(f"unrecognized filter operand: {text!r}")


def _parse_bracket(content: str) -> _Node:
    content = content.strip()
    if content == "*":
        return _Node("wildcard")
    if content.startswith("?(") and content.endswith(")"):
        expression = content[2:-1].strip()
        match = re.match(r"""^((?:[^'"=!<>]|'[^']*'|"[^"]*")+?)\s*(==|!=|<=|>=|<|>)\s*(.+)$""", expression)
        if match is None:
            return _Node("filter", ("exists", _parse_literal(expression), None))
        return _Node("filter", (match[2], _parse_literal(match[1]), _parse_literal(match[3])))
    if content[:1] and content[0] in "'\"":
        names = [part[1:-1] for part in re.findall(r"'[^']*'|\"[^\"]*\"", content)]
        return _Node("union", [_Node("field", name) for name in names]) if len(names) > 1 else _Node("field", names[0])
    parts = [part.strip() for part in content.split(",")]
    specs: list[tuple[int | None, int | None, int | None, bool]] = []
    for part in parts:
        pieces = part.split(":")
        if len(pieces) > 3 or not all(re.fullmatch(r"-?\d*", p.strip()) for p in pieces):
            raise JSONPathError(f"invalid array index {part!r}")
        numbers = [int(p) if p.strip() else None for p in pieces]
        if len(numbers) == 1:
            if numbers[0] is None:
                raise JSONPathError("invalid array index ''")
            specs.append((numbers[0], numbers[0] + 1 if numbers[0] != -1 else None, None, True))
        else:
            specs.append((numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else None, False))
    if len(specs) == 1:
        return _Node("array", specs[0])
    return _Node("union", [_Node("array", spec) for spec in specs])


def _eval(nodes: list[_Node], data: Any) -> list[Any]:
    values = [data]
    for node in nodes:
        values = _eval_node(node, values)
    return values


def _eval_node(node: _Node, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    if node.kind == "field":
        for value in values:
            if node.value == "":
                out.append(value)
            elif isinstance(value, dict) and node.value in value:
                out.append(value[node.value])
        return out
    if node.kind == "union":
        for sub in node.value:
            out += _eval_node(sub, values)
        return out
    if node.kind == "wildcard":
        for value in values:
            if isinstance(value, dict):
                out += [value[k] for k in sorted(value)]
            elif isinstance(value, list):
                out += value
        return out
    if node.kind == "recursive":
        return _descend(values)
    if node.kind == "array":
        return _eval_array(node.value, values)
    return _eval_filter(node.value, values)


def _descend(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, str):
            # Go walks a string's bytes, which have no children: the string is a container.
            if value:
                out.append(value)
            continue
        children: list[Any] = []
        if isinstance(value, dict):
            children = [value[k] for k in sorted(value)]
        elif isinstance(value, list):
            children = list(value)
        if children:
            out.append(value)
            out += _descend(children)
    return out


def _eval_array(spec: tuple[int | None, int | None, int | None, bool], values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value is None:
            continue
        if not isinstance(value, list):
            raise JSONPathError(f"{type(value).__name__} is not array or slice")
        start, end, step, single = spec
        length = len(value)
        first = 0 if start is None else start
        if first < 0:
            first += length
        last = length if end is None else end
        if end is not None and (end < 0 or (end == 0 and single)):
            last += length
        if last == first:
            continue
        if first >= length or first < 0:
            raise JSONPathError(f"array index out of bounds: index {first}, length {length}")
        if last > length or last < 0:
            raise JSONPathError(f"array index out of bounds: index {last - 1}, length {length}")
        if first > last:
            raise JSONPathError(f"starting index {first} is greater than ending index {last}")
        out += value[first:last:step or 1]
    return out


def _operand(operand: tuple[str, Any], item: Any) -> list[Any]:
    kind, value = operand
    if kind == "literal":
        return [value]
    return _eval(value, item)


def _basic_kind(value: Any) -> str:
    """Go's basic kinds for comparisons in filters; maps, slices and null compare as invalid."""
    kind = go_kind(value)
    return kind if kind in {"bool", "int", "float", "string"} else "invalid"


def _compare(operator: str, left: Any, right: Any) -> bool:
    """text/template's eq/ne/lt/le/gt/ge, as client-go's JSONPath filters use them."""
    kind = _basic_kind(left)
    if kind != _basic_kind(right) or kind == "invalid":
        raise JSONPathError("incompatible types for comparison")
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    if kind == "bool":
        raise JSONPathError("invalid type for comparison")
    return bool({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator])


def _eval_filter(spec: tuple[str, Any, Any], values: list[Any]) -> list[Any]:
    operator, left_operand, right_operand = spec
    out: list[Any] = []
    for value in values:
        if value is None:
            continue
        if not isinstance(value, list):
            raise JSONPathError(f"{type(value).__name__} is not array or slice and cannot be filtered")
        for item in value:
            lefts = _operand(left_operand, item)
            if operator == "exists":
                if lefts:
                    out.append(item)
                continue
            if not lefts:
                continue
            if len(lefts) > 1:
                raise JSONPathError("can only compare one element at a time")
            rights = _operand(right_operand, item)
            if not rights:
                continue
            if len(rights) > 1:
                raise JSONPathError("can only compare one element at a time")
            if _compare(operator, lefts[0], rights[0]):
                out.append(item)
    return out


def find_jsonpath(expression: str, data: Any) -> list[Any]:
    """Every value a client-go JSONPath (with missing keys allowed) finds in `data`.

    Supports what printer columns use: ``.a.b``, ``['a.b']``, escaped dots, ``[n]``,
    ``[-1]``, slices, unions, ``[*]``, ``.*``, recursive ``..name`` and filters such as
    ``[?(@.type=="Ready")].status``. Raises JSONPathError where client-go returns an error
    (an index out of bounds, comparing a string with a number...).
    """
    return _eval(_parse_jsonpath(expression), data)


# --- columns -------------------------------------------------------------------------------------


def _column(name: str, type_: str, description: str = "", *, format_: str = "", priority: int = 0,
            **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "format": format_, "description": description,
            "priority": priority, **extra}


def _name_column(**extra: Any) -> dict[str, Any]:
    return _column("Name", "string", _NAME_DESCRIPTION, format_="name", **extra)


def _age_column(**extra: Any) -> dict[str, Any]:
    return _column("Age", "string", _CREATION_DESCRIPTION, **extra)


def _doc(definition: str, field: str) -> str:
    """A field's description from Kubernetes' own OpenAPI (as kube's printers use), or ""."""
    properties = (builtin_definitions().get(definition) or {}).get("properties") or {}
    description = (properties.get(field) or {}).get("description")
    return description if isinstance(description, str) else ""


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def columns_for(api_version: str, kind: str, crd_version: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The Table columns kube-apiserver serves for a kind.

    With `crd_version` (the CRD's `spec.versions[i]`), the columns of a custom resource:
    Name, then each `additionalPrinterColumns` entry (its jsonPath kept under "jsonPath" for
    `render_table`; a missing description becomes kube's "Custom resource definition column
    (in JSONPath format): ..."), or Name and Age when the version declares none. Without it,
    the built-in printer's columns for a known kind (kept with a "builtin" printer key and
    cell "index"), else kube's default Name / Created At.
    """
    if crd_version is not None:
        declared = crd_version.get("additionalPrinterColumns") or []
        columns = [_name_column(jsonPath=".metadata.name")]
        if not declared:
            return columns + [_column("Age", "date", _CREATION_DESCRIPTION, jsonPath=".metadata.creationTimestamp")]
        for entry in declared:
            path = str(entry.get("jsonPath") or "")
            description = entry.get("description") or f"Custom resource definition column (in JSONPath format): {path}"
            columns.append(_column(str(entry.get("name") or ""), str(entry.get("type") or "string"), description,
                                   format_=str(entry.get("format") or ""), priority=int(entry.get("priority") or 0),
                                   jsonPath=path))
        return columns
    group, _ = _split_api_version(api_version)
    printer = _PRINTERS.get((group, kind))
    if printer is None:
        return [_name_column(builtin="default", index=0),
                _column("Created At", "date", _CREATION_DESCRIPTION, builtin="default", index=1)]
    return [dict(column, builtin=f"{group}/{kind}", index=index) for index, column in enumerate(printer.columns())]


# --- rendering -----------------------------------------------------------------------------------


def render_table(objects: list[dict[str, Any]], columns: list[dict[str, Any]], *, now: datetime,
                 include_object: str = "Metadata", list_metadata: dict[str, Any] | None = None,
                 no_headers: bool = False) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects` with `columns` (from `columns_for`).

    `include_object` is the request's `includeObject`: "None" (no object), "Metadata" or ""
    (the default: a PartialObjectMetadata), "Object" (the whole object); anything else
    raises ValueError with kube's message (answer 400). Cells are JSON values; a null cell
    is what kubectl prints as ``<none>``. `list_metadata` (resourceVersion, continue,
    remainingItemCount) becomes the Table's metadata.
    """
    if include_object not in ("None", "Metadata", "Object", ""):
        raise ValueError(f"unrecognized includeObject value: {go_json(include_object)}")
    rows = []
    for obj in objects:
        cells, conditions = _row(obj, columns, now)
        row: dict[str, Any] = {"cells": cells}
        if conditions:
            row["conditions"] = conditions
        row["object"] = _included(obj, include_object)
        rows.append(row)
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": dict(list_metadata or {}),
    }
    if not no_headers:
        table["columnDefinitions"] = [{key: column.get(key, "" if key != "priority" else 0)
                                       for key in _STANDARD_COLUMN_KEYS} for column in columns]
    table["rows"] = rows
    return table


def _included(obj: dict[str, Any], include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return copy.deepcopy(obj)
    return {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION,
            "metadata": copy.deepcopy(obj.get("metadata") or {})}


def _row(obj: dict[str, Any], columns: list[dict[str, Any]], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    builtin = next((c["builtin"] for c in columns if "builtin" in c), None)
    if builtin == "default":
        meta = obj.get("metadata") or {}
        created = _parse_time(meta.get("creationTimestamp"))
        stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else "0001-01-01T00:00:00Z"
        full: list[Any] = [meta.get("name", ""), stamp]
        return [full[c["index"]] for c in columns], []
    if builtin is not None:
        group, _, kind = builtin.partition("/")
        cells, conditions = _PRINTERS[(group, kind)].row(obj, now)
        return [cells[c["index"]] if c.get("index", len(cells)) < len(cells) else None for c in columns], conditions
    return [_jsonpath_cell(obj, column, now) for column in columns], []


def _jsonpath_cell(obj: dict[str, Any], column: dict[str, Any], now: datetime) -> Any:
    """One custom-resource cell, as apiextensions-apiserver's table convertor computes it."""
    path = column.get("jsonPath")
    if path == ".metadata.name" and column.get("format") == "name":
        return (obj.get("metadata") or {}).get("name", "")
    try:
        results = find_jsonpath(str(path), obj)
    except JSONPathError:
        return None
    if not results:
        return None
    value = results[0]  # only the first match is shown, whatever the path selects
    column_type = column.get("type")
    if column_type == "string":
        return "<no value>" if value is None else go_print(value)
    if value is None:
        return None
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if column_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        if value in ("", "null"):
            return "<unknown>"
        stamp = _parse_time(value)
        return "<invalid>" if stamp is None else human_duration(_aware(now) - stamp)
    return None


# --- built-in printers (k8s.io/kubernetes/pkg/printers/internalversion) -------------------------


@dataclass(frozen=True)
class _Printer:
    columns: Callable[[], list[dict[str, Any]]]
    row: Callable[[dict[str, Any], datetime], tuple[list[Any], list[dict[str, Any]]]]


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj or obj[key] is None:
            return default
        obj = obj[key]
    return obj


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _containers_cells(pod_spec: dict[str, Any] | None) -> tuple[str, str]:
    containers = _get(pod_spec, "containers", default=[]) or []
    names = ",".join(str(c.get("name", "")) for c in containers if isinstance(c, dict))
    images = ",".join(str(c.get("image", "")) for c in containers if isinstance(c, dict))
    return names, images


def _format_labels(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def _selector_string(selector: Any) -> str | None:
    """labels.Selector.String() of a LabelSelector ("" for none or empty), None when invalid."""
    if not isinstance(selector, dict):
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator")
        values = ",".join(sorted(str(v) for v in expression.get("values") or []))
        if operator == "In":
            requirements.append((key, f"{key} in ({values})"))
        elif operator == "NotIn":
            requirements.append((key, f"{key} notin ({values})"))
        elif operator == "Exists":
            requirements.append((key, key))
        elif operator == "DoesNotExist":
            requirements.append((key, f"!{key}"))
        else:
            return None
    requirements.sort(key=lambda requirement: requirement[0])
    return ",".join(text for _, text in requirements)


def _format_label_selector(selector: Any) -> str:
    text = _selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _condition_true(conditions: Any, type_: str) -> bool:
    for condition in conditions or []:
        if isinstance(condition, dict) and condition.get("type") == type_:
            return condition.get("status") == "True"
    return False


def _name(obj: dict[str, Any]) -> str:
    return str(_get(obj, "metadata", "name", default=""))


def _age(obj: dict[str, Any], now: datetime) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"), now)


def _later(current: datetime | None, candidate: Any) -> datetime | None:
    stamp = _parse_time(candidate)
    if stamp is None:
        return current
    return stamp if current is None or current < stamp else current


# pods -------------------------------------------------------------------------------------------


def _pod_columns() -> list[dict[str, Any]]:
    return [
        _name_column(),
        _column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        _column("Status", "string", "The aggregate status of the containers in this pod."),
        _column("Restarts", "string", "The number of times the containers in this pod have been restarted and "
                "when the last container in this pod has restarted."),
        _age_column(),
        _column("IP", "string", _doc("io.k8s.api.core.v1.PodStatus", "podIP"), priority=1),
        _column("Node", "string", _doc("io.k8s.api.core.v1.PodSpec", "nodeName"), priority=1),
        _column("Nominated Node", "string", _doc("io.k8s.api.core.v1.PodStatus", "nominatedNodeName"), priority=1),
        _column("Readiness Gates", "string", _doc("io.k8s.api.core.v1.PodSpec", "readinessGates"), priority=1),
    ]


def _pod_row(pod: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    spec, status = _get(pod, "spec", default={}), _get(pod, "status", default={})
    containers = spec.get("containers") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or [] if isinstance(c, dict)}
    total = len(containers) + sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    row_conditions: list[dict[str, Any]] = []
    if phase == "Succeeded":
        row_conditions = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                           "message": "The pod has completed successfully."}]
    elif phase == "Failed":
        row_conditions = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]

    restarts = restartable_restarts = ready = 0
    last_restart: datetime | None = None
    last_restartable_restart: datetime | None = None
    initializing = False
    for index, container in enumerate(status.get("initContainerStatuses") or []):
        restartable = (init_specs.get(container.get("name")) or {}).get("restartPolicy") == "Always"
        count = _int(container.get("restartCount"))
        finished = _get(container, "lastState", "terminated", "finishedAt")
        restarts += count
        last_restart = _later(last_restart, finished)
        if restartable:
            restartable_restarts += count
            last_restartable_restart = _later(last_restartable_restart, finished)
        terminated = _get(container, "state", "terminated")
        waiting = _get(container, "state", "waiting")
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if restartable and container.get("started") is True:
            ready += 1 if container.get("ready") else 0
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif _int(terminated.get("signal")):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts, last_restart = restartable_restarts, last_restartable_restart
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += _int(container.get("restartCount"))
            last_restart = _later(last_restart, _get(container, "lastState", "terminated", "finishedAt"))
            waiting = _get(container, "state", "waiting")
            terminated = _get(container, "state", "terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                signal = _int(terminated.get("signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif container.get("ready") and _get(container, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if _get(pod, "metadata", "deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Failed", "Succeeded"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(_aware(now) - last_restart)} ago)"
    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips and isinstance(pod_ips[0], dict) else None) or status.get("podIP")
    gates = spec.get("readinessGates") or []
    readiness = "<none>"
    if gates:
        true_gates = 0
        for gate in gates:
            for condition in conditions:
                if condition.get("type") == gate.get("conditionType"):
                    true_gates += condition.get("status") == "True"
                    break
        readiness = f"{true_gates}/{len(gates)}"
    cells = [_name(pod), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
             pod_ip or "<none>", spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
             readiness]
    return cells, row_conditions


# jobs and cronjobs --------------------------------------------------------------------------------


def _template_columns(selector_doc: str) -> list[dict[str, Any]]:
    return [
        _column("Containers", "string", "Names of each container in the template.", priority=1),
        _column("Images", "string", "Images referenced by each container in the template.", priority=1),
        _column("Selector", "string", selector_doc, priority=1),
    ]


def _job_columns() -> list[dict[str, Any]]:
    return [
        _name_column(),
        _column("Status", "string", "Status of the job."),
        _column("Completions", "string", _doc("io.k8s.api.batch.v1.JobStatus", "succeeded")),
        _column("Duration", "string", "Time required to complete the job."),
        _age_column(),
        *_template_columns(_doc("io.k8s.api.batch.v1.JobSpec", "selector")),
    ]


def _job_row(job: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    spec, status = _get(job, "spec", default={}), _get(job, "status", default={})
    succeeded = _int(status.get("succeeded"))
    if isinstance(spec.get("completions"), int):
        completions = f"{succeeded}/{spec['completions']}"
    else:
        parallelism = _int(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    started = _parse_time(status.get("startTime"))
    finished = _parse_time(status.get("completionTime"))
    duration = ""
    if started is not None:
        duration = human_duration((finished or _aware(now)) - started)
    conditions = status.get("conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _get(job, "metadata", "deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers_cells(_get(spec, "template", "spec"))
    return [_name(job), state, completions, duration, _age(job, now), names, images,
            _format_label_selector(spec.get("selector"))], []


def _cronjob_columns() -> list[dict[str, Any]]:
    return [
        _name_column(),
        _column("Schedule", "string", _doc("io.k8s.api.batch.v1.CronJobSpec", "schedule")),
        _column("Timezone", "string", _doc("io.k8s.api.batch.v1.CronJobSpec", "timeZone")),
        _column("Suspend", "boolean", _doc("io.k8s.api.batch.v1.CronJobSpec", "suspend")),
        _column("Active", "integer", _doc("io.k8s.api.batch.v1.CronJobStatus", "active")),
        _column("Last Schedule", "string", _doc("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime")),
        _age_column(),
        *_template_columns(_doc("io.k8s.api.batch.v1.JobSpec", "selector")),
    ]


def _cronjob_row(cronjob: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    spec, status = _get(cronjob, "spec", default={}), _get(cronjob, "status", default={})
    last = status.get("lastScheduleTime")
    suspend = spec.get("suspend")
    suspend_text = "<unset>" if not isinstance(suspend, bool) else ("True" if suspend else "False")
    job_spec = _get(spec, "jobTemplate", "spec", default={})
    names, images = _containers_cells(_get(job_spec, "template", "spec"))
    return [_name(cronjob), spec.get("schedule", ""), spec.get("timeZone") or "<none>", suspend_text,
            len(status.get("active") or []), _since(last, now) if last else "<none>", _age(cronjob, now),
            names, images, _format_label_selector(job_spec.get("selector"))], []


# services ---------------------------------------------------------------------------------------


def _service_columns() -> list[dict[str, Any]]:
    spec = "io.k8s.api.core.v1.ServiceSpec"
    return [
        _name_column(),
        _column("Type", "string", _doc(spec, "type")),
        _column("Cluster-IP", "string", _doc(spec, "clusterIP")),
        _column("External-IP", "string", _doc(spec, "externalIPs")),
        _column("Port(s)", "string", _doc(spec, "ports")),
        _age_column(),
        _column("Selector", "string", _doc(spec, "selector"), priority=1),
    ]


def _service_external_ip(service: dict[str, Any]) -> str:
    spec = _get(service, "spec", default={})
    kind = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = _get(service, "status", "loadBalancer", "ingress", default=[]) or []
        seen: list[str] = []
        for entry in ingress:
            address = entry.get("ip") or entry.get("hostname")
            if address and address not in seen:
                seen.append(address)
        if external:
            return ",".join(seen + external)
        return ",".join(seen) if seen else "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_row(service: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    spec = _get(service, "spec", default={})
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if _int(port.get("nodePort")) > 0:
            ports.append(f"{_int(port.get('port'))}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{_int(port.get('port'))}/{protocol}")
    return [_name(service), spec.get("type") or "ClusterIP", cluster_ips[0] if cluster_ips else "<none>",
            _service_external_ip(service), ",".join(ports) or "<none>", _age(service, now),
            _format_labels(spec.get("selector"))], []


# configmaps, secrets, namespaces, service accounts, leases -----------------------------------------


def _configmap_columns() -> list[dict[str, Any]]:
    return [_name_column(), _column("Data", "string", _doc("io.k8s.api.core.v1.ConfigMap", "data")), _age_column()]


def _configmap_row(configmap: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    count = len(configmap.get("data") or {}) + len(configmap.get("binaryData") or {})
    return [_name(configmap), count, _age(configmap, now)], []


def _secret_columns() -> list[dict[str, Any]]:
    return [_name_column(), _column("Type", "string", _doc("io.k8s.api.core.v1.Secret", "type")),
            _column("Data", "string", _doc("io.k8s.api.core.v1.Secret", "data")), _age_column()]


def _secret_row(secret: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    # The API server turns stringData into data on write; count both in case it has not yet.
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return [_name(secret), secret.get("type") or "Opaque", len(keys), _age(secret, now)], []


def _namespace_columns() -> list[dict[str, Any]]:
    return [_name_column(), _column("Status", "string", "The status of the namespace"), _age_column()]


def _namespace_row(namespace: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    return [_name(namespace), _get(namespace, "status", "phase", default="Active"), _age(namespace, now)], []


def _service_account_columns() -> list[dict[str, Any]]:
    return [_name_column(), _column("Secrets", "string", _doc("io.k8s.api.core.v1.ServiceAccount", "secrets")),
            _age_column()]


def _service_account_row(account: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    return [_name(account), len(account.get("secrets") or []), _age(account, now)], []


def _lease_columns() -> list[dict[str, Any]]:
    return [_name_column(), _column("Holder", "string", _doc("io.k8s.api.coordination.v1.LeaseSpec",
                                                              "holderIdentity")), _age_column()]


def _lease_row(lease: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    return [_name(lease), _get(lease, "spec", "holderIdentity", default=""), _age(lease, now)], []


# events -----------------------------------------------------------------------------------------


def _event_columns() -> list[dict[str, Any]]:
    event = "io.k8s.api.core.v1.Event"
    return [
        _column("Last Seen", "string", _doc(event, "lastTimestamp")),
        _column("Type", "string", _doc(event, "type")),
        _column("Reason", "string", _doc(event, "reason")),
        _column("Object", "string", _doc(event, "involvedObject")),
        _column("Subobject", "string", _doc("io.k8s.api.core.v1.ObjectReference", "fieldPath"), priority=1),
        _column("Source", "string", _doc(event, "source"), priority=1),
        _column("Message", "string", _doc(event, "message")),
        _column("First Seen", "string", _doc(event, "firstTimestamp"), priority=1),
        _column("Count", "string", _doc(event, "count"), priority=1),
        _column("Name", "string", _NAME_DESCRIPTION, format_="name", priority=1),
    ]


def _core_event(event: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 field names (kube prints both through one printer)."""
    if not str(event.get("apiVersion", "")).startswith("events.k8s.io/"):
        return event
    return {
        "metadata": event.get("metadata") or {}, "type": event.get("type"), "reason": event.get("reason"),
        "message": event.get("note"), "involvedObject": event.get("regarding") or {},
        "source": event.get("deprecatedSource") or {}, "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": event.get("deprecatedLastTimestamp"), "count": event.get("deprecatedCount"),
        "eventTime": event.get("eventTime"), "series": event.get("series"),
        "reportingComponent": event.get("reportingController"), "reportingInstance": event.get("reportingInstance"),
    }


def _event_row(raw: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    event = _core_event(raw)
    first = _since(event.get("firstTimestamp"), now) if event.get("firstTimestamp") else _since(
        event.get("eventTime"), now)
    last = _since(event.get("lastTimestamp"), now) if event.get("lastTimestamp") else first
    count = _int(event.get("count"))
    series = event.get("series")
    if isinstance(series, dict):
        last = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events carry no count in the new API
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    component = _get(event, "source", "component") or event.get("reportingComponent") or ""
    host = _get(event, "source", "host") or event.get("reportingInstance") or ""
    source = f"{component}, {host}" if host else component
    return [last, event.get("type") or "", event.get("reason") or "", target, involved.get("fieldPath") or "",
            source, str(event.get("message") or "").strip(), first, count, _name(event)], []


# workloads --------------------------------------------------------------------------------------


def _deployment_columns() -> list[dict[str, Any]]:
    status = "io.k8s.api.apps.v1.DeploymentStatus"
    return [
        _name_column(),
        _column("Ready", "string", "Number of the pod with ready state"),
        _column("Up-to-date", "string", _doc(status, "updatedReplicas")),
        _column("Available", "string", _doc(status, "availableReplicas")),
        _age_column(),
        *_template_columns(_doc("io.k8s.api.apps.v1.DeploymentSpec", "selector")),
    ]


def _desired_replicas(obj: dict[str, Any]) -> int:
    replicas = _get(obj, "spec", "replicas")
    return replicas if isinstance(replicas, int) else 1  # kube-apiserver defaults replicas to 1


def _deployment_row(deployment: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    status = _get(deployment, "status", default={})
    selector = _selector_string(_get(deployment, "spec", "selector"))
    names, images = _containers_cells(_get(deployment, "spec", "template", "spec"))
    return [_name(deployment), f"{_int(status.get('readyReplicas'))}/{_desired_replicas(deployment)}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")), _age(deployment, now),
            names, images, "<invalid>" if selector is None else selector], []


def _replicaset_columns() -> list[dict[str, Any]]:
    return [
        _name_column(),
        _column("Desired", "integer", _doc("io.k8s.api.apps.v1.ReplicaSetSpec", "replicas")),
        _column("Current", "integer", _doc("io.k8s.api.apps.v1.ReplicaSetStatus", "replicas")),
        _column("Ready", "integer", _doc("io.k8s.api.apps.v1.ReplicaSetStatus", "readyReplicas")),
        _age_column(),
        *_template_columns(_doc("io.k8s.api.apps.v1.ReplicaSetSpec", "selector")),
    ]


def _replicaset_row(replicaset: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    status = _get(replicaset, "status", default={})
    names, images = _containers_cells(_get(replicaset, "spec", "template", "spec"))
    return [_name(replicaset), _desired_replicas(replicaset), _int(status.get("replicas")),
            _int(status.get("readyReplicas")), _age(replicaset, now), names, images,
            _format_label_selector(_get(replicaset, "spec", "selector"))], []


def _statefulset_columns() -> list[dict[str, Any]]:
    return [_name_column(), _column("Ready", "string", "Number of the pod with ready state"), _age_column(),
            *_template_columns("")[:2]]


def _statefulset_row(statefulset: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    names, images = _containers_cells(_get(statefulset, "spec", "template", "spec"))
    ready = _int(_get(statefulset, "status", "readyReplicas"))
    return [_name(statefulset), f"{ready}/{_desired_replicas(statefulset)}", _age(statefulset, now),
            names, images], []


def _daemonset_columns() -> list[dict[str, Any]]:
    status = "io.k8s.api.apps.v1.DaemonSetStatus"
    return [
        _name_column(),
        _column("Desired", "integer", _doc(status, "desiredNumberScheduled")),
        _column("Current", "integer", _doc(status, "currentNumberScheduled")),
        _column("Ready", "integer", _doc(status, "numberReady")),
        _column("Up-to-date", "integer", _doc(status, "updatedNumberScheduled")),
        _column("Available", "integer", _doc(status, "numberAvailable")),
        _column("Node Selector", "string", _doc("io.k8s.api.core.v1.PodSpec", "nodeSelector")),
        _age_column(),
        *_template_columns(_doc("io.k8s.api.apps.v1.DaemonSetSpec", "selector")),
    ]


def _daemonset_row(daemonset: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    status = _get(daemonset, "status", default={})
    pod_spec = _get(daemonset, "spec", "template", "spec")
    names, images = _containers_cells(pod_spec)
    return [_name(daemonset)] + [_int(status.get(key)) for key in (
        "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
        "numberAvailable")] + [_format_labels(_get(pod_spec, "nodeSelector")), _age(daemonset, now), names, images,
                               _format_label_selector(_get(daemonset, "spec", "selector"))], []


def _node_columns() -> list[dict[str, Any]]:
    info, status = "io.k8s.api.core.v1.NodeSystemInfo", "io.k8s.api.core.v1.NodeStatus"
    return [
        _name_column(),
        _column("Status", "string", "The status of the node"),
        _column("Roles", "string", "The roles of the node"),
        _age_column(),
        _column("Version", "string", _doc(info, "kubeletVersion")),
        _column("Internal-IP", "string", _doc(status, "addresses"), priority=1),
        _column("External-IP", "string", _doc(status, "addresses"), priority=1),
        _column("OS-Image", "string", _doc(info, "osImage"), priority=1),
        _column("Kernel-Version", "string", _doc(info, "kernelVersion"), priority=1),
        _column("Container-Runtime", "string", _doc(info, "containerRuntimeVersion"), priority=1),
    ]


def _node_row(node: dict[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    status = _get(node, "status", default={})
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if _get(node, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in (_get(node, "metadata", "labels", default={}) or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address") for a in addresses if a.get("type") == kind), None) or "<none>"

    info = status.get("nodeInfo") or {}
    return [_name(node), ",".join(states), ",".join(sorted(roles)) or "<none>", _age(node, now),
            info.get("kubeletVersion", ""), address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"], []


_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "Pod"): _Printer(_pod_columns, _pod_row),
    ("batch", "Job"): _Printer(_job_columns, _job_row),
    ("batch", "CronJob"): _Printer(_cronjob_columns, _cronjob_row),
    ("", "Service"): _Printer(_service_columns, _service_row),
    ("", "ConfigMap"): _Printer(_configmap_columns, _configmap_row),
    ("", "Secret"): _Printer(_secret_columns, _secret_row),
    ("", "Namespace"): _Printer(_namespace_columns, _namespace_row),
    ("", "ServiceAccount"): _Printer(_service_account_columns, _service_account_row),
    ("", "Event"): _Printer(_event_columns, _event_row),
    ("events.k8s.io", "Event"): _Printer(_event_columns, _event_row),
    ("", "Node"): _Printer(_node_columns, _node_row),
    ("apps", "Deployment"): _Printer(_deployment_columns, _deployment_row),
    ("apps", "ReplicaSet"): _Printer(_replicaset_columns, _replicaset_row),
    ("apps", "StatefulSet"): _Printer(_statefulset_columns, _statefulset_row),
    ("apps", "DaemonSet"): _Printer(_daemonset_columns, _daemonset_row),
    ("coordination.k8s.io", "Lease"): _Printer(_lease_columns, _lease_row),
}
