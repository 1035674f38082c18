"""Structural schemas of CustomResourceDefinitions, applied the way kube-apiserver applies them.

kube-apiserver treats a custom resource in three steps: it *prunes* fields the schema does not
declare, *defaults* what is missing, then *validates* the result. A local API server that
skipped any of these would accept objects a real cluster refuses (or keep fields a real
cluster drops), and the operator would be tested against a lie. So this module re-does the
three steps with the rules of k8s.io/apiextensions-apiserver (pruning, defaulting, list
types, embedded resources) and k8s.io/kube-openapi (value validation), and words every
error exactly as the real server does, down to its quirks:

- error bodies follow k8s.io/apimachinery's `field.Error` (``spec.workers: Invalid value: 0:
  spec.workers in body should be greater than or equal to 1``); composite values render as
  JSON (Kubernetes >= 1.34), strings with Go's ``%q`` and numbers with Go's ``%v``;
- integer data is compared with the *truncated* bound (``minimum: 0.5`` accepts ``0``), an
  enum compares after Go's type conversion, a ``null`` never matches an enum, and failed
  ``anyOf``/``oneOf``/``allOf``/``not`` combinators report on the field ``<nil>``;
- only the formats kube-apiserver validates for CRDs are checked: ``int32``, ``int64``,
  ``float`` and ``double`` are stripped from CRD schemas by the real server, so they are not
  range-checked here either.

Everything is pure: functions take JSON-like values and return new ones or error lists.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

__all__ = [
    "FieldError",
    "apply_defaults",
    "go_json",
    "go_print",
    "invalid_message",
    "prune",
    "status_causes",
    "structural_schema_problems",
    "validate",
    "validate_object_metadata",
]

# --- field errors (k8s.io/apimachinery/pkg/util/validation/field) -----------------------------

FIELD_VALUE_INVALID = "FieldValueInvalid"
FIELD_VALUE_TYPE_INVALID = "FieldValueTypeInvalid"
FIELD_VALUE_REQUIRED = "FieldValueRequired"
FIELD_VALUE_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_VALUE_TOO_LONG = "FieldValueTooLong"
FIELD_VALUE_TOO_MANY = "FieldValueTooMany"
FIELD_VALUE_DUPLICATE = "FieldValueDuplicate"
FIELD_VALUE_FORBIDDEN = "FieldValueForbidden"

_TYPE_TEXT = {
    FIELD_VALUE_INVALID: "Invalid value",
    FIELD_VALUE_TYPE_INVALID: "Invalid value",
    FIELD_VALUE_REQUIRED: "Required value",
    FIELD_VALUE_NOT_SUPPORTED: "Unsupported value",
    FIELD_VALUE_TOO_LONG: "Too long",
    FIELD_VALUE_TOO_MANY: "Too many",
    FIELD_VALUE_DUPLICATE: "Duplicate value",
    FIELD_VALUE_FORBIDDEN: "Forbidden",
}
# Kube prints no value for these types, whatever the error carries.
_VALUELESS_TYPES = frozenset({FIELD_VALUE_REQUIRED, FIELD_VALUE_FORBIDDEN, FIELD_VALUE_TOO_LONG})

# kube's field.Path prints a nil path as "<nil>": that is where combinator errors land.
NIL_FIELD = "<nil>"
VALUE_OMITTED = "<value omitted>"


class _Omitted:
    """Marks a `Too many` error whose actual count is unknown (kube's omitValue)."""

    def __repr__(self) -> str:
        return "OMITTED"


OMITTED: Any = _Omitted()


@dataclass(frozen=True)
class FieldError:
    """One field-level validation error, shaped like k8s.io/apimachinery's `field.Error`.

    `type` is the machine-readable cause type (it becomes `Status.details.causes[].reason`);
    `value` is the offending value as decoded from JSON (rendered in the message the way Go
    renders it); `detail` is the human explanation after the value.
    """

    field: str
    type: str
    value: Any
    detail: str

    def body(self) -> str:
        """The message without the field name (kube's `ErrorBody`, used for status causes)."""
        text = _TYPE_TEXT.get(self.type, self.type)
        if self.type not in _VALUELESS_TYPES and self.value is not OMITTED:
            text = f"{text}: {_go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def message(self) -> str:
        """`field: body`, exactly as kube-apiserver prints the error."""
        return f"{self.field}: {self.body()}"


def _invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(field, FIELD_VALUE_INVALID, value, detail)


def _type_invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(field, FIELD_VALUE_TYPE_INVALID, value, detail)


def _required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, FIELD_VALUE_REQUIRED, "", detail)


def _forbidden(field: str, detail: str) -> FieldError:
    return FieldError(field, FIELD_VALUE_FORBIDDEN, "", detail)


def _not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(_go_quote(v) for v in supported) if supported else ""
    return FieldError(field, FIELD_VALUE_NOT_SUPPORTED, value, detail)


def _too_long(field: str, maximum: int) -> FieldError:
    if maximum >= 0:
        detail = f"may not be more than {maximum} {'byte' if maximum == 1 else 'bytes'}"
    else:
        detail = "value is too long"
    return FieldError(field, FIELD_VALUE_TOO_LONG, VALUE_OMITTED, detail)


def _too_many(field: str, actual: int, maximum: int) -> FieldError:
    if maximum >= 0:
        detail = f"must have at most {maximum} {'item' if maximum == 1 else 'items'}"
    else:
        detail = "has too many items"
    return FieldError(field, FIELD_VALUE_TOO_MANY, actual if actual >= 0 else OMITTED, detail)


def _duplicate(field: str, value: Any) -> FieldError:
    return FieldError(field, FIELD_VALUE_DUPLICATE, value, "")


def invalid_message(kind: str, group: str, name: str, errors: list[FieldError]) -> str:
    """The `Status.message` of a 422 Invalid answer, as `errors.NewInvalid` builds it.

    Identical messages are reported once, and several errors are bracketed, as kube's error
    aggregate does: ``TrainingRun.kubeloop.dev "x" is invalid: [a, b]``.
    """
    qualified = f"{kind}.{group}" if group else kind
    messages: list[str] = []
    for error in errors:
        text = error.message()
        if text not in messages:
            messages.append(text)
    prefix = f"{qualified} {_go_quote(name)} is invalid"
    if not messages:
        return prefix
    if len(messages) == 1:
        return f"{prefix}: {messages[0]}"
    return f"{prefix}: [{', '.join(messages)}]"


def status_causes(errors: list[FieldError]) -> list[dict[str, str]]:
    """`Status.details.causes`: one entry per error, reason = error type, message = body."""
    return [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]


# --- rendering values the way Go does ----------------------------------------------------------


def _go_quote(text: str) -> str:
    """Go's strconv.Quote / `%q`: double quotes, Go escapes, printable Unicode kept."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char in _GO_SHORT_ESCAPES:
            out.append(_GO_SHORT_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest round-tripping decimal digits of a finite non-zero float and the position
    of the decimal point (Go's `decimal.dp`): value = 0.<digits> * 10**dp."""
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    text = "".join(str(d) for d in digits)
    stripped = text.rstrip("0")
    exponent = int(exponent) + (len(text) - len(stripped))
    text = stripped.lstrip("0") or "0"
    return text, len(text) + exponent


def _go_float(value: float) -> str:
    """Go's `%v` for a float64 (strconv 'g' with the shortest digits, exponent from 1e+06)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, point = _shortest_digits(value)
    sign = "-" if value < 0 else ""
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_json_float(value: float) -> str:
    """encoding/json's rendering of a float64: plain digits, exponent only below 1e-6 or from 1e21."""
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, point = _shortest_digits(value)
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        exponent = point - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent)}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_json_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or char in "<>&\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def go_json(value: Any) -> str:
    """The compact JSON Go's encoding/json writes for a decoded JSON value.

    Map keys are sorted and `<`, `>`, `&` are escaped, as Go does: kube renders composite
    values in error messages (and string printer columns) this way.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_json_float(value)
    if isinstance(value, str):
        return _go_json_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_json_string(str(k))}:{go_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    raise TypeError(f"not a JSON value: {value!r}")


def go_print(value: Any) -> str:
    """Go's `fmt.Fprint` of a decoded JSON scalar, JSON for maps and lists.

    That is how client-go's JSONPath prints a result, hence how a `string` printer column
    shows a number or a list.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    return go_json(value)


def _go_value(value: Any) -> str:
    """A bad value as kube's `ErrorBody` prints it."""
    if value is None:
        return '"null"'
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_quote(value)
    return go_json(value)


