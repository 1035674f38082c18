"""The object store's errors: what went wrong, in words an operator of the cluster can act on.

Every error kubeloop.store raises derives from `StoreError`, so callers (a materializer pod, a
reconcile pass) can catch one type and turn it into a condition. The subclasses say which
decision to take: `StoreUnavailable` is worth retrying later (kopf's TemporaryError),
`AccessDenied` needs a person to fix a Secret, `DigestMismatch` means the bytes are not the
ones that were published and must never be used.

Messages name the endpoint, bucket and key but never a credential: they end up in resource
conditions and logs that many people can read.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by kubeloop.store."""


class StoreConfigError(StoreError, ValueError):
    """The store's configuration is missing or malformed; the message names the variable or key."""


class StoreUnavailable(StoreError):
    """The store could not be reached, or kept failing, within the bounded retries.

    Transient by nature: the right reaction is to try again later, not to fail a resource.
    """


class AccessDenied(StoreError):
    """The store refused the request: wrong credentials, or credentials without permission."""


class NotFound(StoreError):
    """The bucket, object or version does not exist."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class DigestMismatch(StoreError):
    """Stored bytes do not match the digest recorded for them (tampered, truncated or corrupted)."""

    def __init__(self, message: str, *, key: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.actual = actual


class CorruptObject(StoreError):
    """An object kubeloop wrote is no longer in the form it was written in (not JSON, a
    malformed manifest): someone or something changed it outside kubeloop."""


class Conflict(StoreError):
    """A write lost a race: the object changed since it was read, or a different one already exists."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class ConditionalWritesUnsupported(StoreError):
    """The S3 server ignores If-Match / If-None-Match, so compare-and-swap cannot be made safe."""
