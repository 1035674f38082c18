"""How requests reach the store: the HTTP pool, bounded retries with backoff, error translation.

The minio SDK's default pool retries 5xx answers by itself (urllib3 `Retry`) with 5-minute
timeouts: an unreachable store would hang a reconcile pass for minutes and a conditional PUT
could be replayed behind our back. So kubeloop gives the SDK a pool that never retries and
whose timeouts come from `StoreConfig`, and retries here, where it knows which operations are
safe to repeat.

Every exception leaving kubeloop.store is translated to a `StoreError` subclass in
`translate()`: one place decides what a code means, and what the message says (endpoint,
bucket, key, what to check) and does not say (credentials).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import urllib3
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from kubeloop.store.config import StoreConfig
from kubeloop.store.errors import AccessDenied, Conflict, NotFound, StoreError, StoreUnavailable

log = logging.getLogger("kubeloop.store")

T = TypeVar("T")

# S3 error codes that mean "try again": the server is overloaded or restarting.
TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted",
    "XMinioServerNotInitialized",
})
# The key or signature is wrong: retrying cannot help and the message must say so.
CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                              "ExpiredToken", "TokenRefreshRequired"})
PERMISSION_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NoSuchVersion"})
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})

_CHECK_ENDPOINT = ("check the endpoint (KUBELOOP_S3_ENDPOINT / S3_ENDPOINT / AWS_ENDPOINT_URL), "
                   "that the S3 server is running, and that this pod can reach it "
                   "(Service, NetworkPolicy, proxy)")
_CHECK_CREDENTIALS = ("check the access key and secret key in the object store Secret "
                      "(accessKey/secretKey or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")


def http_pool(config: StoreConfig) -> urllib3.PoolManager:
    """The connection pool handed to the SDK: our timeouts, no retries of its own.

    Certificates are verified against the system's CAs, or SSL_CERT_FILE when set (a private
    CA for an in-cluster store), the same rule the SDK applies.
    """
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
        # Enough for parallel part uploads plus the listing threads of list_versions.
        maxsize=max(10, config.parallel_uploads + 8),
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or None,
        retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                              raise_on_redirect=True, raise_on_status=False),
    )


@dataclass(frozen=True)
class Operation:
    """What is being done, for messages: `describe()` gives 'reading s3://bucket/key'."""

    action: str
    bucket: str
    key: str | None = None

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.key}" if self.key is not None else f"bucket {self.bucket!r}"
        return f"{self.action} {where}"


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts (not by time).

    Full jitter spreads the retries of many pods that lost the store at the same moment;
    `sleep` and `random` are injectable so tests need not wait.
    """

    max_attempts: int = 4
    base: float = 0.25
    cap: float = 4.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    @classmethod
    def from_config(cls, config: StoreConfig) -> RetryPolicy:
        return cls(max_attempts=config.max_attempts, base=config.backoff_base, cap=config.backoff_max)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        # Half fixed, half jitter: never a zero wait that would hammer a restarting server.
        return ceiling / 2 + self.random() * ceiling / 2


def unwrap(error: BaseException) -> BaseException:
    """The failure itself: urllib3 reports it inside a MaxRetryError when retries are off."""
    while isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return error


def is_transient(error: BaseException) -> bool:
    """Whether repeating the same request may succeed.

    Network-level failures (urllib3 errors) and 5xx answers are transient; TLS verification
    failures are not (a wrong CA does not heal). Plain OSErrors are not treated as transient:
    urllib3 wraps socket errors in its own types, so a bare OSError comes from a local file
    being read for an upload, and repeating the upload would only read the broken file again.
    """
    error = unwrap(error)
    if isinstance(error, urllib3.exceptions.SSLError):
        return False
    if isinstance(error, urllib3.exceptions.HTTPError):
        return True
    if isinstance(error, S3Error):
        status = error.response.status if error.response is not None else 0
        return error.code in TRANSIENT_CODES or (status >= 500 and error.code not in NOT_FOUND_CODES)
    if isinstance(error, ServerError):
        return error.status_code >= 500 or error.status_code == 429
    if isinstance(error, InvalidResponseError):
        # A proxy's HTML error page in front of the store, typically a 502/503 while it restarts.
        return _invalid_response_status(error) >= 500
    return False


def may_have_been_applied(error: BaseException) -> bool:
    """Whether a failed write may nevertheless have reached the server.

    Only a connection that could not be opened proves the request was never sent; after a
    timeout or a reset mid-response the write may have been applied. Conditional writes use
    this to tell a replay's 412 (our own write landed) from a real conflict.
    """
    # NewConnectionError and NameResolutionError derive from ConnectTimeoutError in urllib3 2.
    return not isinstance(unwrap(error), urllib3.exceptions.ConnectTimeoutError)