# --- JSON value kinds and Go semantics -------------------------------------------------------


def go_kind(value: Any) -> str:
    """The Go kind JSON decoding gives a value: bool, int64, float64, string, slice, map."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, dict):
        return "map"
    raise TypeError(f"not a JSON value: {value!r}")


def _deep_equal(a: Any, b: Any) -> bool:
    """reflect.DeepEqual on decoded JSON: an int64 never equals a float64, nor a bool an int."""
    kind = go_kind(a)
    if kind != go_kind(b):
        return False
    if kind == "map":
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if kind == "slice":
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _enum_matches(data: Any, allowed: Any) -> bool:
    """kube-openapi's enum check: convert the data to the enum value's Go type, then DeepEqual."""
    if data is None or allowed is None:
        return False
    data_kind, allowed_kind = go_kind(data), go_kind(allowed)
    if allowed_kind in ("int", "float") and data_kind in ("int", "float"):
        converted: Any = float(data) if allowed_kind == "float" else int(data)
        return bool(converted == allowed)
    if allowed_kind == "string" and data_kind == "int":
        # Go converts an integer to the string of that code point.
        valid = 0 <= data <= 0x10FFFF and not 0xD800 <= data <= 0xDFFF
        return bool((chr(data) if valid else "\ufffd") == allowed)
    return _deep_equal(data, allowed)


def _is_json_integer(value: float) -> bool:
    """go-openapi's swag.IsFloat64AJSONInteger (relative tolerance 1e-9)."""
    if not math.isfinite(value) or abs(value) > 2**53:
        return False
    rounded = float(round(value))
    if value == rounded:
        return True
    diff = abs(value - rounded)
    if rounded == 0:
        return diff < 1e-9 * 5e-324
    return diff / (abs(value) + abs(rounded)) < 1e-9


# --- regular expressions: Go RE2 syntax on Python's re ------------------------------------------

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


class PatternError(ValueError):
    """A pattern Go's regexp would refuse, or one this emulation cannot run faithfully."""


def _translate_pattern(pattern: str) -> str:
    """Go RE2 syntax (which kube-apiserver uses for `pattern`) to Python's `re` syntax.

    The differences that change results are handled: Go's `$` only matches at the very end
    without the `m` flag, `\\z` is Python's `\\Z`, `\\Q..\\E` quotes, `\\x{...}` escapes,
    POSIX classes and `(?<name>`. Constructs RE2 refuses (look-arounds, back-references) are
    refused too, as kube-apiserver refuses them when the CRD is created.
    """
    multiline = re.search(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]", pattern) is not None
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= n:
                raise PatternError("trailing backslash at end of expression")
            nxt = pattern[i + 1]
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
                out.append(re.escape(literal))
                i = n if end < 0 else end + 2
                continue
            if nxt == "z":
                out.append("\\Z")
            elif nxt == "x" and i + 2 < n and pattern[i + 2] == "{":
                end = pattern.find("}", i + 3)
                if end < 0:
                    raise PatternError(f"invalid escape sequence: {pattern[i:]}")
                out.append(f"\\U{int(pattern[i + 3:end], 16):08x}")
                i = end + 1
                continue
            elif nxt in "pP":
                raise PatternError(f"Unicode character classes (\\{nxt}) are not supported by the local API server")
            elif nxt.isdigit() and nxt != "0":
                raise PatternError(f"invalid escape sequence: \\{nxt} (back-references are not supported)")
            elif nxt in "ZGKRXkgh":
                raise PatternError(f"invalid escape sequence: \\{nxt}")
            else:
                out.append(char + nxt)
            i += 2
            continue
        if in_class:
            if char == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2:end] if end > 0 else ""
                negated = name.startswith("^")
                klass = _POSIX_CLASSES.get(name.lstrip("^"))
                if klass is None:
                    raise PatternError(f"invalid character class range: {pattern[i:end + 2]}")
                if negated:
                    raise PatternError("negated POSIX classes are not supported by the local API server")
                out.append(klass)
                i = end + 2
                continue
            if char == "]":
                in_class = False
            out.append(char)
            i += 1
            continue
        if char == "[":
            in_class = True
            out.append(char)
            if i + 1 < n and pattern[i + 1] == "^":
                out.append("^")
                i += 1
            if i + 1 < n and pattern[i + 1] == "]":  # a leading ] is literal in RE2 as in Python
                out.append("\\]")
                i += 1
            i += 1
            continue
        if char == "$" and not multiline:
            out.append("\\Z")
            i += 1
            continue
        if char == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2:]
            if rest.startswith(("=", "!", "<=", "<!", ">")):
                raise PatternError(f"invalid or unsupported Perl syntax: `(?{rest[:2]}`")
            if rest.startswith("<"):
                out.append("(?P<")
                i += 3
                continue
            flags = re.match(r"[a-zA-Z-]*", rest)
            if flags and "U" in flags.group(0):
                raise PatternError("the ungreedy flag (?U) is not supported by the local API server")
        out.append(char)
        i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def _compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(_translate_pattern(pattern), re.ASCII)
    except re.error as error:
        raise PatternError(str(error)) from error


def pattern_problem(pattern: str) -> str | None:
    """Why a `pattern` cannot be used, or None: kube refuses patterns Go cannot compile."""
    try:
        _compile_pattern(pattern)
    except PatternError as error:
        return str(error)
    return None


# --- string formats kube-apiserver validates for CRDs ------------------------------------------

_UUID = r"[0-9a-f]{8}-?[0-9a-f]{4}-?%s[0-9a-f]{3}-?%s[0-9a-f]{3}-?[0-9a-f]{12}"
_RX = {
    "uuid": re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I),
    "uuid3": re.compile("^" + _UUID % ("3", "[0-9a-f]") + "$", re.I),
    "uuid4": re.compile("^" + _UUID % ("4", "[89ab]") + "$", re.I),
    "uuid5": re.compile("^" + _UUID % ("5", "[89ab]") + "$", re.I),
    "hexcolor": re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"),
    "rgbcolor": re.compile(
        r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])"
        r"\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"),
    "base64": re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"),
    "ssn": re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", re.ASCII),
    "time": re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$"),
    "hostname": re.compile(
        r"^([a-zA-Z0-9\u00a1-\uffff]((-?[a-zA-Z0-9\u00a1-\uffff]{0,62})?)|([a-zA-Z0-9\u00a1-\uffff]"
        r"(([a-zA-Z0-9\-\u00a1-\uffff]{0,61}[a-zA-Z0-9\u00a1-\uffff])?)(\.)){1,}([a-zA-Z0-9\u00a1-\uffff])"
        r"(-?[a-zA-Z0-9\u00a1-\uffff]){1,62})$"),
    "mac": re.compile(
        r"^([0-9a-fA-F]{2}([:-]))(?:[0-9a-fA-F]{2}\2){4}[0-9a-fA-F]{2}$|"
        r"^([0-9a-fA-F]{2}([:-]))(?:[0-9a-fA-F]{2}\4){6}[0-9a-fA-F]{2}$|"
        r"^([0-9a-fA-F]{2}([:-]))(?:[0-9a-fA-F]{2}\6){18}[0-9a-fA-F]{2}$|"
        r"^[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}$|"
        r"^[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4}){3}$|^[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4}){9}$"),
    "creditcard": re.compile(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]"
        r"|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}"
        r"|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$", re.ASCII),
    "k8s-short-name": re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
    "k8s-long-name": re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
    "go-duration": re.compile(r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"),
    "scala-duration": re.compile(r"^\s*(?:\d+\s*[A-Za-zµ]+\s*)+$", re.ASCII),
    "scala-part": re.compile(r"(\d+)\s*([A-Za-zµ]+)", re.ASCII),
}
_SCALA_UNITS = (("ns", "nano"), ("us", "µs", "micro"), ("ms", "milli"), ("s", "sec"), ("m", "min"),
                ("h", "hr", "hour"), ("d", "day"), ("w", "wk", "week"))


def _is_date(text: str) -> bool:
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text, re.ASCII)
    if match is None:
        return False
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return 1 <= day <= days


def _is_date_time(text: str) -> bool:
    parts = text.lower().split("t")
    if len(text) < 4 or len(parts) < 2 or not _is_date(parts[0]):
        return False
    match = _RX["time"].match(parts[1])
    return match is not None and match[1] <= "23" and match[2] <= "59" and match[3] <= "59"


