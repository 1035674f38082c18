"""Where the object store is and how to talk to it: `StoreConfig`, built from a pod's environment
or from the operator's settings plus a Secret.

Two callers, two sources:
- pods (materializer, trainer, server, drift check) get the store through environment variables
  that the workload's Secret provides with `envFrom` (the local S3 Secret has exactly these keys:
  `S3_ENDPOINT`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`)
  plus `KUBELOOP_S3_BUCKET` set by the operator: `StoreConfig.from_env(os.environ)`;
- the operator reads a Secret through the API server and knows endpoint and bucket from its own
  settings: `StoreConfig.from_secret(settings.object_store, secret)`.

Credentials are kept out of `repr()` and out of every message: a config is logged, put in
exceptions and shown in conditions far more often than anyone expects.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from kubeloop.core.settings import ObjectStore as ObjectStoreSettings
from kubeloop.store.errors import StoreConfigError

DEFAULT_REGION = "us-east-1"
DEFAULT_BUCKET = ObjectStoreSettings.bucket
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024

# Looked up in this order; the first set one wins. KUBELOOP_S3_ENDPOINT is the operator's own
# variable (core.settings), the others are what S3 tools and the local Secret use.
ENDPOINT_VARIABLES = ("KUBELOOP_S3_ENDPOINT", "S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ACCESS_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "accessKey")
SECRET_KEY_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "secretKey")
REGION_VARIABLES = ("KUBELOOP_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
BUCKET_VARIABLE = "KUBELOOP_S3_BUCKET"

# Secret keys, in order of preference. kubeloop's own Secrets use accessKey/secretKey
# (core.settings.ObjectStore.secret_name); AWS_* make the same Secret usable with envFrom.
_SECRET_ACCESS_KEYS = ("accessKey", "AWS_ACCESS_KEY_ID")
_SECRET_SECRET_KEYS = ("secretKey", "AWS_SECRET_ACCESS_KEY")
_SECRET_ENDPOINT_KEYS = ("S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "endpoint")
_SECRET_REGION_KEYS = ("AWS_REGION", "region")

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """Everything needed to open an `ObjectStore`.

    `endpoint` is `host:port` without a scheme (what the minio SDK takes); `secure` says https.
    The tuning fields have defaults that suit pods on a cluster network: connect timeouts short
    enough that an unreachable store is reported within seconds, a read timeout long enough for
    a slow multi-GB part, and 16 MiB parts with two in flight. An upload holds at most
    `(parallel_uploads + 2) * part_size` bytes in memory (parts being sent, the part being read,
    and the previous one until the SDK lets go of it): 64 MiB with the defaults, whatever the
    file's size.
    """

    endpoint: str
    bucket: str
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    region: str = DEFAULT_REGION
    secure: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    # Attempts per operation, the first included; waits grow 0.25, 0.5, 1 s ... (with jitter).
    max_attempts: int = 4
    backoff_base: float = 0.25
    backoff_max: float = 4.0
    part_size: int = 16 * 1024 * 1024
    parallel_uploads: int = 2

    def __post_init__(self) -> None:
        if not self.endpoint or "://" in self.endpoint or "/" in self.endpoint:
            raise StoreConfigError(
                f"endpoint {self.endpoint!r} must be host:port without scheme or path "
                "(use StoreConfig.from_url or parse_endpoint for URLs)")
        if not _BUCKET_NAME.match(self.bucket) or ".." in self.bucket:
            raise StoreConfigError(
                f"bucket name {self.bucket!r} is not a valid S3 bucket name "
                "(3-63 lower-case letters, digits, '.' or '-')")
        if not self.access_key or not self.secret_key:
            raise StoreConfigError("the object store's access key and secret key must both be set")
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise StoreConfigError(f"part_size={self.part_size} must be between 5 MiB and 5 GiB")
        if self.max_attempts < 1 or self.parallel_uploads < 1:
            raise StoreConfigError("max_attempts and parallel_uploads must be at least 1")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise StoreConfigError("timeouts must be positive")

    @property
    def url(self) -> str:
        """The endpoint as a URL, for messages and for tools that want one."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def replace(self, **changes: Any) -> StoreConfig:
        """A copy with some fields changed (e.g. fewer attempts for a quick health probe)."""
        return dataclasses.replace(self, **changes)

    # -- constructors ----------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, *, bucket: str, access_key: str, secret_key: str,
                 region: str = DEFAULT_REGION, **tuning: Any) -> StoreConfig:
        """From an endpoint URL such as `http://127.0.0.1:8333` (scheme decides `secure`)."""
        endpoint, secure = parse_endpoint(url)
        return cls(endpoint=endpoint, bucket=bucket, access_key=access_key, secret_key=secret_key,
                   region=region, secure=secure, **tuning)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **tuning: Any) -> StoreConfig:
        """From a pod's environment (pure: pass `os.environ`, or a dict in tests).

        Endpoint: the first set of KUBELOOP_S3_ENDPOINT, S3_ENDPOINT, AWS_ENDPOINT_URL_S3,
        AWS_ENDPOINT_URL. Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the
        `accessKey` / `secretKey` keys of kubeloop's Secret, when it is mounted with envFrom).
        Region: KUBELOOP_S3_REGION, AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. Bucket:
        KUBELOOP_S3_BUCKET, else kubeloop's default bucket.
        """
        url = _first(environ, ENDPOINT_VARIABLES)
        if url is None:
            raise StoreConfigError(
                f"no object store endpoint in the environment: set one of {', '.join(ENDPOINT_VARIABLES)}")
        access_key = _first(environ, ACCESS_KEY_VARIABLES)
        secret_key = _first(environ, SECRET_KEY_VARIABLES)
        missing = [names[0] for names, value in ((ACCESS_KEY_VARIABLES, access_key),
                                                 (SECRET_KEY_VARIABLES, secret_key)) if value is None]
        if missing:
            raise StoreConfigError(
                f"object store credentials missing from the environment: {', '.join(missing)} "
                "(mount the store's Secret with envFrom)")
        assert access_key is not None and secret_key is not None
        return cls.from_url(
            url, bucket=_first(environ, (BUCKET_VARIABLE,)) or DEFAULT_BUCKET,
            access_key=access_key, secret_key=secret_key,
            region=_first(environ, REGION_VARIABLES) or DEFAULT_REGION, **tuning)

    @classmethod
    def from_settings(cls, settings: ObjectStoreSettings, secret_data: Mapping[str, str | bytes], *,
                      base64_encoded: bool = True, **tuning: Any) -> StoreConfig:
        """From the operator's object store settings and the data of a Secret.

        `secret_data` is a Secret's `data` (base64 strings, as the API returns them: the
        default) or its `stringData` (`base64_encoded=False`); bytes values are taken as already
        decoded. The Secret may override the endpoint and region (a user's Secret for another
        S3 service carries its own); bucket comes from the settings.
        """
        decoded = {key: _decode(key, value, base64_encoded) for key, value in secret_data.items()}
        return cls._from_secret_values(settings, decoded, **tuning)

    @classmethod
    def from_secret(cls, settings: ObjectStoreSettings, secret: Mapping[str, Any],
                    **tuning: Any) -> StoreConfig:
        """From a whole v1 Secret as a dict: `data` (base64) and `stringData` (plain) both count.

        `stringData` wins over `data` for the same key, as the API server merges them.
        """
        values = {key: _decode(key, value, True) for key, value in (secret.get("data") or {}).items()}
        values.update({key: _decode(key, value, False)
                       for key, value in (secret.get("stringData") or {}).items()})
        return cls._from_secret_values(settings, values, **tuning)

    @classmethod
    def _from_secret_values(cls, settings: ObjectStoreSettings, values: Mapping[str, str],
                            **tuning: Any) -> StoreConfig:
        access_key = _first(values, _SECRET_ACCESS_KEYS)
        secret_key = _first(values, _SECRET_SECRET_KEYS)
        if access_key is None or secret_key is None:
            raise StoreConfigError(
                f"the object store Secret (expected {settings.secret_name!r}) has no "
                f"{'accessKey' if access_key is None else 'secretKey'} "
                f"(nor {'AWS_ACCESS_KEY_ID' if access_key is None else 'AWS_SECRET_ACCESS_KEY'})")
        url = _first(values, _SECRET_ENDPOINT_KEYS) or settings.endpoint
        region = _first(values, _SECRET_REGION_KEYS) or settings.region or DEFAULT_REGION
        return cls.from_url(url, bucket=settings.bucket, access_key=access_key, secret_key=secret_key,
                            region=region, **tuning)


def parse_endpoint(url: str) -> tuple[str, bool]:
    """`(host:port, secure)` from an endpoint URL; a bare `host:port` means https.

    Refuses URLs with a path (the minio SDK addresses buckets from the root) and with user
    info; the latter without echoing the URL, since it would contain a credential.
    """
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise StoreConfigError("the object store endpoint URL must not contain credentials")
    if parts.scheme not in {"http", "https"}:
        raise StoreConfigError(f"object store endpoint {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise StoreConfigError(f"object store endpoint {url!r} has no host")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise StoreConfigError(
            f"object store endpoint {url!r} must not have a path or query: give only scheme://host:port")
    try:
        port = parts.port
    except ValueError:
        raise StoreConfigError(f"object store endpoint {url!r} has an invalid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return (f"{host}:{port}" if port is not None else host), parts.scheme == "https"


def _first(values: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _decode(key: str, value: str | bytes, base64_encoded: bool) -> str:
    """One Secret value as text; errors name the key, never the value."""
    try:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if not base64_encoded:
            return value
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise StoreConfigError(
            f"Secret key {key!r} is not valid {'base64 of ' if base64_encoded else ''}UTF-8 text") from None
