"""Deterministic names for child objects, within Kubernetes' length limits.

A child's name must be the same on every reconcile (so apply is idempotent and a
restarted operator finds what it created) and valid for the child's kind: most names are
DNS-1123 subdomains (253), but Services, labels values and Job names (whose pods get a
suffix, and whose name becomes a label) need 63. When a name would be too long it is
shortened and a short hash of the full name is appended, so two long parents never
collide on the same child name.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63
# A Job's name becomes the `batch.kubernetes.io/job-name` label (63) and its pods get a
# random 5-character suffix (+1 dash); Indexed Jobs add "-<index>-" before it. Kubernetes
# recommends <= 52 for CronJob names for the same reason (11 characters of schedule suffix).
JOB_NAME_MAX = 52
CRONJOB_NAME_MAX = 52

_INVALID = re.compile(r"[^a-z0-9-]+")


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sanitize(text: str) -> str:
    """Lower-case, non-[a-z0-9-] runs replaced by '-', trimmed of leading/trailing dashes."""
    return _INVALID.sub("-", text.lower()).strip("-")


def child_name(parent: str, suffix: str = "", *, max_length: int = DNS_LABEL_MAX) -> str:
    """`<parent>-<suffix>`, valid as a DNS-1123 label, at most `max_length` characters.

    >>> child_name("fraud", "materialize")
    'fraud-materialize'
    """
    if max_length < 10:
        raise ValueError("max_length must leave room for a hash (>= 10)")
    full = sanitize(f"{parent}-{suffix}" if suffix else parent) or "x"
    if len(full) <= max_length:
        return full
    digest = short_hash(full)
    keep = max_length - len(digest) - 1
    return f"{full[:keep].rstrip('-')}-{digest}"