def _is_duration(text: str) -> bool:
    if _RX["go-duration"].match(text):
        return True
    if not _RX["scala-duration"].match(text):
        return False
    found = False
    for _, unit in _RX["scala-part"].findall(text):
        unit = unit.lower()
        for variants in _SCALA_UNITS:
            if any(unit == v or (i == len(variants) - 1 and unit.startswith(v)) for i, v in enumerate(variants)):
                found = True
    return found


def _is_ip(text: str, marker: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return marker in text


def _is_cidr(text: str) -> bool:
    address, slash, prefix = text.partition("/")
    if not slash or not prefix.isdigit():
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return bool(address)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_isbn(text: str, version: int) -> bool:
    sanitized = re.sub(r"[\s-]+", "", text)
    if version == 10:
        if not re.fullmatch(r"[0-9]{9}X|[0-9]{10}", sanitized):
            return False
        total = sum((i + 1) * int(sanitized[i]) for i in range(9))
        total += 100 if sanitized[9] == "X" else 10 * int(sanitized[9])
        return total % 11 == 0
    if not re.fullmatch(r"[0-9]{13}", sanitized):
        return False
    total = sum((1, 3)[i % 2] * int(sanitized[i]) for i in range(12))
    return int(sanitized[12]) == (10 - total % 10) % 10


def _is_email(text: str) -> bool:
    address = text
    match = re.fullmatch(r"[^<>]*<([^<>]+)>\s*", text)
    if match:
        address = match[1]
    return re.fullmatch(r"[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+", address) is not None


def _is_request_uri(text: str) -> bool:
    if not text or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return False
    return text.startswith("/") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text) is not None


def _is_hostname(text: str) -> bool:
    return (_RX["hostname"].match(text) is not None and len(text) <= 255
            and all(len(label) <= 63 for label in text.split(".")))


def _is_base64(text: str) -> bool:
    if not _RX["base64"].match(text):
        return False
    base64.b64decode(text, validate=True)
    return True


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": lambda s: re.fullmatch(r"[0-9a-fA-F]{24}", s) is not None,
    "uri": _is_request_uri,
    "email": _is_email,
    "hostname": _is_hostname,
    "ipv4": lambda s: _is_ip(s, "."),
    "ipv6": lambda s: _is_ip(s, ":"),
    "cidr": _is_cidr,
    "mac": lambda s: _RX["mac"].match(s) is not None,
    "uuid": lambda s: _RX["uuid"].match(s) is not None,
    "uuid3": lambda s: _RX["uuid3"].match(s) is not None,
    "uuid4": lambda s: _RX["uuid4"].match(s) is not None,
    "uuid5": lambda s: _RX["uuid5"].match(s) is not None,
    "isbn": lambda s: _is_isbn(s, 10) or _is_isbn(s, 13),
    "isbn10": lambda s: _is_isbn(s, 10),
    "isbn13": lambda s: _is_isbn(s, 13),
    "creditcard": lambda s: bool(_RX["creditcard"].match(re.sub(r"[\s-]+", "", s)))
    and _luhn(re.sub(r"[\s-]+", "", s)),
    "ssn": lambda s: len(s) == 11 and _RX["ssn"].match(s) is not None,
    "hexcolor": lambda s: _RX["hexcolor"].match(s) is not None,
    "rgbcolor": lambda s: _RX["rgbcolor"].match(s) is not None,
    "byte": _is_base64,
    "password": lambda s: True,
    "date": _is_date,
    "duration": _is_duration,
    "datetime": _is_date_time,
    # Kubernetes 1.34+ validates these two in CRD schemas.
    "k8sshortname": lambda s: len(s) <= 63 and _RX["k8s-short-name"].match(s) is not None,
    "k8slongname": lambda s: len(s) <= 253 and _RX["k8s-long-name"].match(s) is not None,
}


def _effective_format(schema: dict[str, Any]) -> str:
    """The schema's format if kube-apiserver validates it for CRDs, else "" (stripped, as kube does)."""
    fmt = schema.get("format")
    if not isinstance(fmt, str) or fmt.replace("-", "") not in _FORMAT_CHECKS:
        return ""
    return fmt


# --- schema access -------------------------------------------------------------------------------


def _types(schema: dict[str, Any]) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    declared = schema.get("type")
    return [declared] if isinstance(declared, str) and declared else []


def _props(schema: dict[str, Any] | None) -> dict[str, Any]:
    props = (schema or {}).get("properties")
    return props if isinstance(props, dict) else {}


