"""The trainer: the entrypoint of the trainer image (`python -m kubeloop.trainingrun.train`), one
process per rank, started by the TrainingRun's Job directly or under torchrun.

Contract with the TrainingRun controller
----------------------------------------
Environment:
- `KUBELOOP_TRAININGRUN`: JSON `{"name", "namespace", "uid", "generation", "attempt",
  "spec": <the CR spec, camelCase>, "featureSet": {"name", "version", "digest"}}`; the operator
  resolves the FeatureSet version before it creates the Job.
- torchrun / PyTorchJob variables: `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK` (the
  completion index of an Indexed Job with one process per pod; without it, `NODE_RANK *
  NPROC_PER_NODE + LOCAL_RANK`), `NODE_RANK`, `NNODES`, `NPROC_PER_NODE`, `LOCAL_RANK`.
- the object store: `StoreConfig.from_env` (KUBELOOP_S3_ENDPOINT, KUBELOOP_S3_BUCKET, AWS_*).
- optional `KUBELOOP_IMAGE`, `KUBELOOP_GIT_SHA` (recorded), `KUBELOOP_SCRATCH` (a writable
  folder: the root filesystem is read-only; default: the system's temporary folder).
- test hook `KUBELOOP_TRAIN_FAIL_AFTER_EPOCH=k`: in attempt 1 only, every rank exits with code 1
  right after epoch k's checkpoint is written, as if the gang had been killed there; the next
  attempt resumes from that checkpoint. Never set it in production.

Output, under the store prefix `trainingruns/<namespace>/<name>/` (`run_prefix`):
- `progress.json`, by rank 0 at start and after every epoch: `{attempt, epoch, epochs, percent,
  etaSeconds, samplesPerSecond, metrics: {loss, ...}, updated}`;
- `checkpoints/latest.pt`, by rank 0 after every epoch, one PUT (atomic for readers: they see the
  previous checkpoint or this one), with metadata `kubeloop-epoch` and `kubeloop-attempt`;
- `artifact/`: the model, published with `publish_version` (content-addressed, atomic): files
  `model.pt` (the state dict), `model.json` (family, task, hyperparameters, inputs with dtypes,
  output classes), `featureset.json` (FeatureSet name, version, digest, entities and the fitted
  transform parameters the server applies); the manifest holds no time, run name or attempt, so the
  same weights give the same version digest whatever run produced them;
- `record.json`, the run record (`RECORD_KIND`), last, by rank 0;
- `failure.json` `{reason, message, attempt, time}` on a permanent failure (reasons from
  `api.Reason`: InvalidSpec, FeatureSetNotReady, TrainingFailed).

Exit codes: 0 success; 3 permanent (invalid spec or hyperparameter, missing target column, FeatureSet
version missing or corrupt, unusable feature types): the message is printed and written to
`failure.json`; 1 transient (anything else: store unreachable, a rank died): the operator
restarts the gang, which resumes from the last checkpoint.

Distributed training
--------------------
World size 1 runs without a process group (and without DDP: there is nothing to average) unless
`KUBELOOP_TRAIN_FORCE_DDP=1` (the GPU benchmark uses it to exercise nccl on one GPU);
world size > 1 uses DDP with gloo on CPU and nccl on GPU. The rendezvous store is a TCPStore on
`MASTER_ADDR:MASTER_PORT` served by rank 0 (under torchrun, by torchrun's agent: then the
standard `env://` initialisation is used); when `MASTER_ADDR` is a loopback address (the local
cluster, tests) rank 0 binds its listening socket to that address itself (torch's own store
listens on every interface) and gloo is pinned to the loopback interface (`GLOO_SOCKET_IFNAME=lo`
unless set). Each process uses `torch.get_num_threads()` threads, or `cpu_count // NPROC_PER_NODE`
when several processes share a pod and OMP_NUM_THREADS is unset.

Data: the FeatureSet version's `features.parquet` (or its parts, manifest `featureFiles`; digests
verified against the version manifest);
with `spec.labels`, label rows point-in-time joined to it. Inputs are the version's features
(numbers and booleans as float32, oneHot vectors flattened; nulls become 0: put a fillNull step
in the FeatureSet to choose otherwise); strings and timestamps are refused. Rows without a target
are dropped. The validation split is a seeded hash of the entity key (rows of one entity never
straddle the split; by row index when the table has no entity columns, or when grouping by entity
leaves one side empty). Each epoch the training rows are permuted with a generator seeded by
(seed, epoch), padded to a multiple of the world size and dealt round-robin (as DistributedSampler);
validation rows are dealt round-robin too and the predictions gathered, so the metrics are those
of the whole validation set, identical on every rank.

Determinism: python, numpy and torch are seeded; the torch generator is re-seeded at every epoch
from (seed, epoch, rank), so a resumed run needs no RNG state from the interrupted one. With
`spec.deterministic`: `torch.use_deterministic_algorithms(True)`, cudnn deterministic and not
benchmarking, `CUBLAS_WORKSPACE_CONFIG=:4096:8`. Same spec, seed, world size, hardware and thread
count give bit-identical weights, hence the same artifact digest, also across an interruption and
resume; another world size changes the global batch and the reduction order, hence the weights.
"""

from __future__ import annotations

import glob
import hashlib
import io
import ipaddress
import json
import math
import os
import platform
import random
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from pydantic import ValidationError

from kubeloop.core.apimodel import DataSource, spec_errors
from kubeloop.featureset.pointintime import point_in_time_join
from kubeloop.featureset.transforms import stable_hash64
from kubeloop.store import (
    CorruptObject,
    DigestMismatch,
    NotFound,
    ObjectStore,
    StoreConfigError,
    Version,
    format_digest,
)
from kubeloop.trainingrun.api import Hyperparameters, Reason, TrainingRunSpec
from kubeloop.trainingrun.models import (
    Objective,
    UnsupportedFeatureType,
    build_model,
    build_optimizer,
    input_matrix,
    objective_for,
)

