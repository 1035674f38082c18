"""The optional local Prometheus, scraping real prometheus_client servers on loopback.

Prometheus applies discovered targets every 5 s, so a new target's first sample takes ~5 s:
one Prometheus serves the module and the tests poll the query API (the deadline only guards
against a hang). Without the binary these tests fail under CI (`CI` set) and skip elsewhere,
pointing at .ci/system-deps.sh: they must never pass by not running.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

import psutil
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from kubeloop.local.prometheus import (
    PROMETHEUS_MISSING,
    LocalPrometheus,
    PrometheusNotInstalled,
    PrometheusQueryError,
    prometheus_binary,
    prometheus_config,
)
from kubeloop.local.supervisor import free_port
from tests.conftest import inet_connections

HANG_GUARD = 60.0  # seconds: only stops a test that would hang; never a performance limit
T = TypeVar("T")


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


@pytest.fixture(scope="module")
def binary() -> str:
    found = prometheus_binary()
    # `make test` installs it (.ci/system-deps.sh); a missing binary is a failed set-up, not a skip.
    if found is None:
        pytest.fail(PROMETHEUS_MISSING)
    return found


@dataclass
class MetricsServer:
    """A prometheus_client HTTP server on 127.0.0.1 with one counter."""

    counter: Counter
    server: WSGIServer
    thread: threading.Thread

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metrics_server(metric: str) -> MetricsServer:
    registry = CollectorRegistry()
    counter = Counter(metric, "Ticks counted by a test server.", registry=registry)
    server, thread = start_http_server(free_port(), addr="127.0.0.1", registry=registry)
    return MetricsServer(counter, server, thread)


@pytest.fixture(scope="module")
def server_a() -> Iterator[MetricsServer]:
    server = metrics_server("kubeloop_test_a_ticks")
    yield server
    server.close()


@pytest.fixture(scope="module")
def server_b() -> Iterator[MetricsServer]:
    server = metrics_server("kubeloop_test_b_ticks")
    yield server
    server.close()


@pytest.fixture(scope="module")
def prometheus(binary: str, server_a: MetricsServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    with LocalPrometheus(tmp_path_factory.mktemp("prometheus"), {"server-a": [server_a.target]},
                         binary=binary) as running:
        yield running


def eventually(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sample(prometheus: LocalPrometheus, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_config_scrapes_every_targets_file_each_second(tmp_path: Path) -> None:
    config = prometheus_config(targets_dir=tmp_path, scrape_interval=1.0)
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == [f"{tmp_path}/*.json"]
    assert prometheus_config(targets_dir=tmp_path, scrape_interval=0.5)["global"]["scrape_interval"] == "500ms"


def test_ready_and_listening_on_loopback_only(prometheus: LocalPrometheus) -> None:
    assert prometheus.startup_seconds is not None
    sockets = {(c.laddr.ip, c.laddr.port) for c in inet_connections(psutil.Process(prometheus.pid))
               if c.status == psutil.CONN_LISTEN}
    assert sockets == {("127.0.0.1", prometheus.port)}


def test_scrapes_a_counter_as_it_grows(prometheus: LocalPrometheus, server_a: MetricsServer) -> None:
    server_a.counter.inc(3)
    expr = 'kubeloop_test_a_ticks_total{job="server-a"}'
    eventually(lambda: sample(prometheus, expr) == 3, "the first sample of server-a")
    server_a.counter.inc(2)
    eventually(lambda: sample(prometheus, expr) == 5, "a later scrape of server-a")
    assert sample(prometheus, 'up{job="server-a"}') == 1


def test_add_targets_scrapes_a_new_server_without_restart(
        prometheus: LocalPrometheus, server_a: MetricsServer, server_b: MetricsServer) -> None:
    pid = prometheus.pid
    server_b.counter.inc(7)
    prometheus.add_targets("model-servers", [server_b.target], labels={"model": "churn"})
    result = eventually(lambda: prometheus.query('kubeloop_test_b_ticks_total{job="model-servers"}'),
                        "the first sample of the added server")
    assert result[0]["metric"]["model"] == "churn"
    assert result[0]["metric"]["instance"] == server_b.target
    assert float(result[0]["value"][1]) == 7
    assert prometheus.pid == pid and prometheus.alive()
    assert prometheus.targets() == {"model-servers": [server_b.target], "server-a": [server_a.target]}
    health = {t["labels"]["job"]: t["health"] for t in prometheus.active_targets()}
    assert health == {"server-a": "up", "model-servers": "up"}

    prometheus.remove_targets("model-servers")
    eventually(lambda: {t["labels"]["job"] for t in prometheus.active_targets()} == {"server-a"},
               "the removed server to be dropped")
    assert prometheus.targets() == {"server-a": [server_a.target]}


def test_query_errors_are_raised(prometheus: LocalPrometheus) -> None:
    with pytest.raises(PrometheusQueryError, match="bad_data"):
        prometheus.query("rate(up[")


def test_only_loopback_targets_and_safe_job_names(prometheus: LocalPrometheus) -> None:
    with pytest.raises(ValueError, match="loopback"):
        prometheus.add_targets("remote", ["10.0.0.8:9090"])
    with pytest.raises(ValueError, match="loopback"):
        prometheus.add_targets("no-port", ["127.0.0.1"])
    with pytest.raises(ValueError, match="job name"):
        prometheus.add_targets("../escape", ["127.0.0.1:9090"])


def test_stop_leaves_no_process_and_frees_the_port(binary: str, tmp_path: Path) -> None:
    instance = LocalPrometheus(tmp_path, binary=binary).start()
    pid, port = instance.pid, instance.port
    assert instance.query("vector(1)")[0]["value"][1] == "1"
    instance.stop()
    assert not psutil.pid_exists(pid)
    assert not instance.alive()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_missing_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("kubeloop.local.prometheus._WELL_KNOWN_PATHS", ())
    assert prometheus_binary() is None
    with pytest.raises(PrometheusNotInstalled, match="system-deps.sh"):
        LocalPrometheus(tmp_path).start()