def _additional(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The additionalProperties *schema*; `true` carries none (kube's StructuralOrBool)."""
    extra = (schema or {}).get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _has_additional(schema: dict[str, Any] | None) -> bool:
    return "additionalProperties" in (schema or {}) and (schema or {}).get("additionalProperties") is not None


def _items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    items = (schema or {}).get("items")
    return items if isinstance(items, dict) else None


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- pruning ---------------------------------------------------------------------------------------

_META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


def prune(obj: dict[str, Any], schema: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Drop the fields the schema does not declare, as apiextensions-apiserver does.

    Returns the pruned copy and the sorted paths of what was dropped (``spec.foo``,
    ``spec.items[0].bar``), which kube reports as `unknown field` warnings or, with
    `fieldValidation=Strict`, refuses. `apiVersion`, `kind` and `metadata` are kept at the
    root and in every `x-kubernetes-embedded-resource`; `x-kubernetes-preserve-unknown-fields`
    keeps undeclared fields while still pruning inside declared ones. Note kube's quirk: a map
    with `additionalProperties: true` (no schema) is emptied of nested fields.
    """
    result = copy.deepcopy(obj)
    root = dict(schema or {})
    root["x-kubernetes-embedded-resource"] = True
    unknown: list[str] = []
    _prune(result, root, "", unknown)
    return result, sorted(unknown)


def _join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune(value: Any, schema: dict[str, Any] | None, path: str, unknown: list[str]) -> None:
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(value, schema, path, unknown)
        return
    if isinstance(value, dict):
        if schema is None:
            for key in list(value):
                unknown.append(_join_key(path, key))
                del value[key]
            return
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        props = _props(schema)
        for key in list(value):
            if embedded and key in _META_FIELDS:
                continue
            if key in props:
                _prune(value[key], props[key] if isinstance(props[key], dict) else {}, _join_key(path, key), unknown)
            elif _has_additional(schema):
                _prune(value[key], _additional(schema), _join_key(path, key), unknown)
            else:
                if key not in _META_FIELDS or path:
                    unknown.append(_join_key(path, key))
                del value[key]
    elif isinstance(value, list):
        items = None if schema is None else _items(schema)
        for index, item in enumerate(value):
            _prune(item, items, f"{path}[{index}]", unknown)


def _skip_prune(value: Any, schema: dict[str, Any] | None, path: str, unknown: list[str]) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        props = _props(schema)
        for key in list(value):
            if embedded and key in _META_FIELDS:
                continue
            if key in props:
                _prune(value[key], props[key] if isinstance(props[key], dict) else {}, _join_key(path, key), unknown)
            elif _has_additional(schema):
                _prune(value[key], _additional(schema), _join_key(path, key), unknown)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _skip_prune(item, _items(schema), f"{path}[{index}]", unknown)


# --- defaulting ------------------------------------------------------------------------------------


def apply_defaults(obj: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """Fill in schema defaults, as apiextensions-apiserver does after pruning.

    First a `null` in a field that is neither nullable nor defaulted is dropped (kube prunes
    such nulls rather than refusing them); then missing fields, and `null` in non-nullable
    defaulted fields, get a copy of the default. Defaults apply at every level, inside array
    items and additionalProperties values too, including inside defaults just applied. A
    `null` in a nullable field stays `null`.
    """
    result = copy.deepcopy(obj)
    if isinstance(schema, dict):
        _prune_non_nullable_nulls(result, schema)
        _default(result, schema)
    return result


def _field_schema(key: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    props = _props(schema)
    if key in props:
        return props[key] if isinstance(props[key], dict) else {}
    return _additional(schema)


def _has_default(schema: dict[str, Any]) -> bool:
    return schema.get("default") is not None


def _prune_non_nullable_nulls(value: Any, schema: dict[str, Any] | None) -> None:
    if isinstance(value, dict):
        for key in list(value):
            sub = _field_schema(key, schema)
            if value[key] is None and sub is not None and not sub.get("nullable") and not _has_default(sub):
                del value[key]
            else:
                _prune_non_nullable_nulls(value[key], sub)
    elif isinstance(value, list):
        items = _items(schema)
        for item in value:
            _prune_non_nullable_nulls(item, items)


def _non_nullable_null(value: Any, schema: dict[str, Any] | None) -> bool:
    return value is None and schema is not None and not schema.get("nullable")


def _default(value: Any, schema: dict[str, Any] | None) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        props = _props(schema)
        for key, prop in props.items():
            if not isinstance(prop, dict) or not _has_default(prop):
                continue
            if key not in value or _non_nullable_null(value[key], prop):
                value[key] = copy.deepcopy(prop["default"])
        extra = _additional(schema)
        for key in list(value):
            if key in props:
                _default(value[key], props[key] if isinstance(props[key], dict) else None)
            elif extra is not None:
                if _non_nullable_null(value[key], extra):
                    value[key] = copy.deepcopy(extra.get("default"))
                _default(value[key], extra)
    elif isinstance(value, list):
        items = _items(schema)
        for index in range(len(value)):
            if _non_nullable_null(value[index], items):
                value[index] = copy.deepcopy((items or {}).get("default"))
            _default(value[index], items)


# --- validation (k8s.io/kube-openapi/pkg/validation/validate) --------------------------------------


def validate(obj: Any, schema: dict[str, Any] | None) -> list[FieldError]:
    """Every error kube-apiserver reports for a custom resource against its schema.

    In kube's order: value validation of the whole object (type, nullable, required, enum,
    bounds, lengths, pattern, format, items, properties, combinators), then the
    `x-kubernetes-embedded-resource` checks, then `x-kubernetes-list-type` set/map
    uniqueness. Object metadata (name, labels...) is checked by `validate_object_metadata`.
    CEL rules (`x-kubernetes-validations`) are not evaluated: `structural_schema_problems`
    refuses schemas that carry them.
    """
    if not isinstance(schema, dict):
        return []
    validator = _Validator(field_prefix=None)
    validator.node(obj, schema, "")
    errors = validator.errors
    errors += _embedded_errors(obj, schema, "")
    errors += _list_type_errors(obj, schema, "")
    return errors


class _Validator:
    """One pass of kube-openapi's SchemaValidator; `matches` mirrors its `MatchCount`, used to
    pick which failed alternative of an anyOf/oneOf to report."""

    def __init__(self, field_prefix: str | None) -> None:
        self.errors: list[FieldError] = []
        self.matches = 0
        self.field_prefix = field_prefix

    def _field(self, name: str) -> str:
        # kube-openapi names errors with a leading "." at the root; apiextensions trims it
        # and an empty name maps to the (nil) root path.
        name = name.lstrip(".") if name.startswith(".") else name
        if self.field_prefix is None:
            return name or NIL_FIELD
        return f"{self.field_prefix}.{name}" if name else self.field_prefix

    def _sub(self) -> _Validator:
        return _Validator(self.field_prefix)

    def node(self, value: Any, schema: dict[str, Any], path: str) -> None:
        types = _types(schema)
        fmt = _effective_format(schema)
        if value is None:
            if types or fmt:
                self.matches += 1
                if types and not schema.get("nullable"):
                    self._type_error(path, ",".join(types), "null")
            self.matches += 1
            self._enum(value, schema, path)
            return
        kind = go_kind(value)
        if types or fmt:
            self.matches += 1
            self._type(value, kind, types, fmt, path)
        self.matches += 1
        self._combinators(value, schema, path)
        if kind == "string":
            self.matches += 1
            self._string(value, schema, path)
            if fmt:
                self.matches += 1
                self._format(value, fmt, path)
        if kind in ("int", "float"):
            self.matches += 1
            self._number(value, schema, path)
        if kind == "slice":
            self.matches += 1
            self._slice(value, schema, path)
        self.matches += 1
        self._enum(value, schema, path)
        if kind == "map":
            self.matches += 1
            self._object(value, schema, path)
        self.matches += 1

    # type ------------------------------------------------------------------------------------

    def _type_error(self, path: str, expected: str, actual: str) -> None:
        self.errors.append(_type_invalid(self._field(path), actual,
                                         f"{path} in body must be of type {expected}: {_go_quote(actual)}"))

    def _type(self, value: Any, kind: str, types: list[str], fmt: str, path: str) -> None:
        sch_type, sch_format = {
            "bool": ("boolean", ""), "int": ("integer", "int64"), "float": ("number", "float64"),
            "string": ("string", ""), "slice": ("array", ""), "map": ("object", ""),
        }[kind]
        is_float_int = sch_type == "number" and _is_json_integer(value) and "integer" in types
        is_int_float = sch_type == "integer" and "number" in types
        if (kind not in ("string", "slice") and fmt
                and not (sch_type in types or sch_format == fmt or is_float_int or is_int_float)):
            self._type_error(path, fmt, sch_format)
            return
        if "number" not in types and "integer" not in types and fmt and kind in ("string", "slice"):
            return
        if not (sch_type in types or is_float_int or is_int_float):
            self._type_error(path, ",".join(types), sch_type)

    # strings ---------------------------------------------------------------------------------

    def _string(self, value: str, schema: dict[str, Any], path: str) -> None:
        max_length, min_length, pattern = schema.get("maxLength"), schema.get("minLength"), schema.get("pattern")
        field = self._field(path)
        if isinstance(max_length, int) and len(value) > max_length:
            self.errors.append(_too_long(field, max_length))
        elif isinstance(min_length, int) and len(value) < min_length:
            self.errors.append(_invalid(field, value, f"{path} in body should be at least {min_length} chars long"))
        elif isinstance(pattern, str) and pattern:
            try:
                matched = _compile_pattern(pattern).search(value) is not None
            except PatternError as error:
                self.errors.append(_invalid(
                    field, value, f"{path} in body should match '{pattern}, but pattern is invalid: {error}'"))
                return
            if not matched:
                self.errors.append(_invalid(field, value, f"{path} in body should match '{pattern}'"))

    def _format(self, value: str, fmt: str, path: str) -> None:
        if not _FORMAT_CHECKS[fmt.replace("-", "")](value):
            self.errors.append(_type_invalid(
                self._field(path), value, f"{path} in body must be of type {fmt}: {_go_quote(value)}"))

    # numbers ---------------------------------------------------------------------------------

    def _number(self, value: int | float, schema: dict[str, Any], path: str) -> None:
        field = self._field(path)
        is_int = isinstance(value, int)
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int | float) and not isinstance(multiple, bool):
            if multiple < 0:
                self.errors.append(_invalid(
                    field, multiple, f"factor MultipleOf declared for {path} must be positive: {_go_value(multiple)}"))
            elif is_int and int(multiple) != 0:
                factor = int(multiple)
                if value % factor != 0:
                    self.errors.append(_invalid(field, value, f"{path} in body should be a multiple of {factor}"))
            elif multiple != 0:
                data, factor_f = float(value), float(multiple)
                mult = 1 / factor_f * data if factor_f < 1 else data / factor_f
                if not _is_json_integer(mult):
                    self.errors.append(_invalid(
                        field, value, f"{path} in body should be a multiple of {_go_float(factor_f)}"))
        for key, exclusive_key, word in (("minimum", "exclusiveMinimum", "greater than"),
                                         ("maximum", "exclusiveMaximum", "less than")):
            bound = schema.get(key)
            if not isinstance(bound, int | float) or isinstance(bound, bool):
                continue
            exclusive = bool(schema.get(exclusive_key))
            # kube-openapi compares integer data with the bound converted (truncated) to int64.
            limit: int | float = int(bound) if is_int else float(bound)
            if key == "minimum":
                failed = value <= limit if exclusive else value < limit
            else:
                failed = value >= limit if exclusive else value > limit
            if failed:
                shown = str(limit) if is_int else _go_float(float(limit))
                relation = word if exclusive else f"{word} or equal to"
                self.errors.append(_invalid(field, value, f"{path} in body should be {relation} {shown}"))

    # arrays ----------------------------------------------------------------------------------

    def _slice(self, value: list[Any], schema: dict[str, Any], path: str) -> None:
        items = _items(schema)
        if items is not None:
            for index, item in enumerate(value):
                self.node(item, items, f"{path}[{index}]")
        field = self._field(path)
        min_items, max_items = schema.get("minItems"), schema.get("maxItems")
        if isinstance(min_items, int) and len(value) < min_items:
            self.errors.append(_invalid(field, len(value), f"{path} in body should have at least {min_items} items"))
        if isinstance(max_items, int) and len(value) > max_items:
            self.errors.append(_too_many(field, len(value), max_items))
        if schema.get("uniqueItems"):
            seen: list[Any] = []
            for item in value:
                if any(_deep_equal(item, other) for other in seen):
                    self.errors.append(_invalid(field, "", f"{path} in body shouldn't contain duplicates"))
                    break
                seen.append(item)

    # enum ------------------------------------------------------------------------------------

    def _enum(self, value: Any, schema: dict[str, Any], path: str) -> None:
        allowed = schema.get("enum")
        if not isinstance(allowed, list) or not allowed:
            return
        if any(_enum_matches(value, candidate) for candidate in allowed):
            return
        shown = [c if isinstance(c, str) else go_json(c) for c in allowed]
        self.errors.append(_not_supported(self._field(path), value, shown))

    # objects ---------------------------------------------------------------------------------

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        field = self._field(path)
        count = len(value)
        min_props, max_props = schema.get("minProperties"), schema.get("maxProperties")
        if isinstance(min_props, int) and count < min_props:
            self.errors.append(_invalid(field, count, f"{path} in body should have at least {min_props} properties"))
            return
        if isinstance(max_props, int) and count > max_props:
            self.errors.append(_too_many(field, count, max_props))
            return
        props = _props(schema)
        extra = schema.get("additionalProperties")
        if extra is False:
            for key in value:
                if key not in props:
                    self.errors.append(_invalid(field, key, f"{path}.{key} in body is a forbidden property"))
        elif isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    self.node(item, extra, f"{path}.{key}")
        for name, sub in props.items():
            if name in value and isinstance(sub, dict):
                self.node(value[name], sub, _child(path, name))
        for name in schema.get("required") or []:
            if name not in value:
                self.errors.append(_required(self._field(f"{path}.{name}")))

    # allOf / anyOf / oneOf / not -------------------------------------------------------------

    def _run(self, value: Any, schema: Any, path: str) -> _Validator:
        sub = self._sub()
        if isinstance(schema, dict):
            sub.node(value, schema, path)
        return sub

    def _combinator_error(self, text: str) -> None:
        # kube-openapi reports these as plain errors; apiextensions puts them on the nil path.
        self.errors.append(_invalid(self.field_prefix or NIL_FIELD, "", text))

    def _combinators(self, value: Any, schema: dict[str, Any], path: str) -> None:
        any_of, one_of, all_of, not_ = schema.get("anyOf"), schema.get("oneOf"), schema.get("allOf"), schema.get("not")
        quoted = _go_quote(path)
        if isinstance(any_of, list) and any_of:
            best: _Validator | None = None
            succeeded = False
            for alternative in any_of:
                result = self._run(value, alternative, path)
                self.matches += result.matches
                if not result.errors:
                    succeeded, best = True, None
                    break
                if best is None or result.matches > best.matches:
                    best = result
            if not succeeded:
                self._combinator_error(f"{quoted} must validate at least one schema (anyOf)")
            if best is not None:
                self.errors += best.errors
        if isinstance(one_of, list) and one_of:
            best = None
            valid = 0
            for alternative in one_of:
                result = self._run(value, alternative, path)
                self.matches += result.matches
                if not result.errors:
                    valid += 1
                    best = None
                    continue
                if valid == 0 and (best is None or result.matches > best.matches):
                    best = result
            if valid != 1:
                found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                self._combinator_error(f"{quoted} must validate one and only one schema (oneOf). {found}")
                if best is not None:
                    self.errors += best.errors
        if isinstance(all_of, list) and all_of:
            valid = 0
            for part in all_of:
                result = self._run(value, part, path)
                self.matches += result.matches
                valid += not result.errors
                self.errors += result.errors
            if valid != len(all_of):
                suffix = ". None validated" if valid == 0 else ""
                self._combinator_error(f"{quoted} must validate all the schemas (allOf){suffix}")
        if isinstance(not_, dict):
            result = self._run(value, not_, path)
            if not result.errors:
                self._combinator_error(f"{quoted} must not validate the schema (not)")


# --- field.Path rendering for the apiextensions walkers ----------------------------------------


def _path_child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _path_key(path: str, key: str) -> str:
    return f"{path}[{key}]"


def _path_index(path: str, index: int) -> str:
    return f"{path}[{index}]"


# --- x-kubernetes-list-type (apiextensions-apiserver/pkg/apiserver/schema/listtype) --------------


def _list_type_errors(value: Any, schema: dict[str, Any] | None, path: str) -> list[FieldError]:
    if schema is None:
        return []
    errors: list[FieldError] = []
    if isinstance(value, dict):
        extra = _additional(schema)
        if extra is not None:
            for key, item in value.items():
                errors += _list_type_errors(item, extra, _path_key(path, key))
        props = _props(schema)
        for key, item in value.items():
            if key in props and isinstance(props[key], dict):
                errors += _list_type_errors(item, props[key], _path_child(path, key))
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            errors += [_duplicate(_path_index(path, i), value[i]) for i in _first_repeats(value)]
        elif list_type == "map":
            errors += _list_map_errors(value, schema, path)
        items = _items(schema)
        if items is not None:
            for index, item in enumerate(value):
                errors += _list_type_errors(item, items, _path_index(path, index))
    return errors


def _set_key(value: Any) -> Any:
    if isinstance(value, dict | list):
        return ("compound", go_json(value))
    return (go_kind(value), value)


def _first_repeats(values: list[Any]) -> list[int]:
    """Indices of the second occurrence of each repeated value (kube reports each once)."""
    seen: dict[Any, int] = {}
    repeats: list[int] = []
    for index, value in enumerate(values):
        key = value if isinstance(value, tuple) else _set_key(value)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            repeats.append(index)
    return repeats


_UNSPECIFIED = ("unspecified", None)


def _list_map_errors(values: list[Any], schema: dict[str, Any], path: str) -> list[FieldError]:
    for index, item in enumerate(values):
        if item is not None and not isinstance(item, dict):
            return [_invalid(_path_index(path, index), item, "must be an object for an array of list-type map")]
    if len(values) <= 1:
        return []
    key_fields = [k for k in schema.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
    if len(key_fields) == 1:
        key_field = key_fields[0]
        keys: list[Any] = []
        for item in values:
            if item is None or key_field not in item:
                keys.append(_UNSPECIFIED)
            else:
                keys.append(_set_key(item[key_field]))
        errors = []
        for index in _first_repeats(keys):
            if keys[index] == _UNSPECIFIED:
                errors.append(_duplicate(_path_index(path, index), {}))
            else:
                errors.append(_duplicate(_path_index(path, index), {key_field: values[index][key_field]}))
        return errors
    key_maps = [{k: item[k] for k in key_fields if k in item} if isinstance(item, dict) else {} for item in values]
    return [_duplicate(_path_index(path, i), key_maps[i]) for i in _first_repeats([_set_key(m) for m in key_maps])]


# --- embedded resources (apiextensions-apiserver/pkg/apiserver/schema/objectmeta) ---------------


def _embedded_errors(value: Any, schema: dict[str, Any] | None, path: str) -> list[FieldError]:
    if schema is None:
        return []
    errors: list[FieldError] = []
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource"):
            errors += _embedded_resource_errors(value, path)
        props = _props(schema)
        extra = _additional(schema)
        for key, item in value.items():
            if key in props and isinstance(props[key], dict):
                errors += _embedded_errors(item, props[key], _path_child(path, key))
            elif extra is not None:
                errors += _embedded_errors(item, extra, _path_key(path, key))
    elif isinstance(value, list):
        items = _items(schema)
        for index, item in enumerate(value):
            errors += _embedded_errors(item, items, _path_index(path, index))
    return errors


def _parse_group_version(text: str) -> str | None:
    """An error message when `text` is no group/version (k8s schema.ParseGroupVersion)."""
    if text.count("/") > 1:
        return f"unexpected GroupVersion string: {text}"
    return None


def _embedded_resource_errors(value: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "apiVersion" not in value:
        errors.append(_required(_path_child(path, "apiVersion")))
    if "kind" not in value:
        errors.append(_required(_path_child(path, "kind")))
    for key, item in value.items():
        if key == "apiVersion":
            field = _path_child(path, "apiVersion")
            if not isinstance(item, str):
                errors.append(_invalid(field, item, "must be a string"))
            elif not item:
                errors.append(_invalid(field, item, "must not be empty"))
            elif (problem := _parse_group_version(item)) is not None:
                errors.append(_invalid(field, item, problem))
        elif key == "kind":
            field = _path_child(path, "kind")
            if not isinstance(item, str):
                errors.append(_invalid(field, item, "must be a string"))
            elif not item:
                errors.append(_invalid(field, item, "must not be empty"))
            elif problems := _dns1035_label(item.lower()):
                errors.append(_invalid(field, item, "may have mixed case, but should otherwise match: "
                                       + ",".join(problems)))
        elif key == "metadata":
            field = _path_child(path, "metadata")
            if not isinstance(item, dict):
                errors.append(_invalid(field, item, "must be an object"))
                continue
            meta = dict(item)
            if not meta.get("name"):
                meta["name"] = "fakename"  # kube does the same to skip the name requirement
            errors += _object_meta_errors(meta, field, _path_segment_name,
                                          namespaced=bool(meta.get("namespace")) or None)
    return errors


# --- object metadata (k8s.io/apimachinery/pkg/api/validation) ----------------------------------

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + "(\\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"
_TOTAL_ANNOTATION_SIZE = 256 * (1 << 10)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _name_format_errors(value: str, max_length: int, pattern: str, message: str, *examples: str) -> list[str]:
    """apimachinery's IsDNS1123Subdomain / IsDNS1123Label / IsDNS1035Label: length, then format."""
    errors = []
    if len(value) > max_length:
        errors.append(_max_len_error(max_length))
    if not re.fullmatch(pattern, value):
        errors.append(_regex_error(message, pattern, *examples))
    return errors


def _dns1123_subdomain(value: str) -> list[str]:
    return _name_format_errors(
        value, 253, _DNS1123_SUBDOMAIN,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character", "example.com")


def _dns1123_label(value: str) -> list[str]:
    return _name_format_errors(
        value, 63, _DNS1123_LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character", "my-name", "123-abc")


def _dns1035_label(value: str) -> list[str]:
    return _name_format_errors(
        value, 63, _DNS1035_LABEL,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character", "my-name", "abc-123")


def _qualified_name(value: str) -> list[str]:
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + msg for msg in _dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name " + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character", _QUALIFIED_NAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_len_error(63))
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character", _QUALIFIED_NAME, "MyName", "my.name", "123-abc"))
    return errors


def _label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(_max_len_error(63))
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character", _LABEL_VALUE, "MyValue", "my_value", "12345"))
    return errors


def _mask_trailing_dash(name: str) -> str:
    """A generateName may end with '-': kube swaps the last two characters for 'a' to check it."""
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def _name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return _dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def _path_segment_name(name: str, prefix: bool) -> list[str]:
    if not prefix:
        for illegal in (".", ".."):
            if name == illegal:
                return [f"may not be '{illegal}'"]
    return [f"may not contain '{illegal}'" for illegal in ("/", "%") if illegal in name]


def validate_object_metadata(obj: dict[str, Any], *, namespaced: bool | None = None) -> list[FieldError]:
    """What kube-apiserver checks in `metadata` of a custom resource (ValidateObjectMetaAccessor).

    The name (or generateName prefix) must be a DNS-1123 subdomain; label keys qualified
    names and values label values; annotation keys qualified names (case-insensitive) and all
    annotations together at most 256 KiB; owner references complete (kopf's `adopt` without
    a uid is refused here, as on a real cluster) with at most one controller; finalizers
    qualified names. `namespaced` (when known) also checks the namespace: required for
    namespaced kinds, forbidden for cluster-scoped ones.
    """
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        meta = {}
    return _object_meta_errors(meta, "metadata", _name_is_dns_subdomain, namespaced=namespaced)


def _object_meta_errors(meta: dict[str, Any], path: str, name_rule: Callable[[str, bool], list[str]],
                        *, namespaced: bool | None) -> list[FieldError]:
    errors: list[FieldError] = []
    generate_name = meta.get("generateName")
    if isinstance(generate_name, str) and generate_name:
        errors += [_invalid(f"{path}.generateName", generate_name, msg) for msg in name_rule(generate_name, True)]
    name = meta.get("name")
    if not name:
        errors.append(_required(f"{path}.name", "name or generateName is required"))
    elif isinstance(name, str):
        errors += [_invalid(f"{path}.name", name, msg) for msg in name_rule(name, False)]
    namespace = meta.get("namespace") or ""
    if namespaced is True:
        if not namespace:
            errors.append(_required(f"{path}.namespace"))
        elif isinstance(namespace, str):
            errors += [_invalid(f"{path}.namespace", namespace, msg) for msg in _dns1123_label(namespace)]
    elif namespaced is False and namespace:
        errors.append(_forbidden(f"{path}.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and not isinstance(generation, bool) and generation < 0:
        errors.append(_invalid(f"{path}.generation", generation, "must be greater than or equal to 0"))
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key in sorted(labels):
            errors += [_invalid(f"{path}.labels", key, msg) for msg in _qualified_name(key)]
            value = labels[key]
            if isinstance(value, str):
                errors += [_invalid(f"{path}.labels", value, msg) for msg in _label_value(value)]
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in sorted(annotations):
            errors += [_invalid(f"{path}.annotations", key, msg) for msg in _qualified_name(key.lower())]
        size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > _TOTAL_ANNOTATION_SIZE:
            errors.append(_too_long(f"{path}.annotations", _TOTAL_ANNOTATION_SIZE))
    errors += _owner_reference_errors(meta.get("ownerReferences"), f"{path}.ownerReferences")
    errors += _finalizer_errors(meta.get("finalizers"), f"{path}.finalizers")
    return errors


def _owner_reference_errors(references: Any, path: str) -> list[FieldError]:
    if not isinstance(references, list):
        return []
    errors: list[FieldError] = []
    controllers: list[str] = []
    for reference in references:
        if not isinstance(reference, dict):
            continue
        api_version = str(reference.get("apiVersion") or "")
        version = api_version.rpartition("/")[2] if api_version.count("/") <= 1 else ""
        if not version:
            errors.append(_invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        for key in ("kind", "name", "uid"):
            if not reference.get(key):
                errors.append(_invalid(f"{path}.{key}", str(reference.get(key) or ""), "must not be empty"))
        if reference.get("controller") is True:
            controllers.append(f"{reference.get('kind', '')}/{reference.get('name', '')}")
    if len(controllers) > 1:
        errors.append(_invalid(path, references, "Only one reference can have Controller set to true. Found "
                               f"\"true\" in references for {' and '.join(controllers)}"))
    return errors


def _finalizer_errors(finalizers: Any, path: str) -> list[FieldError]:
    if not isinstance(finalizers, list):
        return []
    errors: list[FieldError] = []
    for finalizer in finalizers:
        if isinstance(finalizer, str):
            errors += [_invalid(path, finalizer, msg) for msg in _qualified_name(finalizer)]
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errors.append(_invalid(path, finalizers, "finalizer orphan and foregroundDeletion cannot be both set"))
    return errors


# --- structural schema checks (apiextensions validation + schema.ValidateStructural) ------------

_OPENAPI_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_NESTED_FORBIDDEN_GENERIC = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
)
_NESTED_FORBIDDEN_EXTENSIONS = (
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)


def structural_schema_problems(schema: dict[str, Any]) -> list[str]:
    """Why kube-apiserver (or this emulation) would refuse a CRD's `openAPIV3Schema`, or [].

    Each problem reads like kube's own (``properties[spec].properties[workers].type: Required
    value: must not be empty for specified object fields``), relative to the schema root.
    Covered: every rule of a structural schema (types everywhere outside value validations,
    `items` for arrays, no `additionalProperties` beside `properties` or at the root, only
    name/generateName restrictions on the root metadata, the int-or-string patterns, value
    validations that only restrict what is declared), unsupported keywords (`$ref`,
    `definitions`, `patternProperties`, `uniqueItems: true`...), list/map type rules, defaults
    that are not pruned or not valid, patterns Go cannot compile — and CEL rules, which are
    valid for kube but not emulated here, so they are refused rather than silently ignored.
    """
    if not isinstance(schema, dict):
        return ["(root): Invalid value: the schema must be an object"]
    checker = _StructuralChecker()
    checker.structural(schema, "", level="root", in_meta=False)
    checker.completeness(schema, "")
    checker.defaults(schema, "", root=True)
    unique: list[str] = []
    for problem in checker.problems:
        if problem not in unique:
            unique.append(problem)
    return sorted(unique)


class _StructuralChecker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, body: str) -> None:
        self.problems.append(f"{path or '(root)'}: {body}")

    # keywords kube-apiserver does not accept in any CRD schema node ----------------------------

    def standard(self, node: dict[str, Any], path: str, *, in_meta: bool) -> None:
        declared = node.get("type")
        if "type" in node and not isinstance(declared, str):
            self.add(_path_child(path, "type"), f"Invalid value: {go_json(declared)}: must be a string")
        elif isinstance(declared, str) and declared == "null":
            self.add(_path_child(path, "type"), "Forbidden: type cannot be set to null, use nullable as an alternative")
        elif isinstance(declared, str) and declared and declared not in _OPENAPI_TYPES:
            self.add(_path_child(path, "type"), _not_supported("", declared, list(_OPENAPI_TYPES)).body())
        for keyword, text in (("id", "id is not supported"), ("additionalItems", "additionalItems is not supported"),
                              ("patternProperties", "patternProperties is not supported"),
                              ("definitions", "definitions is not supported"),
                              ("dependencies", "dependencies is not supported"), ("$ref", "$ref is not supported")):
            if node.get(keyword) not in (None, "", {}, []):
                self.add(_path_child(path, keyword), f"Forbidden: {text}")
        if isinstance(node.get("items"), list):
            self.add(_path_child(path, "items"), "Forbidden: items must be a schema object and not an array")
        if node.get("uniqueItems") is True:
            self.add(_path_child(path, "uniqueItems"),
                     "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")
        if node.get("additionalProperties") not in (None, True) and _props(node):
            self.add(_path_child(path, "additionalProperties"),
                     "Forbidden: additionalProperties and properties are mutual exclusive")
        if node.get("x-kubernetes-preserve-unknown-fields") is False:
            self.add(_path_child(path, "x-kubernetes-preserve-unknown-fields"),
                     "Invalid value: false: must be true or undefined")
        if in_meta and node.get("x-kubernetes-embedded-resource"):
            self.add(_path_child(path, "x-kubernetes-embedded-resource"),
                     "Forbidden: must not be used inside of resource meta")
        if node.get("x-kubernetes-validations"):
            self.add(_path_child(path, "x-kubernetes-validations"),
                     "Forbidden: CEL validation rules are not emulated by the local API server")
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern and (problem := pattern_problem(pattern)) is not None:
            self.add(_path_child(path, "pattern"),
                     f"Invalid value: {_go_quote(pattern)}: must be a valid regular expression, but isn't: {problem}")
        self.list_and_map_types(node, path)

    def list_and_map_types(self, node: dict[str, Any], path: str) -> None:
        map_type, list_type, keys = node.get("x-kubernetes-map-type"), node.get("x-kubernetes-list-type"), \
            node.get("x-kubernetes-list-map-keys")
        declared = node.get("type") if isinstance(node.get("type"), str) else ""
        if map_type is not None:
            if declared != "object":
                self.add(_path_child(path, "type"), "Required value: must be object if x-kubernetes-map-type is specified"
                         if not declared else
                         f"Invalid value: {_go_quote(declared)}: must be object if x-kubernetes-map-type is specified")
            if map_type not in ("atomic", "granular"):
                self.add(_path_child(path, "x-kubernetes-map-type"),
                         _not_supported("", map_type, ["atomic", "granular"]).body())
        if list_type is not None:
            if declared != "array":
                self.add(_path_child(path, "type"), "Required value: must be array if x-kubernetes-list-type is specified"
                         if not declared else
                         f"Invalid value: {_go_quote(declared)}: must be array if x-kubernetes-list-type is specified")
            if list_type not in ("atomic", "set", "map"):
                self.add(_path_child(path, "x-kubernetes-list-type"),
                         _not_supported("", list_type, ["atomic", "set", "map"]).body())
        if keys:
            if list_type is None:
                self.add(_path_child(path, "x-kubernetes-list-type"),
                         "Required value: must be map if x-kubernetes-list-map-keys is non-empty")
            elif list_type != "map":
                self.add(_path_child(path, "x-kubernetes-list-type"), f"Invalid value: {_go_quote(str(list_type))}: "
                         "must be map if x-kubernetes-list-map-keys is non-empty")
        items = node.get("items")
        if list_type == "map":
            if not keys:
                self.add(_path_child(path, "x-kubernetes-list-map-keys"),
                         "Required value: must not be empty if x-kubernetes-list-type is map")
            if not isinstance(items, dict):
                self.add(_path_child(path, "items"), "Required value: must have a schema if x-kubernetes-list-type is map")
            elif items.get("type") != "object":
                self.add(_path_child(_path_child(path, "items"), "type"),
                         "Invalid value: must be object if parent array's x-kubernetes-list-type is map")
            else:
                item_props = _props(items)
                required = set(items.get("required") or [])
                for key in keys or []:
                    key_schema = item_props.get(key)
                    if not isinstance(key_schema, dict):
                        self.add(_path_child(path, "x-kubernetes-list-map-keys"),
                                 f"Invalid value: {go_json(keys)}: entries must all be names of item properties")
                        continue
                    key_path = _path_child(_path_key(_path_child(_path_child(path, "items"), "properties"), key), "")
                    key_path = key_path.rstrip(".")
                    if key_schema.get("type") in ("array", "object"):
                        self.add(_path_child(key_path, "type"),
                                 "Invalid value: must be a scalar type if parent array's x-kubernetes-list-type is map")
                    if key not in required and key_schema.get("default") is None:
                        self.add(_path_child(key_path, "default"), "Required value: this property is in "
                                 "x-kubernetes-list-map-keys, so it must have a default or be a required property")
                    if key_schema.get("nullable"):
                        self.add(_path_child(key_path, "nullable"), "Forbidden: this property is in "
                                 "x-kubernetes-list-map-keys, so it cannot be nullable")
                if len(set(keys or [])) != len(keys or []):
                    self.add(_path_child(path, "x-kubernetes-list-map-keys"),
                             f"Invalid value: {go_json(keys)}: must not contain duplicate entries")
        if list_type in ("set", "map") and isinstance(items, dict):
            if items.get("nullable"):
                self.add(_path_child(_path_child(path, "items"), "nullable"),
                         f"Forbidden: cannot be nullable when x-kubernetes-list-type is {list_type}")
            if list_type == "set":
                if items.get("type") == "array" and items.get("x-kubernetes-list-type", "atomic") != "atomic":
                    self.add(_path_child(_path_child(path, "items"), "x-kubernetes-list-type"),
                             "Invalid value: must be atomic as item of a list with x-kubernetes-list-type=set")
                if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
                    self.add(_path_child(_path_child(path, "items"), "x-kubernetes-map-type"),
                             "Invalid value: must be atomic as item of a list with x-kubernetes-list-type=set")

    # the structural part: properties, items, additionalProperties ------------------------------

    def structural(self, node: Any, path: str, *, level: str, in_meta: bool) -> None:
        if not isinstance(node, dict):
            self.add(path, "Invalid value: a schema must be an object")
            return
        self.standard(node, path, in_meta=in_meta)
        declared = node.get("type") if isinstance(node.get("type"), str) else ""
        int_or_string = bool(node.get("x-kubernetes-int-or-string"))
        preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(node.get("x-kubernetes-embedded-resource"))
        if declared == "array" and not isinstance(node.get("items"), dict) and not isinstance(node.get("items"), list):
            self.add(_path_child(path, "items"), "Required value: must be specified")
        if isinstance(node.get("items"), dict):
            self.structural(node["items"], _path_child(path, "items"), level="item", in_meta=in_meta)
        for key, sub in _props(node).items():
            sub_in_meta = in_meta or ((level == "root" or embedded) and key in _META_FIELDS)
            self.structural(sub, _path_key(_path_child(path, "properties"), key), level="field", in_meta=sub_in_meta)
        extra = node.get("additionalProperties")
        if extra is not None:
            if level == "root":
                self.add(_path_child(path, "additionalProperties"), "Forbidden: must not be used at the root")
            if embedded:
                self.add(_path_child(path, "additionalProperties"),
                         "Forbidden: must not be used if x-kubernetes-embedded-resource is set")
            if isinstance(extra, dict):
                self.structural(extra, _path_child(path, "additionalProperties"), level="field", in_meta=in_meta)
        if int_or_string and preserve:
            self.add(_path_child(path, "x-kubernetes-preserve-unknown-fields"),
                     "Invalid value: true: must be false if x-kubernetes-int-or-string is true")
        if int_or_string and embedded:
            self.add(_path_child(path, "x-kubernetes-embedded-resource"),
                     "Invalid value: true: must be false if x-kubernetes-int-or-string is true")
        if embedded and declared != "object":
            self.add(_path_child(path, "type"), "Required value: must be object if x-kubernetes-embedded-resource is true"
                     if not declared else
                     f"Invalid value: {_go_quote(declared)}: must be object if x-kubernetes-embedded-resource is true")
        elif not declared and not int_or_string and not preserve:
            self.add(_path_child(path, "type"), "Required value: " + {
                "root": "must not be empty at the root",
                "item": "must not be empty for specified array items",
                "field": "must not be empty for specified object fields"}[level])
        if level == "root" and declared and declared != "object":
            self.add(_path_child(path, "type"), f"Invalid value: {_go_quote(declared)}: must be object at the root")
        props = _props(node)
        check_meta = level == "root" or embedded
        for key in ("kind", "apiVersion"):
            sub = props.get(key)
            if check_meta and isinstance(sub, dict) and sub.get("type") != "string":
                self.add(_path_child(_path_key(_path_child(path, "properties"), key), "type"),
                         f"Invalid value: {_go_quote(str(sub.get('type') or ''))}: must be string")
        if isinstance(props.get("metadata"), dict):
            self.metadata(props["metadata"], _path_key(_path_child(path, "properties"), "metadata"),
                          check_meta=check_meta, root=level == "root")
        if embedded and not preserve and not props:
            self.add(_path_child(path, "properties"), "Required value: must not be empty if "
                     "x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields")
        skip_any_of = self.int_or_string_any_of(node)
        skip_first_all_of = self.int_or_string_all_of(node)
        self.value_validation(node, path, skip_any_of=skip_any_of, skip_first_all_of_any_of=skip_first_all_of)

    @staticmethod
    def _is_int_or_string_any_of(any_of: Any) -> bool:
        return (isinstance(any_of, list) and len(any_of) == 2
                and any_of[0] == {"type": "integer"} and any_of[1] == {"type": "string"})

    def int_or_string_any_of(self, node: dict[str, Any]) -> bool:
        return self._is_int_or_string_any_of(node.get("anyOf"))

    def int_or_string_all_of(self, node: dict[str, Any]) -> bool:
        all_of = node.get("allOf")
        return isinstance(all_of, list) and len(all_of) >= 1 and isinstance(all_of[0], dict) \
            and self._is_int_or_string_any_of(all_of[0].get("anyOf"))

    def metadata(self, node: dict[str, Any], path: str, *, check_meta: bool, root: bool) -> None:
        if check_meta and node.get("type") != "object":
            self.add(_path_child(path, "type"), f"Invalid value: {_go_quote(str(node.get('type') or ''))}: must be object")
        if root:
            rest = {k: v for k, v in node.items() if k not in ("type", "default")}
            props = rest.pop("properties", None)
            if props is not None and not (isinstance(props, dict) and set(props) <= {"name", "generateName"}
                                          and props):
                rest["properties"] = props
            if rest:
                self.add(path, "Forbidden: must not specify anything other than name and generateName, but "
                         "metadata is implicitly specified")

    # value validations: allOf / anyOf / oneOf / not --------------------------------------------

    def value_validation(self, node: dict[str, Any], path: str, *, skip_any_of: bool = False,
                         skip_first_all_of_any_of: bool = False) -> None:
        if not skip_any_of:
            for index, sub in enumerate(node.get("anyOf") or []):
                self.nested(sub, _path_index(_path_child(path, "anyOf"), index))
        for index, sub in enumerate(node.get("allOf") or []):
            self.nested(sub, _path_index(_path_child(path, "allOf"), index),
                        skip_any_of=skip_first_all_of_any_of and index == 0)
        for index, sub in enumerate(node.get("oneOf") or []):
            self.nested(sub, _path_index(_path_child(path, "oneOf"), index))
        if node.get("not") is not None:
            self.nested(node["not"], _path_child(path, "not"))

    def nested(self, node: Any, path: str, *, skip_any_of: bool = False) -> None:
        if not isinstance(node, dict):
            self.add(path, "Invalid value: a schema must be an object")
            return
        self.standard(node, path, in_meta=False)
        self.value_validation(node, path, skip_any_of=skip_any_of)
        if isinstance(node.get("items"), dict):
            self.nested(node["items"], _path_child(path, "items"))
        for key, sub in _props(node).items():
            self.nested(sub, _path_key(_path_child(path, "properties"), key))
        for keyword, text in _NESTED_FORBIDDEN_GENERIC:
            if node.get(keyword) is not None and (keyword in ("additionalProperties", "default") or node[keyword]):
                self.add(_path_child(path, keyword), f"Forbidden: {text}")
        if node.get("nullable"):
            self.add(_path_child(path, "nullable"), "Forbidden: must be false to be structural")
        for keyword, text in _NESTED_FORBIDDEN_EXTENSIONS:
            if node.get(keyword) not in (None, False, [], ""):
                self.add(_path_child(path, keyword), f"Forbidden: {text}")
        if "metadata" in _props(node):
            self.add(_path_key(_path_child(path, "properties"), "metadata"),
                     "Forbidden: must not be specified in a nested context")

    # every field a value validation mentions must be declared structurally ------------------------

    def completeness(self, node: dict[str, Any], path: str) -> None:
        # kube checks the value validations of the root node only (validateStructuralCompleteness).
        self.completeness_of_value_validation(node, node, path, path)

    def completeness_of_value_validation(self, validation: dict[str, Any], structural: dict[str, Any] | None,
                                         s_path: str, v_path: str) -> None:
        if structural is None:
            self.add(s_path, f"Required value: because it is defined in {v_path}")
            return
        parts: list[tuple[Any, str]] = []
        if isinstance(validation.get("not"), dict):
            parts.append((validation["not"], _path_child(v_path, "not")))
        for keyword in ("allOf", "anyOf", "oneOf"):
            for index, sub in enumerate(validation.get(keyword) or []):
                if isinstance(sub, dict):
                    parts.append((sub, _path_index(_path_child(v_path, keyword), index)))
        for sub, sub_path in parts:
            self.nested_completeness(sub, structural, s_path, sub_path)

    def nested_completeness(self, validation: dict[str, Any], structural: dict[str, Any] | None,
                            s_path: str, v_path: str) -> None:
        if structural is None:
            self.add(s_path, f"Required value: because it is defined in {v_path}")
            return
        self.completeness_of_value_validation(validation, structural, s_path, v_path)
        if isinstance(validation.get("items"), dict):
            self.nested_completeness(validation["items"], _items(structural), _path_child(s_path, "items"),
                                     _path_child(v_path, "items"))
        s_props = _props(structural)
        for key, sub in _props(validation).items():
            sub_s_path = _path_key(_path_child(s_path, "properties"), key)
            sub_v_path = _path_key(_path_child(v_path, "properties"), key)
            if key not in s_props:
                self.add(sub_s_path, f"Required value: because it is defined in {sub_v_path}")
            elif isinstance(sub, dict):
                self.nested_completeness(sub, s_props[key] if isinstance(s_props[key], dict) else None,
                                         sub_s_path, sub_v_path)

    # defaults must be pruned and valid -----------------------------------------------------------

    def defaults(self, node: Any, path: str, *, root: bool = False, top_level: str | None = None) -> None:
        if not isinstance(node, dict):
            return
        if node.get("default") is not None:
            if top_level is not None:
                self.add(_path_child(path, "default"), f"Forbidden: must not be set in top-level {top_level}")
            else:
                self.default_value(node, path)
        for key, sub in _props(node).items():
            self.defaults(sub, _path_key(_path_child(path, "properties"), key),
                          top_level=top_level or (key if root and key in _META_FIELDS else None))
        if isinstance(node.get("items"), dict):
            self.defaults(node["items"], _path_child(path, "items"), top_level=top_level)
        if isinstance(node.get("additionalProperties"), dict):
            self.defaults(node["additionalProperties"], _path_child(path, "additionalProperties"), top_level=top_level)

    def default_value(self, node: dict[str, Any], path: str) -> None:
        value = node["default"]
        field = _path_child(path, "default")
        pruned = copy.deepcopy(value)
        holder = {"value": pruned}
        _prune(holder, {"properties": {"value": node}}, "", [])
        if not _deep_equal(holder.get("value"), value):
            self.add(field, f"Invalid value: {_go_value(value)}: must not have unknown fields")
            return
        validator = _Validator(field_prefix=field)
        validator.node(value, node, "")
        for error in validator.errors:
            self.problems.append(error.message())