EXIT_SUCCESS = 0
EXIT_TRANSIENT = 1
EXIT_PERMANENT = 3

RUN_ENV = "KUBELOOP_TRAININGRUN"
FAIL_AFTER_EPOCH_ENV = "KUBELOOP_TRAIN_FAIL_AFTER_EPOCH"
FORCE_DDP_ENV = "KUBELOOP_TRAIN_FORCE_DDP"
RECORD_KIND = "TrainingRunRecord"
RECORD_SCHEMA_VERSION = 1
ARTIFACT_KIND = "TrainingRunArtifact"
CHECKPOINT_FORMAT = 1

PROGRESS_FILE = "progress.json"
RECORD_FILE = "record.json"
FAILURE_FILE = "failure.json"
CHECKPOINT_FILE = "checkpoints/latest.pt"
ARTIFACT_FOLDER = "artifact"


def run_prefix(namespace: str, name: str) -> str:
    """The store prefix everything of a TrainingRun lives under."""
    return f"trainingruns/{namespace}/{name}"


def featureset_prefix(namespace: str, name: str) -> str:
    return f"featuresets/{namespace}/{name}"


class PermanentFailure(Exception):
    """A failure that another attempt cannot fix; `reason` is an `api.Reason`."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the run to train ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What `KUBELOOP_TRAININGRUN` says."""

    name: str
    namespace: str
    uid: str
    generation: int
    attempt: int
    spec: TrainingRunSpec
    raw_spec: Mapping[str, Any]
    feature_set_name: str
    feature_set_version: str
    feature_set_digest: str | None

    @property
    def prefix(self) -> str:
        return run_prefix(self.namespace, self.name)

    @property
    def hyperparameters(self) -> Hyperparameters:
        return self.spec.builtin_hyperparameters()


def parse_run(text: str | None) -> RunContext:
    """The run from `KUBELOOP_TRAININGRUN`; PermanentFailure (InvalidSpec) naming what is wrong."""
    if not text:
        raise PermanentFailure(Reason.INVALID_SPEC, f"{RUN_ENV} is not set: the trainer does not know what to train")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise PermanentFailure(Reason.INVALID_SPEC, f"{RUN_ENV} is not JSON: {error}") from None
    if not isinstance(doc, dict):
        raise PermanentFailure(Reason.INVALID_SPEC, f"{RUN_ENV} must be a JSON object")
    missing = [key for key in ("name", "namespace", "spec", "featureSet") if not doc.get(key)]
    if missing:
        raise PermanentFailure(Reason.INVALID_SPEC, f"{RUN_ENV} lacks {', '.join(missing)}")
    try:
        spec = TrainingRunSpec.model_validate(doc["spec"])
    except ValidationError as error:
        problems = "; ".join(f"{path}: {message}" for path, message in spec_errors(error, TrainingRunSpec))
        raise PermanentFailure(Reason.INVALID_SPEC, problems) from None
    if spec.model.builtin_family is None:
        raise PermanentFailure(Reason.INVALID_SPEC,
                               "spec.model.image: a user image runs its own trainer, not this one")
    feature_set = doc["featureSet"]
    if not isinstance(feature_set, dict) or not feature_set.get("version"):
        raise PermanentFailure(Reason.INVALID_SPEC, f"{RUN_ENV}: featureSet.version is not resolved")
    return RunContext(
        name=str(doc["name"]), namespace=str(doc["namespace"]), uid=str(doc.get("uid") or ""),
        generation=int(doc.get("generation") or 0), attempt=max(1, int(doc.get("attempt") or 1)),
        spec=spec, raw_spec=doc["spec"],
        feature_set_name=str(feature_set.get("name") or spec.feature_set_ref.name),
        feature_set_version=str(feature_set["version"]),
        feature_set_digest=feature_set.get("digest") or None)


