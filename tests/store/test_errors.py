"""Failures as a pod meets them: store down, store hanging, store overloaded, wrong credentials,
missing bucket. Each gives its StoreError subclass quickly, after bounded retries, with a message
that names the endpoint and what to check, and never a credential."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeloop.local.s3 import LocalS3
from kubeloop.store import AccessDenied, NotFound, ObjectStore, StoreConfig, StoreError, StoreUnavailable
from kubeloop.store.transport import RetryPolicy
from tests.store.faults import FaultyProxy


class Sleeps(list[float]):
    """Records the backoff waits instead of sleeping: tests count attempts, not seconds."""

    def policy(self, config: StoreConfig) -> RetryPolicy:
        return RetryPolicy(max_attempts=config.max_attempts, base=config.backoff_base,
                           cap=config.backoff_max, sleep=self.append)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def proxy(local_s3: LocalS3) -> Iterator[FaultyProxy]:
    with FaultyProxy(local_s3.port) as running:
        yield running


def through(proxy: FaultyProxy, config: StoreConfig, sleeps: Sleeps, **changes: object) -> ObjectStore:
    configured = config.replace(endpoint=f"127.0.0.1:{proxy.port}", **changes)
    return ObjectStore(configured, retry_policy=sleeps.policy(configured))


def assert_no_credentials(text: str, config: StoreConfig) -> None:
    assert config.secret_key not in text
    assert config.access_key not in text


def test_unreachable_endpoint_is_unavailable_after_bounded_retries(
        store_config: StoreConfig, caplog: pytest.LogCaptureFixture) -> None:
    config = store_config.replace(endpoint=f"127.0.0.1:{closed_port()}")
    sleeps = Sleeps()
    store = ObjectStore(config, retry_policy=sleeps.policy(config))
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailable) as raised:
        store.get_bytes("any/key")
    message = str(raised.value)
    assert config.url in message and "Connection refused" in message
    assert "check the endpoint" in message and "after 4 attempts" in message
    assert len(sleeps) == config.max_attempts - 1
    # Bounded: the whole backoff of a failed operation stays under the sum of the caps.
    assert sum(sleeps) <= sum(min(config.backoff_max, config.backoff_base * 2 ** i) for i in range(3))
    assert_no_credentials(message + caplog.text, config)


def test_real_backoff_of_the_default_policy_is_short(store_config: StoreConfig) -> None:
    policy = RetryPolicy.from_config(store_config)
    waits = [policy.delay(attempt) for attempt in range(1, store_config.max_attempts)]
    assert all(0 < wait <= store_config.backoff_max for wait in waits)
    assert sum(waits) <= 1.75  # what an unreachable store costs a caller before StoreUnavailable


def test_a_hanging_store_times_out_instead_of_blocking(store_config: StoreConfig,
                                                        proxy: FaultyProxy) -> None:
    sleeps = Sleeps()
    store = through(proxy, store_config, sleeps, read_timeout=0.3, max_attempts=2)
    proxy.fail_next(10, "hang")
    with pytest.raises(StoreUnavailable, match="read timed out"):
        store.get_bytes("any/key")
    assert proxy.failed == 2 and len(sleeps) == 1


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_transient_failures_are_retried_until_success(store: ObjectStore, store_config: StoreConfig,
                                                      proxy: FaultyProxy, prefix: str, mode: str) -> None:
    store.put_bytes(f"{prefix}/k", b"value")
    sleeps = Sleeps()
    flaky = through(proxy, store_config, sleeps)
    proxy.fail_next(2, mode)
    assert flaky.get_bytes(f"{prefix}/k") == b"value"
    assert proxy.failed == 2 and len(sleeps) == 2


def test_an_overloaded_store_is_unavailable_once_attempts_run_out(
        store_config: StoreConfig, proxy: FaultyProxy) -> None:
    sleeps = Sleeps()
    flaky = through(proxy, store_config, sleeps)
    proxy.fail_next(100, "503")
    with pytest.raises(StoreUnavailable, match="SlowDown") as raised:
        flaky.get_bytes("any/key")
    assert proxy.failed == store_config.max_attempts
    assert "kept failing" in str(raised.value)


def test_uploads_are_retried_from_the_start(store: ObjectStore, store_config: StoreConfig,
                                            proxy: FaultyProxy, prefix: str) -> None:
    sleeps = Sleeps()
    flaky = through(proxy, store_config, sleeps)
    proxy.fail_next(1, "drop")
    info = flaky.put_bytes(f"{prefix}/up", b"x" * 1000)
    assert info.size == 1000 and store.get_bytes(f"{prefix}/up") == b"x" * 1000


@pytest.mark.parametrize("wrong", ["secret_key", "access_key"])
def test_wrong_credentials_are_access_denied_without_leaking_them(
        store_config: StoreConfig, wrong: str, caplog: pytest.LogCaptureFixture) -> None:
    config = store_config.replace(**{wrong: "W" * 40})
    sleeps = Sleeps()
    store = ObjectStore(config, retry_policy=sleeps.policy(config))
    for operation in (lambda: store.get_bytes("k"), lambda: store.put_bytes("k", b"x"),
                      lambda: list(store.list_objects("")), lambda: store.stat("k")):
        with caplog.at_level(logging.DEBUG), pytest.raises(AccessDenied) as raised:
            operation()
        message = str(raised.value)
        assert config.url in message and "credentials" in message
        assert_no_credentials(message + caplog.text, config)
        assert_no_credentials(message, store_config)
    assert sleeps == []  # not transient: never retried


def test_missing_bucket_is_not_found_and_says_which(store_config: StoreConfig) -> None:
    store = ObjectStore(store_config.replace(bucket="no-such-bucket-here"))
    with pytest.raises(NotFound, match="bucket 'no-such-bucket-here' does not exist"):
        store.get_bytes("k")


def test_tls_against_a_plain_http_store_fails_fast_with_a_hint(store_config: StoreConfig) -> None:
    sleeps = Sleeps()
    config = store_config.replace(secure=True)
    store = ObjectStore(config, retry_policy=sleeps.policy(config))
    with pytest.raises(StoreUnavailable, match="TLS"):
        store.get_bytes("k")
    assert sleeps == []


def test_every_error_is_a_store_error() -> None:
    from kubeloop.store import errors
    for name in ("StoreUnavailable", "AccessDenied", "NotFound", "DigestMismatch", "Conflict",
                 "StoreConfigError", "ConditionalWritesUnsupported", "CorruptObject"):
        assert issubclass(getattr(errors, name), StoreError)


def test_a_download_cut_off_midway_starts_over_and_leaves_no_partial_file(
        store: ObjectStore, store_config: StoreConfig, proxy: FaultyProxy, prefix: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    store.put_bytes(f"{prefix}/big", data)
    sleeps = Sleeps()
    flaky = through(proxy, store_config, sleeps)
    proxy.fail_next(1, "cut")
    info = flaky.download_file(f"{prefix}/big", tmp_path / "big")
    assert (tmp_path / "big").read_bytes() == data and info.size == len(data)
    assert proxy.failed == 1 and len(sleeps) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["big"]  # the broken attempt's temporary is gone
    proxy.fail_next(100, "cut")
    fresh = through(proxy, store_config, Sleeps())  # a new pool: no kept-alive good connection
    with pytest.raises(StoreUnavailable):
        fresh.download_file(f"{prefix}/big", tmp_path / "again")
    assert [p.name for p in tmp_path.iterdir()] == ["big"]
