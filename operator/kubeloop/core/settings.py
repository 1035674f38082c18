"""Operator settings, read once from the environment (12-factor, as a Deployment sets them).

`Settings.from_env` is pure: it takes the mapping to read, so tests pass a dict and the
operator passes `os.environ`. Every variable is documented in docs/operations.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

ENV_PREFIX = "KUBELOOP_"


class SettingsError(ValueError):
    """A setting has a value the operator cannot use; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{ENV_PREFIX}{name}={value} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{ENV_PREFIX}{name}={value} must be >= {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not a boolean (true/false)")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(ENV_PREFIX + name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclasses.dataclass(frozen=True)
class Images:
    """Container images of kubeloop's pods; one image per role (see images/)."""

    trainer: str = "ghcr.io/kubeloop/trainer:0.1.0"
    server: str = "ghcr.io/kubeloop/server:0.1.0"
    jobs: str = "ghcr.io/kubeloop/jobs:0.1.0"


@dataclasses.dataclass(frozen=True)
class ObjectStore:
    """Where artifacts, feature versions, run records and prediction logs live (S3 API)."""

    endpoint: str = "http://kubeloop-s3.kubeloop-system:8333"
    bucket: str = "kubeloop"
    # Secret (in each workload's namespace) with keys accessKey / secretKey.
    secret_name: str = "kubeloop-s3"
    region: str = "us-east-1"


@dataclasses.dataclass(frozen=True)
class Settings:
    # Namespaces to watch; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    # Explicit kubeconfig (local mode); None means in-cluster service account or ~/.kube/config.
    kubeconfig: str | None = None
    # The field manager for server-side apply of every child object.
    field_manager: str = "kubeloop"
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 8080
    health_address: str = "0.0.0.0"
    health_port: int = 8081
    # How often every resource is reconciled even without events (level-triggered safety net).
    resync_seconds: float = 300.0
    # How often running TrainingRuns re-read their progress (progress.json) into status.
    progress_poll_seconds: float = 5.0
    # kopf's executor size for sync handlers; 32 halves p50 latency at 1,000 resources vs 6.
    max_workers: int = 32
    # kopf peering: None means standalone (one replica, strategy Recreate).
    peering_name: str | None = None
    images: Images = dataclasses.field(default_factory=Images)
    object_store: ObjectStore = dataclasses.field(default_factory=ObjectStore)
    log_format: str = "plain"
    post_events: bool = True
    # Prometheus the operator queries for rollout failure conditions (the model servers' error
    # rate and latency); None: those conditions cannot be evaluated and the status says so.
    prometheus_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        defaults = cls()
        log_format = env.get(ENV_PREFIX + "LOG_FORMAT", defaults.log_format)
        if log_format not in {"plain", "json"}:
            raise SettingsError(f"{ENV_PREFIX}LOG_FORMAT={log_format!r} must be 'plain' or 'json'")
        return cls(
            namespaces=_list(env, "NAMESPACES"),
            kubeconfig=env.get(ENV_PREFIX + "KUBECONFIG") or None,
            field_manager=env.get(ENV_PREFIX + "FIELD_MANAGER", defaults.field_manager),
            metrics_address=env.get(ENV_PREFIX + "METRICS_ADDRESS", defaults.metrics_address),
            metrics_port=_int(env, "METRICS_PORT", defaults.metrics_port),
            health_address=env.get(ENV_PREFIX + "HEALTH_ADDRESS", defaults.health_address),
            health_port=_int(env, "HEALTH_PORT", defaults.health_port),
            resync_seconds=_float(env, "RESYNC_SECONDS", defaults.resync_seconds, minimum=1.0),
            progress_poll_seconds=_float(env, "PROGRESS_POLL_SECONDS", defaults.progress_poll_seconds,
                                         minimum=0.5),
            max_workers=_int(env, "MAX_WORKERS", defaults.max_workers, minimum=1),
            peering_name=env.get(ENV_PREFIX + "PEERING") or None,
            images=Images(
                trainer=env.get(ENV_PREFIX + "IMAGE_TRAINER", defaults.images.trainer),
                server=env.get(ENV_PREFIX + "IMAGE_SERVER", defaults.images.server),
                jobs=env.get(ENV_PREFIX + "IMAGE_JOBS", defaults.images.jobs),
            ),
            object_store=ObjectStore(
                endpoint=env.get(ENV_PREFIX + "S3_ENDPOINT", defaults.object_store.endpoint),
                bucket=env.get(ENV_PREFIX + "S3_BUCKET", defaults.object_store.bucket),
                secret_name=env.get(ENV_PREFIX + "S3_SECRET", defaults.object_store.secret_name),
                region=env.get(ENV_PREFIX + "S3_REGION", defaults.object_store.region),
            ),
            log_format=log_format,
            post_events=_bool(env, "POST_EVENTS", defaults.post_events),
            prometheus_url=(env.get(ENV_PREFIX + "PROMETHEUS_URL") or "").rstrip("/") or None,
        )