# -- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    """This process's place in the gang."""

    rank: int
    world_size: int
    local_rank: int
    nnodes: int
    procs_per_node: int
    master_addr: str
    master_port: int
    device: torch.device
    backend: str  # gloo or nccl (also recorded for world size 1: what a larger gang would use)
    force_group: bool = False  # KUBELOOP_TRAIN_FORCE_DDP: process group and DDP even for world size 1
    agent_store: bool = False  # under torchrun: its agent serves the rendezvous store

    @property
    def grouped(self) -> bool:
        return self.world_size > 1 or self.force_group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise PermanentFailure(Reason.INVALID_SPEC, f"{name}={value!r} is not an integer") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def process_layout(environ: Mapping[str, str]) -> Distributed:
    """Rank, world size and device from the torchrun / PyTorchJob environment (pure)."""
    world_size = _int_env(environ, "WORLD_SIZE", 1)
    local_rank = _int_env(environ, "LOCAL_RANK", 0)
    procs = _int_env(environ, "NPROC_PER_NODE", 1)
    node_rank = _int_env(environ, "NODE_RANK", 0)
    rank = _int_env(environ, "RANK", node_rank * procs + local_rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise PermanentFailure(Reason.INVALID_SPEC, f"RANK={rank} is not within WORLD_SIZE={world_size}")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count())) if cuda else torch.device("cpu")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank,
                       nnodes=_int_env(environ, "NNODES", max(1, world_size // max(1, procs))),
                       procs_per_node=procs, master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
                       master_port=_int_env(environ, "MASTER_PORT", 29500), device=device,
                       backend="nccl" if cuda else "gloo",
                       force_group=environ.get(FORCE_DDP_ENV, "") in ("1", "true"),
                       agent_store=environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


def start_process_group(layout: Distributed, timeout: timedelta = timedelta(minutes=10)) -> None:
    """Join the gang (world size > 1); see the module docstring for the loopback rendezvous."""
    if not layout.grouped:
        return
    if layout.device.type == "cuda":
        torch.cuda.set_device(layout.device)
    loopback = _is_loopback(layout.master_addr)
    if loopback:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    if layout.agent_store:
        # Under torchrun (procsPerWorker > 1) its agent already serves the store on MASTER_PORT.
        dist.init_process_group(layout.backend, init_method="env://", rank=layout.rank,
                                world_size=layout.world_size, timeout=timeout)
        return
    listener: socket.socket | None = None
    if layout.is_main and loopback:
        family = socket.AF_INET6 if ":" in layout.master_addr else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        address = "127.0.0.1" if layout.master_addr == "localhost" else layout.master_addr
        listener.bind((address, layout.master_port))
        listener.listen(1024)
    store = dist.TCPStore(layout.master_addr, layout.master_port, layout.world_size, layout.is_main,
                          timeout=timeout, master_listen_fd=listener.fileno() if listener else None)
    dist.init_process_group(layout.backend, store=store, rank=layout.rank, world_size=layout.world_size,
                            timeout=timeout)
    if listener is not None:
        # The store holds its own duplicate of the descriptor.
        listener.detach()


def configure_determinism(seed: int, deterministic: bool, layout: Distributed,
                          environ: Mapping[str, str]) -> list[str]:
    """Seed python, numpy and torch; force deterministic algorithms if asked. What it implied."""
    implied = [f"seeded python random, numpy and torch with {seed}",
               "torch generator re-seeded every epoch from (seed, epoch, rank): resuming needs no RNG state",
               "data order: permutation seeded by (seed, epoch), dealt round-robin over ranks"]
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if layout.procs_per_node > 1 and "OMP_NUM_THREADS" not in environ and layout.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // layout.procs_per_node))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        implied += [
            "torch.use_deterministic_algorithms(True): operations without a deterministic "
            "implementation raise instead of running",
            "cudnn.deterministic=True, cudnn.benchmark=False (GPU: slower convolutions)",
            f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}",
            f"bit-identical only with the same world size ({layout.world_size}), device type "
            f"({layout.device.type}), intra-op threads ({torch.get_num_threads()}) and library versions",
        ]
    else:
        implied.append("deterministic algorithms not forced: repeated runs may differ in the last bits")
    if layout.device.type == "cuda":
        implied.append("bf16 autocast on GPU: forward passes in bfloat16, loss and optimizer in float32")
    return implied


# -- the FeatureSet version and the training table ------------------------------------------------


@dataclass
class TrainingData:
    """The training set, as arrays every rank holds in full."""

    features: np.ndarray  # float32 [rows, width]
    target: np.ndarray  # float32 (regression, binary 0/1) or int64 class indices
    validation: np.ndarray  # bool [rows]
    inputs: list[dict[str, Any]]  # {name, dtype, width}
    classes: list[Any] | None
    digest: str
    dropped_rows: int
    split_by: str
    feature_set: dict[str, Any]  # what featureset.json holds
    version: Version

    @property
    def train_index(self) -> np.ndarray:
        return np.flatnonzero(~self.validation)

    @property
    def validation_index(self) -> np.ndarray:
        return np.flatnonzero(self.validation)


def _feature_names(manifest: Mapping[str, Any], fitted: Mapping[str, Any] | None) -> list[str]:
    features = manifest.get("features")
    if isinstance(features, Mapping):
        return [str(name) for name in features]
    if isinstance(features, list):
        return [str(item["name"]) if isinstance(item, Mapping) else str(item) for item in features]
    if fitted is not None:
        return [str(item["name"]) for item in fitted.get("features", [])]
    return []


def load_feature_set(store: ObjectStore, ctx: RunContext, scratch: Path) -> tuple[Version, pa.Table, Any]:
    """The version's manifest, its features table and its fitted parameters, all verified."""
    prefix = featureset_prefix(ctx.namespace, ctx.feature_set_name)
    where = f"FeatureSet {ctx.namespace}/{ctx.feature_set_name} version {ctx.feature_set_version}"
    try:
        version = store.read_manifest(prefix, ctx.feature_set_version)
    except ValueError as error:  # not a version id
        raise PermanentFailure(Reason.FEATURE_SET_NOT_READY, f"{where}: {error}") from None
    except NotFound:
        raise PermanentFailure(Reason.FEATURE_SET_NOT_READY,
                               f"{where} does not exist in the object store ({store.uri(prefix)})") from None
    except (DigestMismatch, CorruptObject) as error:
        raise PermanentFailure(Reason.TRAINING_FAILED, f"{where} is corrupt: {error}") from None
    if ctx.feature_set_digest and ctx.feature_set_digest != version.digest:
        raise PermanentFailure(Reason.TRAINING_FAILED,
                               f"{where} has digest {version.digest}, not {ctx.feature_set_digest} as resolved")
    # The materializer splits large versions into features-00000.parquet, ... (manifest featureFiles).
    names = version.manifest.get("featureFiles") or ["features.parquet"]
    try:
        paths = [store.download(version, str(name), scratch / "features" / str(name)) for name in names]
        fitted = None
        if "fitted.json" in version.files:
            fitted = json.loads(store.download(version, "fitted.json", scratch / "fitted.json").read_bytes())
    except (DigestMismatch, NotFound) as error:
        raise PermanentFailure(Reason.TRAINING_FAILED, f"{where} is corrupt: {error}") from None
    except json.JSONDecodeError as error:
        raise PermanentFailure(Reason.TRAINING_FAILED, f"{where}: fitted.json is not JSON ({error})") from None
    try:
        table = pa.concat_tables([pq.read_table(path) for path in paths])
    except (pa.ArrowInvalid, OSError) as error:
        raise PermanentFailure(Reason.TRAINING_FAILED, f"{where}: features.parquet is unreadable ({error})") from None
    return version, table, fitted


