"""An optional Prometheus for the embedded control plane, scraping local servers on loopback.

kubeloop's metrics, alerts and drift gates are Prometheus queries; locally they are tested
against a real Prometheus (Debian's `prometheus` package), not a fake. It is optional: when
the binary is missing `kubeloop up` runs without it, saying so (`PROMETHEUS_MISSING`).

Targets are not in the main config but in file_sd files, one per job, that Prometheus watches:
model servers appear after start-up, and adding them must not restart Prometheus (that would
lose the head block's recent samples and take seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from kubeloop.local.supervisor import ManagedProcess, StartupError, free_port

HOST = "127.0.0.1"
PROMETHEUS_MISSING = (
    "Prometheus is not installed, so the local environment runs without it. To have it, install "
    "Debian's `prometheus` package: run .ci/system-deps.sh as root (it runs "
    "apt-get install --no-install-recommends prometheus)")
_WELL_KNOWN_PATHS = ("/usr/bin/prometheus",)
# A job name becomes a file name and a label value: keep it to characters safe for both.
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$")
# The local Prometheus only ever scrapes servers of this machine's loopback.
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_STOP_GRACE_SECONDS = 10.0


class PrometheusNotInstalled(StartupError):
    """The prometheus binary was not found (see `PROMETHEUS_MISSING`)."""


class PrometheusQueryError(RuntimeError):
    """The query API answered with an error (bad expression, timeout ...)."""


def prometheus_binary() -> str | None:
    """Path of the prometheus binary (PATH, then where Debian installs it), or None."""
    found = shutil.which("prometheus")
    if found:
        return found
    for candidate in _WELL_KNOWN_PATHS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _duration(seconds: float) -> str:
    """Prometheus' duration syntax for a whole or fractional number of seconds ("1s", "500ms")."""
    milliseconds = round(seconds * 1000)
    if milliseconds <= 0:
        raise ValueError(f"a scrape interval must be positive, not {seconds}")
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


def prometheus_config(*, targets_dir: Path, scrape_interval: float) -> dict[str, Any]:
    """The prometheus.yml document: one scrape config over every job's file_sd file.

    Each file sets its job through the `job` label of its target group, which Prometheus
    prefers to `job_name`; so a new job is a new file, with no config reload.
    """
    interval = _duration(scrape_interval)
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,  # may not exceed the interval (default 10s would)
            "evaluation_interval": interval,
        },
        "scrape_configs": [{
            "job_name": "kubeloop-local",
            "file_sd_configs": [{
                "files": [str(targets_dir / "*.json")],
                # Changes arrive through inotify at once; the re-read is only a safety net.
                "refresh_interval": "5s",
            }],
        }],
    }


def _check_target(target: str) -> str:
    host, separator, port = target.rpartition(":")
    if not separator or host not in _LOOPBACK_HOSTS or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} must be host:port on loopback (127.0.0.1, localhost or [::1]): "
                         "the local Prometheus scrapes only this machine's loopback")
    return target


def _check_job(job: str) -> str:
    if not _JOB_NAME.match(job):
        raise ValueError(f"job name {job!r} must be letters, digits, '_', '.' or '-' (it names a file)")
    return job


def file_sd_document(job: str, targets: Sequence[str], labels: Mapping[str, str] | None = None,
                     ) -> list[dict[str, Any]]:
    """The file_sd content for one job: one target group carrying the job label."""
    return [{"targets": sorted(targets), "labels": {**(labels or {}), "job": job}}]


