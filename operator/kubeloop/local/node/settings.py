"""Settings of the local node, shared by all its controllers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Images the local node runs as processes, by repository (any tag): the entrypoint each
# image's Dockerfile declares, used when a container gives no `command`. "python" is this
# interpreter and "kubeloop" this virtualenv's `kubeloop` script.
DEFAULT_IMAGE_ENTRYPOINTS: dict[str, tuple[str, ...]] = {
    "ghcr.io/kubeloop/trainer": ("python", "-m", "kubeloop.trainingrun.train"),
    "ghcr.io/kubeloop/server": ("python", "-m", "kubeloop.modelversion.serve"),
    "ghcr.io/kubeloop/jobs": ("python",),
    "ghcr.io/kubeloop/operator": ("kubeloop", "operator"),
}


@dataclass(frozen=True)
class Clock:
    """The node's clock. `speed` > 1 makes node time run faster than wall time, so that
    minute-granular behaviour (cron schedules) can be exercised in seconds; timestamps the
    node writes are in node time. speed == 1 (the default) is plain UTC wall time."""

    speed: float = 1.0
    _origin_wall: float = field(default_factory=time.time)
    _origin_mono: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._origin_mono) * self.speed
        return datetime.fromtimestamp(self._origin_wall, UTC) + timedelta(seconds=elapsed)

    async def sleep(self, node_seconds: float) -> None:
        """Sleep `node_seconds` of node time."""
        await asyncio.sleep(max(0.0, node_seconds) / self.speed)


@dataclass(frozen=True)
class NodeSettings:
    node_name: str = "kubeloop-local"
    # Pod working directories, emptyDir volumes and container logs live here.
    state_dir: Path = Path(".kubeloop/node")
    image_entrypoints: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_IMAGE_ENTRYPOINTS))
    clock: Clock = field(default_factory=Clock)
    # First delay before a failed Job pod is replaced (doubles each time, capped at 6 min as in
    # the real Job controller, whose base is 10 s; shorter here so local runs stay quick).
    pod_failure_backoff_seconds: float = 1.0
    # First delay before the kubelet restarts a crashed container a second time (doubling, capped
    # at 5 min, as the kubelet's CrashLoopBackOff whose base is 10 s; shorter here likewise).
    container_restart_backoff_seconds: float = 1.0
    # When the node stops, each pod gets at most this long between SIGTERM and SIGKILL (the
    # kubelet's shutdownGracePeriod), so that stopping the node stays quick and complete.
    shutdown_grace_period_seconds: float = 5.0
    # file_sd folder of the local Prometheus: pods annotated prometheus.io/scrape are written there
    # (None: no Prometheus, nothing is scraped).
    prometheus_targets_dir: Path | None = None
