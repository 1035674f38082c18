"""The standard labels every child object carries.

`app.kubernetes.io/*` are Kubernetes' recommended labels, so generic tools (dashboards,
`kubectl get -l`) understand kubeloop's objects; `kubeloop.dev/<kind>` names the owning
custom resource so that a user can list everything one TrainingRun created.
"""

from __future__ import annotations

from kubeloop import GROUP

PART_OF = "kubeloop"
MANAGED_BY = "kubeloop-operator"


def label_value(name: str) -> str:
    """`name` as a label value: at most 63 characters, ending alphanumeric (a cut name
    could otherwise end in '-' or '.', which the API server refuses)."""
    return name[:63].rstrip("-_.")


def owner_label_key(kind: str) -> str:
    return f"{GROUP}/{kind.lower()}"


def standard_labels(*, kind: str, name: str, component: str) -> dict[str, str]:
    """Labels for a child of the custom resource `kind/name` playing role `component`."""
    return {
        "app.kubernetes.io/name": kind.lower(),
        "app.kubernetes.io/instance": label_value(name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        owner_label_key(kind): label_value(name),
    }


def selector_labels(*, kind: str, name: str, component: str) -> dict[str, str]:
    """The immutable subset used in selectors (never add to it: selectors cannot change)."""
    return {
        owner_label_key(kind): label_value(name),
        "app.kubernetes.io/component": component,
    }
