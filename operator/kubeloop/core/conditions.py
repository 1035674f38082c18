"""Pure helpers for status conditions (metav1.Condition shape, plain dicts).

Conditions are kept as plain dicts because that is what kopf hands to handlers and what
the API server stores; the pydantic `Condition` model in `apimodel` has the same fields.
Rules, as in the best Go operators:
- `lastTransitionTime` changes only when `status` flips, so `kubectl describe` tells
  users how long something has been the way it is;
- every condition carries the `observedGeneration` it was computed for;
- `Ready` sums the others up, so tools (Argo CD, `kubectl wait`) need read only one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]
Condition = dict[str, Any]

READY = "Ready"


def timestamp(now: datetime) -> str:
    """RFC 3339 with second precision and a `Z`, as the Kubernetes API writes times."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: Any) -> datetime | None:
    """An RFC 3339 time as the API server (or a pod) writes it, as an aware UTC datetime; None
    for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def find_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Condition | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return dict(condition)
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return a new list with condition `type_` set; other conditions keep their order.

    `lastTransitionTime` is kept from the previous condition of that type unless the
    status flips (a changed reason or message alone is not a transition).
    """
    previous = find_condition(conditions, type_)
    transition = timestamp(now)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = previous["lastTransitionTime"]
    updated: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    result = [dict(c) for c in conditions or () if c.get("type") != type_]
    position = next((i for i, c in enumerate(conditions or ()) if c.get("type") == type_), len(result))
    result.insert(position, updated)
    return result


def remove_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> list[Condition]:
    return [dict(c) for c in conditions or () if c.get("type") != type_]


def ready_summary(
    conditions: Sequence[Mapping[str, Any]] | None,
    required: Sequence[str],
) -> tuple[ConditionStatus, str, str]:
    """Derive (status, reason, message) of `Ready` from the `required` condition types.

    The first required condition that is False decides (its reason and message explain
    the whole object); else the first that is Unknown or missing; else all are True.
    Order `required` by how a user would debug: earliest prerequisite first.
    """
    unknown: tuple[ConditionStatus, str, str] | None = None
    for type_ in required:
        condition = find_condition(conditions, type_)
        if condition is None:
            unknown = unknown or ("Unknown", f"{type_}Pending", f"{type_} has not been evaluated yet")
            continue
        if condition.get("status") == "False":
            return "False", str(condition.get("reason", type_)), str(condition.get("message", ""))
        if condition.get("status") != "True" and unknown is None:
            unknown = ("Unknown", str(condition.get("reason", type_)), str(condition.get("message", "")))
    if unknown is not None:
        return unknown
    return "True", "Ready", "all conditions are satisfied"


def with_ready(
    conditions: Sequence[Mapping[str, Any]] | None,
    required: Sequence[str],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Set `Ready` from `required` (see `ready_summary`)."""
    status, reason, message = ready_summary(conditions, required)
    return set_condition(conditions, READY, status, reason, message, now=now, generation=generation)