def _source_paths(store: ObjectStore, source: DataSource, scratch: Path) -> list[Path]:
    """Local files of a DataSource (S3 objects downloaded, verified when kubeloop wrote them)."""
    uri = source.uri
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        reader = store if bucket == store.bucket else ObjectStore(store.config.replace(bucket=bucket))
        wildcard = next((i for i, c in enumerate(key) if c in "*?["), None)
        listed = key[:wildcard] if wildcard is not None else key
        keys = [info.key for info in reader.list_objects(listed, recursive=True) if not info.key.endswith("/")]
        if wildcard is not None:
            keys = [k for k in keys if fnmatchcase(k, key)]
        elif not key.endswith("/"):
            keys = [k for k in keys if k == key]
        paths = []
        for index, name in enumerate(sorted(keys)):
            destination = scratch / "labels" / str(index)
            reader.download_file(name, destination)
            paths.append(destination)
        return paths
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    if local.endswith("/") or Path(local).is_dir():
        return sorted(p for p in Path(local).rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    return [Path(p) for p in sorted(glob.glob(local))]


def read_labels(store: ObjectStore, source: DataSource, scratch: Path) -> pa.Table:
    """The label rows `spec.labels` names; PermanentFailure when there are none."""
    paths = _source_paths(store, source, scratch)
    if not paths:
        raise PermanentFailure(Reason.TRAINING_FAILED, f"spec.labels.uri: no files match {source.uri}")
    try:
        if source.effective_format == "csv":
            tables = [pcsv.read_csv(path) for path in paths]
        else:
            tables = [pq.read_table(path) for path in paths]
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, OSError) as error:
        raise PermanentFailure(Reason.TRAINING_FAILED, f"spec.labels: cannot read {source.uri}: {error}") from None


