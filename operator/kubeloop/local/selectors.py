"""Label and field selectors exactly as kube-apiserver parses and matches them.

``kubectl get -l``, kopf's ``labels=`` filters, a Service's or a Job's selector and the
garbage collector all select objects through these; the local API server filters list
and watch responses with them. The grammar, the validation of keys and values and the
wording of errors follow ``k8s.io/apimachinery/pkg/labels`` (``labels.Parse``,
``metav1.LabelSelectorAsSelector``) and ``k8s.io/apimachinery/pkg/fields``
(``fields.ParseSelector``), so that a selector refused by a real cluster is refused here
too, with a message a user recognises. :class:`SelectorError` carries that message; the
server answers it with 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelRequirement",
    "LabelSelector",
    "SelectorError",
    "label_selector_from_spec",
    "parse_field_selector",
    "parse_label_selector",
    "supported_field_selectors",
]


class SelectorError(ValueError):
    """A selector the API server refuses (400 BadRequest, with this message)."""


# --------------------------------------------------------------------------------------
# Validation of label keys and values (k8s.io/apimachinery/pkg/util/validation)
# --------------------------------------------------------------------------------------

_QUALIFIED_NAME_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT: Final = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_RE: Final = re.compile(_QUALIFIED_NAME_FMT, re.ASCII)
_LABEL_VALUE_RE: Final = re.compile(_LABEL_VALUE_FMT, re.ASCII)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(_DNS1123_SUBDOMAIN_FMT, re.ASCII)

_NAME_MAX: Final = 63
_PREFIX_MAX: Final = 253
_VALUE_MAX: Final = 63


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    shown = "".join(
        f"'{example}', " if i == 0 else f" or '{example}', " for i, example in enumerate(examples)
    )
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _label_key_errors(key: str) -> list[str]:
    """Why ``key`` is not a qualified name (``[prefix/]name``), in Kubernetes' words."""
    errors: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > _PREFIX_MAX:
                errors.append(f"prefix part {_max_len(_PREFIX_MAX)}")
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                errors.append(
                    "prefix part "
                    + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
                )
    else:
        name = parts[0]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > _NAME_MAX:
        errors.append(f"name part {_max_len(_NAME_MAX)}")
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors: list[str] = []
    if len(value) > _VALUE_MAX:
        errors.append(_max_len(_VALUE_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _invalid(path: str, value: object, detail: str) -> str:
    """A ``field.Invalid`` message: ``path: Invalid value: "value": detail``."""
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return f"{path + ': ' if path else ''}Invalid value: {shown}: {detail}"


# --------------------------------------------------------------------------------------
# Label selectors
# --------------------------------------------------------------------------------------

Operator = Literal["in", "notin", "=", "==", "!=", "exists", "!", "gt", "lt"]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INT_RE: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _parse_int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``: None when it fails (also on overflow)."""
    if not _INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


@dataclass(frozen=True, order=True)
class LabelRequirement:
    """One requirement of a label selector: ``key <operator> values``.

    ``values`` are sorted and unique, as Kubernetes keeps them; ``exists`` and ``!``
    (does not exist) have none, ``gt``/``lt`` one integer.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.operator in ("in", "=", "=="):
            return has and labels[self.key] in self.values
        if self.operator in ("notin", "!="):
            return not has or labels[self.key] not in self.values
        if self.operator == "exists":
            return has
        if self.operator == "!":
            return not has
        if not has:
            return False
        # gt / lt compare integers; a label value that is not one matches neither.
        actual = _parse_int64(labels[self.key])
        bound = _parse_int64(self.values[0]) if len(self.values) == 1 else None
        if actual is None or bound is None:
            return False
        return actual > bound if self.operator == "gt" else actual < bound

    def __str__(self) -> str:
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator == "exists":
            return self.key
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        symbol = {"gt": ">", "lt": "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{self.values[0]}"


def _new_requirement(key: str, operator: Operator, values: Iterable[str], path: str = "") -> LabelRequirement:
    """``labels.NewRequirement``: validate and normalise one requirement."""
    values = sorted(set(values))
    errors: list[str] = []
    key_errors = _label_key_errors(key)
    if key_errors:
        errors.append(_invalid(f"{path}key" if path else "key", key, "; ".join(key_errors)))
    values_path = f"{path}values" if path else "values"
    if operator in ("in", "notin"):
        if not values:
            errors.append(_invalid(values_path, [], "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in ("=", "==", "!="):
        if len(values) != 1:
            errors.append(
                _invalid(values_path, values, "exact-match compatibility requires one single value")
            )
    elif operator in ("exists", "!"):
        if values:
            errors.append(
                _invalid(values_path, values, "values set must be empty for exists and does not exist")
            )
    elif operator in ("gt", "lt"):
        if len(values) != 1:
            errors.append(
                _invalid(values_path, values, "for 'Gt', 'Lt' operators, exactly one value is required")
            )
        for index, value in enumerate(values):
            if _parse_int64(value) is None:
                errors.append(
                    _invalid(
                        f"{values_path}[{index}]",
                        value,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    )
                )
    for index, value in enumerate(values):
        value_errors = _label_value_errors(value)
        if value_errors:
            errors.append(_invalid(f"{values_path}[{index}][{key}]", value, "; ".join(value_errors)))
    if errors:
        raise SelectorError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    return LabelRequirement(key, operator, tuple(values))


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of :class:`LabelRequirement` (all must match).

    No requirements match every object (``labels.Everything()``); ``nothing=True`` is
    ``labels.Nothing()``, what a ``null`` selector in an object's spec means. ``str()``
    gives the canonical form (requirements sorted by key), which parses back to an equal
    selector — except for ``nothing``, which Kubernetes also prints as ``""``: check
    :attr:`nothing` before turning a selector into a query string.
    """

    requirements: tuple[LabelRequirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)

    @property
    def everything(self) -> bool:
        """Whether the selector restricts nothing (``labels.Everything()``)."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _selector(requirements: Iterable[LabelRequirement]) -> LabelSelector:
    # Kubernetes sorts by key only; we also sort by operator and values to be deterministic.
    return LabelSelector(tuple(sorted(requirements)))


# The lexer of labels.Parse: identifiers run until whitespace or one of these symbols.
_SPECIAL: Final = frozenset("=!(),<>")
_WHITESPACE: Final = frozenset(" \t\r\n")
_SYMBOLS: Final = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")

_Token = tuple[str, str]  # (kind, literal); kinds: "id", "in", "notin", a symbol, "end"


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(text) and text[position] in _WHITESPACE:
            position += 1
        if position >= len(text):
            tokens.append(("end", ""))
            return tokens
        char = text[position]
        if char in _SPECIAL:
            # The longest symbol starting here: `!=` and `==` are one token, `=!` two.
            symbol = text[position : position + 2] if text[position : position + 2] in _SYMBOLS else char
            tokens.append((symbol, symbol))
            position += len(symbol)
            continue
        end = position
        while end < len(text) and text[end] not in _SPECIAL and text[end] not in _WHITESPACE:
            end += 1
        word = text[position:end]
        tokens.append((word if word in ("in", "notin") else "id", word))
        position = end


class _LabelParser:
    """The recursive-descent parser of ``labels.Parse``, same grammar, same messages."""

    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._position = 0

    def _peek(self, values: bool = True) -> _Token:
        kind, literal = self._tokens[self._position]
        # In a value position the keywords are ordinary identifiers: `x in (in, notin)`.
        return ("id", literal) if values and kind in ("in", "notin") else (kind, literal)

    def _take(self, values: bool = True) -> _Token:
        token = self._peek(values)
        self._position += 1
        return token

    def parse(self) -> list[LabelRequirement]:
        requirements: list[LabelRequirement] = []
        while True:
            kind, literal = self._peek()
            if kind == "end":
                return requirements
            if kind not in ("id", "!"):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as error:
                raise SelectorError(f"unable to parse requirement: {error}") from None
            kind, literal = self._take()
            if kind == "end":
                return requirements
            if kind != ",":
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self._peek()
            if kind not in ("id", "!"):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> LabelRequirement:
        kind, literal = self._take()
        negated = kind == "!"
        if negated:
            kind, literal = self._take()
        if kind != "id":
            raise SelectorError(f"found '{literal}', expected: identifier")
        key = literal
        key_errors = _label_key_errors(key)
        if key_errors:
            raise SelectorError(_invalid("", key, "; ".join(key_errors)))
        if self._peek()[0] in ("end", ","):
            return _new_requirement(key, "!" if negated else "exists", ())
        if negated:
            return _new_requirement(key, "!", ())
        kind, literal = self._take(values=False)
        operators: dict[str, Operator] = {
            "in": "in", "notin": "notin", "=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt",
        }  # fmt: skip
        if kind not in operators:
            raise SelectorError(f"found '{literal}', expected: '=', '!=', '==', 'in', notin'")
        operator = operators[kind]
        values = self._set_values() if operator in ("in", "notin") else self._exact_value()
        return _new_requirement(key, operator, values)

    def _set_values(self) -> set[str]:
        kind, literal = self._take()
        if kind != "(":
            raise SelectorError(f"found '{literal}' expected: '('")
        kind, literal = self._peek()
        if kind == ")":
            self._take()
            return {""}  # `x in ()` means the empty value, as in Kubernetes
        if kind not in ("id", ","):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, literal = self._take()
            if kind == "id":
                values.add(literal)
                next_kind, next_literal = self._peek()
                if next_kind == ",":
                    continue
                if next_kind == ")":
                    self._take()
                    return values
                raise SelectorError(f"found '{next_literal}', expected: ',' or ')'")
            if kind == ",":
                # Empty entries (`(,a)`, `(a,,b)`, `(a,)`) are the empty value.
                if not values:
                    values.add("")
                next_kind, _ = self._peek()
                if next_kind == ")":
                    self._take()
                    values.add("")
                    return values
                if next_kind == ",":
                    self._take()
                    values.add("")
                continue
            raise SelectorError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> list[str]:
        kind, literal = self._peek()
        if kind in ("end", ","):
            return [""]
        kind, literal = self._take()
        if kind != "id":
            raise SelectorError(f"found '{literal}', expected: identifier")
        return [literal]


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a label selector string as ``labels.Parse`` does; ``""`` matches everything.

    Grammar: comma-separated requirements, all of which must match — ``key``, ``!key``,
    ``key=value``, ``key==value``, ``key!=value``, ``key in (v1,v2)``, ``key notin (v1)``,
    ``key>1``, ``key<1`` (integers; a label whose value is not an integer matches neither).
    Keys are qualified names (``[DNS-1123 subdomain ≤ 253/]name ≤ 63``), values are label
    values (≤ 63, alphanumerics plus ``-_.`` inside, may be empty); anything else raises
    :class:`SelectorError` with Kubernetes' message.
    """
    if not isinstance(text, str):
        raise SelectorError(f"a label selector must be a string, not {type(text).__name__}")
    return _selector(_LabelParser(text).parse())


_EXPRESSION_OPERATORS: Final[Mapping[str, Operator]] = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!",
}


def label_selector_from_spec(spec: dict[str, Any] | None) -> LabelSelector:
    """Turn a ``metav1.LabelSelector`` object into a selector (``LabelSelectorAsSelector``).

    As in Kubernetes: ``None`` (no selector at all) matches *nothing*, while ``{}`` (a
    selector with neither ``matchLabels`` nor ``matchExpressions``) matches *everything*.
    ``matchLabels`` entries become ``key=value``; ``matchExpressions`` use ``In``,
    ``NotIn``, ``Exists``, ``DoesNotExist``. Invalid keys, values or operators raise
    :class:`SelectorError` naming the offending entry.
    """
    if spec is None:
        return LabelSelector(nothing=True)
    if not isinstance(spec, dict):
        raise SelectorError(f"a label selector must be an object, not {type(spec).__name__}")
    match_labels = spec.get("matchLabels") or {}
    expressions = spec.get("matchExpressions") or []
    if not isinstance(match_labels, dict):
        raise SelectorError("matchLabels: must be an object of label keys to values")
    if not isinstance(expressions, list):
        raise SelectorError("matchExpressions: must be a list")
    requirements: list[LabelRequirement] = []
    for key, value in match_labels.items():
        if not isinstance(value, str):
            raise SelectorError(_invalid(f"matchLabels[{key}]", value, "label values must be strings"))
        requirements.append(_new_requirement(key, "=", [value], f"matchLabels[{key}]."))
    for index, expression in enumerate(expressions):
        where = f"matchExpressions[{index}]"
        if not isinstance(expression, dict):
            raise SelectorError(f"{where}: must be an object with key, operator and values")
        operator = expression.get("operator")
        if not isinstance(operator, str) or operator not in _EXPRESSION_OPERATORS:
            raise SelectorError(f'{where}.operator: "{operator}" is not a valid label selector operator')
        key = expression.get("key")
        if not isinstance(key, str):
            raise SelectorError(_invalid(f"{where}.key", key, "a label key must be a string"))
        values = expression.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SelectorError(_invalid(f"{where}.values", values, "values must be a list of strings"))
        requirements.append(_new_requirement(key, _EXPRESSION_OPERATORS[operator], values, f"{where}."))
    return _selector(requirements)


# --------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class FieldRequirement:
    """``field=value`` (also written ``==``) or ``field!=value``."""

    field: str
    operator: Literal["=", "!="]
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape_field_value(self.value)}"


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(text: str) -> str:
    result: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            result.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: unescaped character {char}")
        else:
            result.append(char)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(result)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not escaped; the escapes stay in the terms."""
    terms: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """The first operator (``!=``, ``==``, ``=``, tried in that order at each position) splits a term."""
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _field_string(value: Any) -> str:
    """How the API server renders a field for matching (Go's string forms)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _dig(obj: Mapping[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _pod_ip(obj: Mapping[str, Any]) -> Any:
    ips = _dig(obj, "status.podIPs")
    if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
        return ips[0].get("ip")
    return _dig(obj, "status.podIP")


def _event_source(obj: Mapping[str, Any]) -> Any:
    return _dig(obj, "source.component") or obj.get("reportingComponent")


def _count(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda obj: _dig(obj, path) or 0


def _flag(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda obj: bool(_dig(obj, path))


# Fields whose selectable value is not simply the value at the same path: the
# `ToSelectableFields` functions of kube-apiserver's registries. They are looked up by the
# object's own apiVersion and kind, so that a custom resource with a field of the same name
# is read plainly; every other field (a CRD's selectableFields included) is read at its
# dotted path, and an absent field reads as "".
_KIND_FIELD_VALUES: Final[Mapping[tuple[str, str], Mapping[str, Callable[[Mapping[str, Any]], Any]]]] = {
    ("v1", "Pod"): {"spec.hostNetwork": _flag("spec.hostNetwork"), "status.podIP": _pod_ip},
    ("v1", "Event"): {"source": _event_source},
    ("v1", "Node"): {"spec.unschedulable": _flag("spec.unschedulable")},
    ("v1", "ReplicationController"): {"status.replicas": _count("status.replicas")},
    ("apps/v1", "ReplicaSet"): {"status.replicas": _count("status.replicas")},
    ("batch/v1", "Job"): {"status.successful": _count("status.succeeded")},
}


def _field_value(obj: Mapping[str, Any], field: str) -> str:
    """The string a field selector compares for ``field`` of ``obj``."""
    extractors = _KIND_FIELD_VALUES.get((str(obj.get("apiVersion")), str(obj.get("kind"))), {})
    extract = extractors.get(field)
    return _field_string(extract(obj) if extract else _dig(obj, field))


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of :class:`FieldRequirement`; none matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, r.field) == r.value) == (r.operator == "=") for r in self.requirements)

    @property
    def everything(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def parse_field_selector(text: str, supported: set[str]) -> FieldSelector:
    """Parse a field selector as ``fields.ParseSelector`` does, then check the fields.

    Terms are comma-separated ``field=value``, ``field==value`` or ``field!=value``; values
    may escape ``\\,``, ``\\=`` and ``\\\\`` and must escape ``,`` and ``=``. Empty terms
    are ignored and ``""`` matches everything. A field outside ``supported`` (see
    :func:`supported_field_selectors`) raises ``SelectorError('field label not supported: X')``.
    """
    if not isinstance(text, str):
        raise SelectorError(f"a field selector must be a string, not {type(text).__name__}")
    requirements: list[FieldRequirement] = []
    for term in sorted(_split_terms(text)) if text else []:
        if term == "":
            continue
        split = _split_term(term)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        name, operator, raw_value = split
        value = _unescape_field_value(raw_value)
        if name not in supported:
            raise SelectorError(f"field label not supported: {name}")
        requirements.append(FieldRequirement(name, "!=" if operator == "!=" else "=", value))
    return FieldSelector(tuple(sorted(requirements)))


_COMMON_FIELDS: Final = frozenset({"metadata.name", "metadata.namespace"})

_KIND_FIELDS: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("v1", "Pod"): frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    ("v1", "Event"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("v1", "Secret"): frozenset({"type"}),
    ("v1", "Namespace"): frozenset({"status.phase"}),
    ("v1", "Node"): frozenset({"spec.unschedulable"}),
    ("v1", "ReplicationController"): frozenset({"status.replicas"}),
    ("apps/v1", "ReplicaSet"): frozenset({"status.replicas"}),
    ("batch/v1", "Job"): frozenset({"status.successful"}),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): frozenset({"spec.signerName"}),
}


def supported_field_selectors(api_version: str, kind: str, extra: Iterable[str] = ()) -> set[str]:
    """The field labels a list or watch of this kind may select on.

    ``metadata.name`` and ``metadata.namespace`` for every kind, plus the kind-specific ones
    kube-apiserver registers (pods: node, phase, IP…; events: involvedObject.*, reason…;
    secrets: type; namespaces: status.phase; jobs: status.successful …). ``extra`` takes a
    CRD version's ``selectableFields[].jsonPath`` values (``.spec.color`` → ``spec.color``).
    """
    supported = set(_COMMON_FIELDS | _KIND_FIELDS.get((api_version, kind), frozenset()))
    for json_path in extra:
        supported.add(json_path[1:] if json_path.startswith(".") else json_path)
    return supported