def call(config: StoreConfig, operation: Operation, function: Callable[[], T], *,
         policy: RetryPolicy | None = None, retry: bool = True,
         on_retry: Callable[[BaseException], None] | None = None) -> T:
    """Run `function` (one idempotent request or upload), retrying transient failures.

    Raises the translated `StoreError` once attempts are exhausted or the failure is not
    transient; anything that is not the store's (a local file that cannot be read) passes
    through unchanged. `on_retry` runs before each repetition (e.g. to note that a write may
    already have been applied).
    """
    policy = policy or RetryPolicy.from_config(config)
    attempts = policy.max_attempts if retry else 1
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            return function()
        except StoreError:
            raise
        except Exception as error:  # noqa: BLE001 - classified below, re-raised translated or as is
            if not is_store_failure(error):
                raise
            if attempt < attempts and is_transient(error):
                wait = policy.delay(attempt)
                log.info("object store: %s failed (%s), attempt %d of %d, retrying in %.2f s",
                         operation.describe(), short_reason(error), attempt, attempts, wait)
                if on_retry is not None:
                    on_retry(error)
                policy.sleep(wait)
                continue
            raise translate(error, config, operation, attempts=attempt,
                            elapsed=time.monotonic() - started) from error
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def is_store_failure(error: BaseException) -> bool:
    """Whether `error` comes from the SDK or the network (as opposed to local code or files)."""
    return isinstance(error, MinioException | urllib3.exceptions.HTTPError)


def translate(error: BaseException, config: StoreConfig, operation: Operation, *,
              attempts: int = 1, elapsed: float = 0.0) -> StoreError:
    """The `StoreError` for an SDK or network failure, with a message a person can act on."""
    what = operation.describe()
    error = unwrap(error)
    if isinstance(error, urllib3.exceptions.SSLError):
        return StoreUnavailable(
            f"TLS with the object store at {config.url} failed while {what} ({short_reason(error)}): "
            "check the endpoint's scheme (http/https) and, for a private CA, SSL_CERT_FILE")
    if isinstance(error, urllib3.exceptions.HTTPError):
        return StoreUnavailable(
            f"cannot reach the object store at {config.url} while {what}: {short_reason(error)} "
            f"(after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s); {_CHECK_ENDPOINT}")
    if isinstance(error, S3Error):
        code = error.code or "UnknownError"
        if code in CREDENTIAL_CODES:
            return AccessDenied(
                f"the object store at {config.url} rejected the credentials ({code}) while {what}: "
                f"{_CHECK_CREDENTIALS}")
        if code in PERMISSION_CODES:
            return AccessDenied(
                f"the object store at {config.url} denied access ({code}) while {what}: the credentials "
                f"are wrong or not allowed to do this; {_CHECK_CREDENTIALS} and the key's permissions")
        if code == "NoSuchBucket":
            return NotFound(
                f"bucket {config.bucket!r} does not exist at {config.url} ({what}): create it, or check "
                "KUBELOOP_S3_BUCKET", key=operation.key)
        if code in NOT_FOUND_CODES:
            return NotFound(f"not found: {what} ({code})", key=operation.key)
        if code in PRECONDITION_CODES:
            return Conflict(f"precondition failed while {what}: the object changed concurrently",
                            key=operation.key or "")
        if is_transient(error):
            return StoreUnavailable(
                f"the object store at {config.url} kept failing while {what} ({code}, after {attempts} "
                f"attempt{'s' if attempts != 1 else ''}); check the S3 server's health")
        return StoreError(f"the object store at {config.url} refused {what}: {code}: {error.message}")
    if isinstance(error, ServerError):
        if error.status_code == 412:
            return Conflict(f"precondition failed while {what}: the object changed concurrently",
                            key=operation.key or "")
        return StoreUnavailable(
            f"the object store at {config.url} answered HTTP {error.status_code} while {what} "
            f"(after {attempts} attempt{'s' if attempts != 1 else ''}); check the S3 server's health")
    if isinstance(error, InvalidResponseError):
        status = _invalid_response_status(error)
        if status == 403:
            return AccessDenied(
                f"the object store at {config.url} denied access (HTTP 403) while {what}: "
                f"{_CHECK_CREDENTIALS}")
        return StoreUnavailable(
            f"the object store at {config.url} gave a non-S3 answer (HTTP {status or '?'}) while {what}: "
            f"is the endpoint an S3 server? {_CHECK_ENDPOINT}")
    return StoreError(f"object store error while {what}: {type(error).__name__}")


def short_reason(error: BaseException) -> str:
    """A short cause for a network error ('Connection refused', 'read timed out'), no object dumps."""
    error = unwrap(error)
    # The operating system's words, when a socket error is at the bottom of the chain.
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        current = current.__cause__ or current.__context__
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return "read timed out"
    if isinstance(error, urllib3.exceptions.NameResolutionError):
        return "host name does not resolve"
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "connection failed"
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        return "connection timed out"
    text = str(error)
    # urllib3 messages start with "<...Connection object at 0x...>: "; keep what follows.
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return text[:200] or type(error).__name__


def _invalid_response_status(error: InvalidResponseError) -> int:
    # The SDK keeps the HTTP status in a private attribute only (and in its message).
    status = getattr(error, "_code", 0)
    return status if isinstance(status, int) else 0