def _class_sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def validation_mask(table: pa.Table, entities: Sequence[str], seed: int, fraction: float) -> tuple[np.ndarray, str]:
    """Rows held out for validation: a seeded hash of the entity key (or of the row index) below
    `fraction`. Pure; the same table, seed and fraction always give the same split."""
    rows = table.num_rows
    seed_mix = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    keys = [e for e in entities if e in table.column_names]
    candidates: list[tuple[str, np.ndarray]] = []
    if keys:
        combined = np.zeros(rows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for column in keys:
                combined = combined * np.uint64(0x100000001B3) ^ stable_hash64(table.column(column).combine_chunks())
        candidates.append(("entity:" + ",".join(keys), combined))
    candidates.append(("row", np.arange(rows, dtype=np.uint64)))
    for split_by, base in candidates:
        with np.errstate(over="ignore"):
            h = _splitmix64(base ^ seed_mix)
        mask = (h >> np.uint64(11)).astype(np.float64) / float(2**53) < fraction
        if 0 < mask.sum() < rows:
            return mask, split_by
    raise PermanentFailure(Reason.TRAINING_FAILED,
                           f"cannot split {rows} rows into training and validation sets (validationFraction "
                           f"{fraction}): the training set needs more rows")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over uint64 arrays (wrapping arithmetic intended)."""
    with np.errstate(over="ignore"):
        return _splitmix64_unchecked(x)


def _splitmix64_unchecked(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def training_data(store: ObjectStore, ctx: RunContext, scratch: Path) -> TrainingData:
    """Load, join, pick the target, encode and split: everything before the first step."""
    version, table, fitted = load_feature_set(store, ctx, scratch)
    manifest = version.manifest
    entities = [str(e) for e in manifest.get("entities") or []]
    timestamp = manifest.get("timestampColumn")
    feature_names = [n for n in _feature_names(manifest, fitted) if n in table.column_names]
    spec = ctx.spec
    if spec.labels is not None:
        if not timestamp:
            raise PermanentFailure(Reason.TRAINING_FAILED,
                                   f"spec.labels: FeatureSet {ctx.feature_set_name} has no timestamp column, "
                                   "so labels cannot be joined point-in-time")
        labels = read_labels(store, spec.labels, scratch)
        label_ts = spec.labels.timestamp_column
        assert label_ts is not None  # the spec validator requires it
        missing = [c for c in [*entities, label_ts] if c not in labels.column_names]
        if missing:
            raise PermanentFailure(Reason.TRAINING_FAILED,
                                   f"spec.labels: the label rows lack column(s) {', '.join(missing)} "
                                   f"(columns: {', '.join(labels.column_names)})")
        joined_features = [n for n in feature_names if n not in labels.column_names]
        try:
            table = point_in_time_join(labels, table, entities=entities, label_timestamp=label_ts,
                                       feature_timestamp=timestamp, ttl=manifest.get("ttl"),
                                       feature_columns=joined_features)
        except (KeyError, TypeError, ValueError, pa.ArrowException) as error:
            raise PermanentFailure(Reason.TRAINING_FAILED, f"spec.labels: point-in-time join failed: {error}") from None
    target = spec.target
    if target not in table.column_names:
        label_columns = [str(c) for c in manifest.get("labelColumns") or []]
        offered = label_columns if spec.labels is None and label_columns else \
            [c for c in table.column_names if c not in feature_names]
        raise PermanentFailure(
            Reason.TRAINING_FAILED,
            f"spec.target: column {target!r} does not exist in the training data; available: "
            f"{', '.join(offered) or 'none'} (all columns: {', '.join(table.column_names)})")
    inputs_names = [n for n in feature_names if n != target]
    if not inputs_names:
        raise PermanentFailure(Reason.TRAINING_FAILED,
                               f"FeatureSet {ctx.feature_set_name} version {version.id} has no feature to train on")
    valid = pc.is_valid(table.column(target))
    if spec.model.task == "regression":
        valid = pc.and_(valid, pc.invert(pc.is_nan(pc.cast(table.column(target), pa.float64())))) \
            if _is_number(table.column(target).type) else valid
    dropped = table.num_rows - int(pc.sum(pc.cast(valid, pa.int64())).as_py() or 0)
    if dropped:
        table = table.filter(valid)
    target_column = table.column(target)
    classes: list[Any] | None = None
    if spec.model.task == "classification":
        classes = sorted(pc.unique(target_column).to_pylist(), key=_class_sort_key)
        if len(classes) < 2:
            raise PermanentFailure(Reason.TRAINING_FAILED,
                                   f"spec.target: column {target!r} has {len(classes)} distinct value(s); "
                                   "classification needs at least 2")
        if len(classes) > 10_000:
            raise PermanentFailure(Reason.TRAINING_FAILED,
                                   f"spec.target: column {target!r} has {len(classes)} distinct values: "
                                   "is it a regression target?")
        indices = pc.index_in(target_column, value_set=pa.array(classes, type=target_column.type))
        y = indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if len(classes) == 2:
            y = y.astype(np.float32)
    else:
        if not _is_number(target_column.type):
            raise PermanentFailure(Reason.TRAINING_FAILED,
                                   f"spec.target: column {target!r} is {target_column.type}; regression needs numbers")
        y = pc.cast(target_column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float32)
    try:
        x, inputs = input_matrix(table, inputs_names)
    except UnsupportedFeatureType as error:
        raise PermanentFailure(Reason.TRAINING_FAILED, str(error)) from None
    mask, split_by = validation_mask(table, entities, spec.seed, spec.validation_fraction)
    digest = hashlib.sha256()
    digest.update(json.dumps({"inputs": inputs, "classes": classes, "target": target},
                             sort_keys=True, default=str).encode())
    for part in (x, np.ascontiguousarray(y), mask):
        digest.update(part.tobytes())
    feature_set = {
        "name": ctx.feature_set_name, "namespace": ctx.namespace, "version": version.id,
        "digest": version.digest, "entities": entities, "timestampColumn": timestamp,
        "features": inputs_names, "fitted": fitted,
    }
    return TrainingData(features=x, target=y, validation=mask, inputs=inputs, classes=classes,
                        digest=format_digest(digest.hexdigest()), dropped_rows=dropped, split_by=split_by,
                        feature_set=feature_set, version=version)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) \
        or pa.types.is_boolean(kind)


def epoch_order(count: int, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """Positions (into the training rows) this rank visits in `epoch`: a permutation seeded by
    (seed, epoch), padded by wrapping to a multiple of the world size, dealt round-robin."""
    generator = np.random.Generator(np.random.PCG64([seed, epoch]))
    order = generator.permutation(count)
    total = -(-count // world_size) * world_size
    if total > count:
        order = np.concatenate([order, order[: total - count]])
    return order[rank::world_size]


# -- metrics (pure numpy) ---------------------------------------------------------------------------


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, average ranks for ties); None with one class only."""
    positive = positive.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(truth & predicted))
    fp = float(np.sum(~truth & predicted))
    fn = float(np.sum(truth & ~predicted))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def evaluation_metrics(objective: Objective, scores: np.ndarray, target: np.ndarray, loss: float) -> dict[str, float]:
    """Validation metrics: loss plus accuracy, auc, f1 (binary: of class 1; multiclass: macro) or
    rmse, mae. A metric that is undefined (auc with one class) is left out."""
    metrics: dict[str, float] = {"loss": loss}
    if objective.kind != "multiclass":
        target = target.reshape(-1)
    if objective.kind == "regression":
        error = scores.astype(np.float64) - target.astype(np.float64)
        metrics["rmse"] = float(np.sqrt(np.mean(error**2)))
        metrics["mae"] = float(np.mean(np.abs(error)))
        return metrics
    if objective.kind == "binary":
        truth = target.astype(np.int64) == 1
        predicted = scores >= 0.5
        metrics["accuracy"] = float(np.mean(truth == predicted))
        auc = roc_auc(truth, scores)
        metrics["f1"] = _f1(truth, predicted)
    else:
        truth_index = target.astype(np.int64)
        predicted_index = scores.argmax(axis=1)
        metrics["accuracy"] = float(np.mean(truth_index == predicted_index))
        aucs = [a for k in range(objective.outputs) if (a := roc_auc(truth_index == k, scores[:, k])) is not None]
        auc = float(np.mean(aucs)) if aucs else None
        present = np.union1d(truth_index, predicted_index)
        metrics["f1"] = float(np.mean([_f1(truth_index == k, predicted_index == k) for k in present]))
    if auc is not None:
        metrics["auc"] = auc
    return metrics


def key_metric_name(objective: Objective) -> str:
    """The headline metric (status.keyMetric): auc (binary), accuracy (multiclass), rmse (regression)."""
    return {"binary": "auc", "multiclass": "accuracy"}.get(objective.kind, "rmse")


# -- collective helpers -----------------------------------------------------------------------------


def _sum_across(layout: Distributed, values: Sequence[float]) -> list[float]:
    tensor = torch.tensor(list(values), dtype=torch.float64, device=layout.device)
    if layout.grouped:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def _gather_rows(layout: Distributed, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation, in rank order, of every rank's rows of `tensor` (sizes may differ)."""
    if not layout.grouped:
        return tensor.cpu()
    size = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=layout.device)
    sizes = [torch.zeros_like(size) for _ in range(layout.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=layout.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(layout.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)]).cpu()


def _barrier(layout: Distributed) -> None:
    if layout.grouped:
        dist.barrier()