class LocalPrometheus:
    """Prometheus on 127.0.0.1 scraping local targets, which can be added while it runs.

    `directory` holds the config, the targets files, the TSDB and the log. `targets` maps a
    job name to `host:port` strings (loopback only). Use as a context manager, or
    `start()` / `stop()`.
    """

    def __init__(self, directory: Path | str, targets: Mapping[str, Sequence[str]] | None = None, *,
                 port: int | None = None, scrape_interval: float = 1.0, binary: str | None = None,
                 startup_timeout: float = 60.0) -> None:
        self.directory = Path(directory)
        self.scrape_interval = scrape_interval
        self.startup_timeout = startup_timeout  # only against a hang: it is ready in ~0.2 s
        self._binary = binary
        self._requested_port = port
        self._port: int | None = None
        self._initial_targets = {_check_job(job): [_check_target(t) for t in ts]
                                 for job, ts in (targets or {}).items()}
        self._process: ManagedProcess | None = None
        self.startup_seconds: float | None = None
        # The opener ignores HTTP(S)_PROXY: a proxy from the environment must never see (or
        # answer for) requests to loopback.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- where things are --------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def targets_dir(self) -> Path:
        return self.directory / "targets"

    @property
    def storage_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LocalPrometheus is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("LocalPrometheus is not started")
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.alive()

    # -- lifecycle ---------------------------------------------------------------------------

    def argv(self, binary: str) -> list[str]:
        """The prometheus command line."""
        return [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_dir}",
            f"--web.listen-address={HOST}:{self.port}",
            # Info level logs every TSDB compaction and head GC: noise in the environment's log.
            "--log.level=warn",
        ]

    def start(self) -> LocalPrometheus:
        """Write the config and targets, start Prometheus, return once `/-/ready` answers."""
        if self.alive():
            return self
        binary = self._binary or prometheus_binary()
        if binary is None:
            raise PrometheusNotInstalled(PROMETHEUS_MISSING)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        # Jobs from an earlier run of this directory would otherwise be scraped again.
        for stale in self.targets_dir.glob("*.json"):
            stale.unlink()
        for job, targets in self._initial_targets.items():
            self._write_targets(job, targets, {})
        write_atomically(self.config_path, yaml.safe_dump(
            prometheus_config(targets_dir=self.targets_dir, scrape_interval=self.scrape_interval),
            sort_keys=False))
        self._port = self._requested_port or free_port(HOST)
        if self.log_path.exists():
            os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        started = time.monotonic()
        self._process = ManagedProcess(name="prometheus", argv=self.argv(binary), log_path=self.log_path,
                                       cwd=str(self.directory)).start()
        try:
            self._process.wait_ready(f"{self.url}/-/ready", timeout=self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """SIGTERM (Prometheus flushes and exits in well under a second), SIGKILL if stuck."""
        if self._process is not None:
            self._process.stop(grace=_STOP_GRACE_SECONDS)
            self._process = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- targets -----------------------------------------------------------------------------

    def targets(self) -> dict[str, list[str]]:
        """The targets of each job, as the files Prometheus reads say."""
        result: dict[str, list[str]] = {}
        for path in sorted(self.targets_dir.glob("*.json")):
            groups = json.loads(path.read_text())
            result[path.stem] = sorted(t for group in groups for t in group["targets"])
        return result

    def add_targets(self, job: str, targets: Sequence[str], labels: Mapping[str, str] | None = None) -> None:
        """Scrape `targets` too, as job `job` (with `labels` on every series), without a restart."""
        _check_job(job)
        new = [_check_target(t) for t in targets]
        current = self.targets().get(job, [])
        self._write_targets(job, sorted({*current, *new}), labels or self._labels_of(job))

    def remove_targets(self, job: str, targets: Sequence[str] | None = None) -> None:
        """Stop scraping `targets` of `job` (all of them when None), e.g. a deleted model server."""
        _check_job(job)
        remaining = [] if targets is None else sorted(set(self.targets().get(job, [])) - set(targets))
        if remaining:
            self._write_targets(job, remaining, self._labels_of(job))
        else:
            (self.targets_dir / f"{job}.json").unlink(missing_ok=True)

    def _labels_of(self, job: str) -> dict[str, str]:
        path = self.targets_dir / f"{job}.json"
        if not path.exists():
            return {}
        labels = dict(json.loads(path.read_text())[0].get("labels", {}))
        labels.pop("job", None)
        return labels

    def _write_targets(self, job: str, targets: Sequence[str], labels: Mapping[str, str]) -> None:
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.targets_dir / f"{job}.json",
                          json.dumps(file_sd_document(job, targets, labels), indent=2) + "\n")

    # -- the HTTP API ------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET `/api/v1/<path>` and return its `data`; raises PrometheusQueryError on an error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with self._http.open(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422/503 still carry the JSON error
            try:
                body = json.load(error)
            except ValueError:
                raise PrometheusQueryError(f"{url}: HTTP {error.code}") from error
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: the result vector, each `{"metric": {...}, "value": [time, "v"]}`."""
        data = self.api("query", query=expr)
        result = data["result"]
        if data.get("resultType") == "scalar" or data.get("resultType") == "string":
            return [{"metric": {}, "value": result}]
        return list(result)

    def active_targets(self) -> list[dict[str, Any]]:
        """The targets Prometheus is scraping now, with `health` and `lastError`."""
        return list(self.api("targets", state="active")["activeTargets"])


def write_atomically(path: Path, text: str) -> None:
    """Write then rename, so Prometheus' file watcher never reads half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