# -- checkpoints, progress, record, artifact ----------------------------------------------------------


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return {key: value.detach().cpu().clone() for key, value in inner.state_dict().items()}


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_checkpoint(store: ObjectStore, ctx: RunContext, data_digest: str) -> dict[str, Any] | None:
    """The last checkpoint of this run, if it is one of this run on this data; else None."""
    key = f"{ctx.prefix}/{CHECKPOINT_FILE}"
    try:
        raw = store.get_bytes(key)
    except NotFound:
        return None
    try:
        checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as error:  # a checkpoint written by another torch, or truncated: start over
        print(f"trainer: ignoring unreadable checkpoint {store.uri(key)}: {error}", flush=True)
        return None
    if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("uid") != ctx.uid \
            or checkpoint.get("dataDigest") != data_digest:
        print(f"trainer: ignoring checkpoint {store.uri(key)}: it belongs to another run or other data", flush=True)
        return None
    return checkpoint


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class History:
    """Per-epoch metrics and early-stopping state; what a checkpoint carries besides weights."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.epochs)


def train(ctx: RunContext, store: ObjectStore, layout: Distributed, data: TrainingData,
          environ: Mapping[str, str]) -> tuple[torch.nn.Module, History, Objective]:
    """The training loop: resume, epochs, early stopping, checkpoints and progress."""
    hp = ctx.hyperparameters
    spec = ctx.spec
    objective = objective_for(spec.model.task, len(data.classes) if data.classes is not None else None)
    family = spec.model.builtin_family or "mlp"
    torch.manual_seed(spec.seed)
    model = build_model(family, inputs=data.features.shape[1], outputs=objective.outputs, hyperparameters=hp)
    model.to(layout.device)
    history = History()
    checkpoint = load_checkpoint(store, ctx, data.digest)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        history = History(epochs=list(checkpoint["history"]), best_loss=float(checkpoint["bestLoss"]),
                          best_epoch=int(checkpoint["bestEpoch"]), best_state=checkpoint.get("bestState"),
                          bad_epochs=int(checkpoint["badEpochs"]), stopped_early=bool(checkpoint["stoppedEarly"]),
                          train_seconds=float(checkpoint["trainSeconds"]))
        if layout.is_main:
            print(f"trainer: attempt {ctx.attempt} resumes after epoch {history.completed} "
                  f"(checkpoint of attempt {checkpoint.get('attempt')})", flush=True)
    trained: torch.nn.Module = model
    if layout.grouped:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[layout.device.index] if layout.device.type == "cuda" else None)
    optimizer = build_optimizer(trained.parameters(), hp)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    loss_function = objective.loss()
    amp = layout.device.type == "cuda"
    x_all = torch.from_numpy(data.features).to(layout.device)
    y_all = objective.targets(torch.from_numpy(data.target)).to(layout.device)
    train_rows = data.train_index
    validation_rows = data.validation_index[layout.rank::layout.world_size]
    x_val, y_val = x_all[torch.from_numpy(validation_rows).to(layout.device)], \
        y_all[torch.from_numpy(validation_rows).to(layout.device)]
    fail_after = _int_env(environ, FAIL_AFTER_EPOCH_ENV, 0) if ctx.attempt == 1 else 0
    epoch_seconds: list[float] = []
    if layout.is_main:
        write_progress(store, ctx, history, epoch_seconds, samples_per_second=None, hp=hp)
    if layout.is_main:
        # The moment data is loaded and the model built: bench/bench_trainingrun_overhead.py times
        # `kubectl apply` -> this line.
        print(f"trainer: first training step (epoch {history.completed + 1}, world size {layout.world_size})",
              flush=True)
    for epoch in range(history.completed, hp.epochs):
        if history.stopped_early:
            break
        started = time.perf_counter()
        torch.manual_seed(spec.seed + 1_000_003 * (epoch + 1) + 7919 * layout.rank)
        order = torch.from_numpy(train_rows[epoch_order(train_rows.size, spec.seed, epoch, layout.rank,
                                                        layout.world_size)]).to(layout.device)
        trained.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=layout.device)
        for start in range(0, order.numel(), hp.batch_size):
            batch = order[start:start + hp.batch_size]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=layout.device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = trained(x_all[batch])
            loss = loss_function(outputs.float(), y_all[batch])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * batch.numel()
        total_loss, total_count = _sum_across(layout, [float(loss_sum.item()), float(order.numel())])
        trained.eval()
        with torch.no_grad(), torch.autocast(device_type=layout.device.type, dtype=torch.bfloat16, enabled=amp):
            val_outputs = trained(x_val).float() if x_val.shape[0] else \
                torch.zeros((0, objective.outputs), device=layout.device)
        outputs_all = _gather_rows(layout, val_outputs)
        targets_all = _gather_rows(layout, y_val)
        val_loss = float(objective.loss()(outputs_all, targets_all).item())
        metrics = evaluation_metrics(objective, objective.scores(outputs_all).numpy(),
                                     targets_all.numpy(), val_loss)
        metrics["trainLoss"] = total_loss / max(total_count, 1.0)
        seconds = time.perf_counter() - started
        epoch_seconds.append(seconds)
        history.train_seconds += seconds
        samples_per_second = total_count / seconds if seconds > 0 else None
        history.epochs.append(_json_safe({"epoch": epoch + 1, "attempt": ctx.attempt, "metrics": metrics,
                                          "seconds": round(seconds, 4),
                                          "samplesPerSecond": samples_per_second}))
        if val_loss < history.best_loss:
            history.best_loss, history.best_epoch, history.bad_epochs = val_loss, epoch + 1, 0
            if hp.early_stopping_patience is not None:
                history.best_state = _state_dict(trained)
        else:
            history.bad_epochs += 1
            if hp.early_stopping_patience is not None and history.bad_epochs >= hp.early_stopping_patience:
                history.stopped_early = True
        if layout.is_main:
            save_checkpoint(store, ctx, data.digest, trained, optimizer, history)
            write_progress(store, ctx, history, epoch_seconds, samples_per_second, hp)
            print(progress_line(history, hp.epochs, epoch_seconds, samples_per_second, metrics), flush=True)
        if fail_after and epoch + 1 == fail_after:
            _barrier(layout)
            print(f"trainer: {FAIL_AFTER_EPOCH_ENV}={fail_after}: exiting with code {EXIT_TRANSIENT} "
                  f"after epoch {epoch + 1} (test hook)", flush=True)
            raise SystemExit(EXIT_TRANSIENT)
    if hp.early_stopping_patience is not None and history.best_state is not None:
        inner = trained.module if isinstance(trained, torch.nn.parallel.DistributedDataParallel) else trained
        inner.load_state_dict(history.best_state)
    return trained, history, objective


def save_checkpoint(store: ObjectStore, ctx: RunContext, data_digest: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, history: History) -> None:
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "uid": ctx.uid, "attempt": ctx.attempt, "dataDigest": data_digest,
        "epoch": history.completed, "model": _state_dict(model), "optimizer": optimizer.state_dict(),
        "history": history.epochs, "bestLoss": history.best_loss, "bestEpoch": history.best_epoch,
        "bestState": history.best_state, "badEpochs": history.bad_epochs,
        "stoppedEarly": history.stopped_early, "trainSeconds": history.train_seconds,
    }
    store.put_bytes(f"{ctx.prefix}/{CHECKPOINT_FILE}", _torch_bytes(checkpoint),
                    metadata={"kubeloop-epoch": str(history.completed), "kubeloop-attempt": str(ctx.attempt)})


def _eta(epoch_seconds: Sequence[float], remaining: int) -> float | None:
    if not epoch_seconds:
        return None
    return round(sum(epoch_seconds) / len(epoch_seconds) * remaining, 1)


def write_progress(store: ObjectStore, ctx: RunContext, history: History, epoch_seconds: Sequence[float],
                   samples_per_second: float | None, hp: Hyperparameters, *, finished: bool = False) -> None:
    done = history.completed
    percent = 100 if finished or history.stopped_early else int(100 * done / hp.epochs)
    metrics = history.epochs[-1]["metrics"] if history.epochs else {}
    store.put_json(f"{ctx.prefix}/{PROGRESS_FILE}", _json_safe({
        "attempt": ctx.attempt, "epoch": done, "epochs": hp.epochs, "percent": percent,
        "etaSeconds": 0.0 if finished else _eta(epoch_seconds, hp.epochs - done),
        "samplesPerSecond": samples_per_second, "metrics": metrics, "updated": utc_now(),
    }))


def progress_line(history: History, epochs: int, epoch_seconds: Sequence[float],
                  samples_per_second: float | None, metrics: Mapping[str, float]) -> str:
    done = history.completed
    eta = _eta(epoch_seconds, epochs - done)
    shown = " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
    rate = f"{samples_per_second:,.0f} samples/s" if samples_per_second else "- samples/s"
    return (f"epoch {done}/{epochs} {int(100 * done / epochs)}% eta {eta if eta is not None else '-'}s "
            f"{rate} {shown}")


def artifact_files(ctx: RunContext, data: TrainingData, model: torch.nn.Module,
                   objective: Objective) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The artifact's files and manifest: nothing in them depends on time, run name or attempt."""
    hp = ctx.hyperparameters
    model_json = {
        "family": ctx.spec.model.builtin_family, "task": ctx.spec.model.task, "objective": objective.kind,
        "target": ctx.spec.target,
        "hyperparameters": hp.model_dump(mode="json", by_alias=True),
        "inputs": data.inputs, "inputWidth": int(data.features.shape[1]), "outputs": objective.outputs,
        "classes": data.classes,
    }
    files = {
        "model.pt": _torch_bytes(_state_dict(model)),
        "model.json": json.dumps(_json_safe(model_json), sort_keys=True, indent=2, default=str).encode(),
        "featureset.json": json.dumps(_json_safe(data.feature_set), sort_keys=True, indent=2, default=str).encode(),
    }
    manifest = {
        "kind": ARTIFACT_KIND, "family": model_json["family"], "task": model_json["task"],
        "target": ctx.spec.target,
        "featureSet": {"name": ctx.feature_set_name, "version": data.version.id, "digest": data.version.digest},
        "dataDigest": data.digest,
    }
    return files, manifest


def environment(layout: Distributed, environ: Mapping[str, str], hostnames: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "pyarrow": pa.__version__, "platform": platform.platform(),
        "image": environ.get("KUBELOOP_IMAGE") or None, "gitSha": environ.get("KUBELOOP_GIT_SHA") or None,
        "hostnameCount": hostnames, "worldSize": layout.world_size, "nnodes": layout.nnodes,
        "procsPerNode": layout.procs_per_node, "backend": layout.backend, "deviceType": layout.device.type,
        "cuda": torch.version.cuda if layout.device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(layout.device) if layout.device.type == "cuda" else None,
        "intraOpThreads": torch.get_num_threads(),
    }


def _hostname_count(layout: Distributed) -> int:
    names: list[Any] = [socket.gethostname()]
    if layout.grouped:
        names = [None] * layout.world_size
        dist.all_gather_object(names, socket.gethostname())
    return len(set(names))


def failure_prefix(text: str | None) -> str | None:
    """The run's prefix from `KUBELOOP_TRAININGRUN`, even when its spec is invalid; None if unknown."""
    try:
        doc = json.loads(text or "")
        name, namespace = doc["name"], doc["namespace"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(name, str) and isinstance(namespace, str) and name and namespace):
        return None
    return run_prefix(namespace, name)


def write_failure(store: ObjectStore | None, prefix: str | None, reason: str, message: str,
                  attempt: int | None) -> None:
    """`failure.json` {reason, message, attempt, time}: best effort (the exit code still says permanent)."""
    if store is None or prefix is None:
        return
    try:
        store.put_json(f"{prefix}/{FAILURE_FILE}", {
            "reason": reason, "message": message, "attempt": attempt, "time": utc_now()})
    except Exception as error:
        print(f"trainer: could not write {FAILURE_FILE}: {error}", file=sys.stderr, flush=True)


def run(ctx: RunContext, store: ObjectStore, layout: Distributed, environ: Mapping[str, str]) -> dict[str, Any]:
    """Train and publish; the run record (rank 0) or {} (other ranks)."""
    started_at, started = utc_now(), time.perf_counter()
    implied = configure_determinism(ctx.spec.seed, ctx.spec.deterministic, layout, environ)
    scratch = Path(environ.get("KUBELOOP_SCRATCH") or tempfile.gettempdir()) / f"kubeloop-train-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    data = training_data(store, ctx, scratch)
    data_seconds = time.perf_counter() - started
    hostnames = _hostname_count(layout)
    model, history, objective = train(ctx, store, layout, data, environ)
    if not layout.is_main:
        _barrier(layout)
        return {}
    publish_started = time.perf_counter()
    files, manifest = artifact_files(ctx, data, model, objective)
    version = store.publish_version(f"{ctx.prefix}/{ARTIFACT_FOLDER}", files, manifest)
    publish_seconds = time.perf_counter() - publish_started
    final = history.epochs[history.best_epoch - 1]["metrics"] if (
        ctx.hyperparameters.early_stopping_patience is not None and history.best_epoch) else \
        history.epochs[-1]["metrics"]
    key_name = key_metric_name(objective)
    env = environment(layout, environ, hostnames)
    artifact_uri = store.uri(version.manifest_key)
    model_sha256 = hashlib.sha256(files["model.pt"]).hexdigest()
    record = _json_safe({
        "kind": RECORD_KIND, "schemaVersion": RECORD_SCHEMA_VERSION, "outcome": "Succeeded",
        "run": {"name": ctx.name, "namespace": ctx.namespace, "uid": ctx.uid, "generation": ctx.generation,
                "attempt": ctx.attempt},
        "params": {"target": ctx.spec.target, "task": ctx.spec.model.task, "family": ctx.spec.model.builtin_family,
                   "seed": ctx.spec.seed, "deterministic": ctx.spec.deterministic,
                   "validationFraction": ctx.spec.validation_fraction, "workers": ctx.spec.workers,
                   "procsPerWorker": ctx.spec.procs_per_worker,
                   "labels": ctx.raw_spec.get("labels")},
        "hyperparameters": ctx.hyperparameters.model_dump(mode="json", by_alias=True),
        "featureSet": {"name": ctx.feature_set_name, "version": data.version.id, "digest": data.version.digest,
                       "rows": data.version.manifest.get("rows")},
        "data": {"digest": data.digest, "rows": int(data.features.shape[0]),
                 "trainRows": int(data.train_index.size), "validationRows": int(data.validation_index.size),
                 "droppedRows": data.dropped_rows, "splitBy": data.split_by, "inputs": data.inputs,
                 "classes": data.classes},
        "epochs": history.epochs,
        "metrics": final,
        "keyMetric": {"name": key_name, "value": final.get(key_name)},
        "bestEpoch": history.best_epoch, "stoppedEarly": history.stopped_early,
        "environment": env,
        "determinism": {"seed": ctx.spec.seed, "deterministic": ctx.spec.deterministic, "implies": implied},
        "reproducibility": {
            "seed": ctx.spec.seed, "deterministic": ctx.spec.deterministic, "worldSize": layout.world_size,
            "backend": layout.backend, "deviceType": layout.device.type, "image": env["image"],
            "gitSha": env["gitSha"], "pythonVersion": env["python"], "torchVersion": env["torch"],
            "numpyVersion": env["numpy"], "featureSetDigest": data.version.digest, "dataDigest": data.digest},
        "artifact": {"uri": artifact_uri, "digest": version.digest, "shortDigest": version.digest[7:19],
                     "version": version.id, "modelSha256": format_digest(model_sha256),
                     "files": {name: entry.digest for name, entry in version.files.items()}},
        "timings": {"startedAt": started_at, "finishedAt": utc_now(), "dataSeconds": round(data_seconds, 4),
                    "trainSeconds": round(history.train_seconds, 4), "publishSeconds": round(publish_seconds, 4),
                    "attemptSeconds": round(time.perf_counter() - started, 4)},
    })
    store.put_json(f"{ctx.prefix}/{RECORD_FILE}", record)
    write_progress(store, ctx, history, [], None, ctx.hyperparameters, finished=True)
    print(f"trainer: succeeded: {key_name}={final.get(key_name)} artifact {version.digest} ({artifact_uri})",
          flush=True)
    _barrier(layout)
    return record


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the trainer with `environ` (default: the process's); the exit code."""
    env = dict(os.environ if environ is None else environ)
    ctx: RunContext | None = None
    store: ObjectStore | None = None
    layout: Distributed | None = None
    try:
        try:
            store = ObjectStore.from_env(env)
        except StoreConfigError as error:
            raise PermanentFailure(Reason.INVALID_SPEC, f"object store: {error}") from None
        ctx = parse_run(env.get(RUN_ENV))
        layout = process_layout(env)
        start_process_group(layout)
        run(ctx, store, layout, env)
        return EXIT_SUCCESS
    except PermanentFailure as failure:
        print(f"trainer: permanent failure ({failure.reason}): {failure.message}", file=sys.stderr, flush=True)
        if layout is None or layout.is_main:
            attempt = ctx.attempt if ctx is not None else None
            write_failure(store, failure_prefix(env.get(RUN_ENV)), str(failure.reason), failure.message, attempt)
        return EXIT_PERMANENT
    except SystemExit as stop:
        return int(stop.code or 0)
    except Exception:
        traceback.print_exc()
        print("trainer: transient failure: exiting with code 1 so that the attempt is retried", file=sys.stderr,
              flush=True)
        return EXIT_TRANSIENT
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
