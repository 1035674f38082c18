"""What a FeatureSet materialization reports back, and where: the contract between the
materializer pod (`materialize.py`, which writes it) and the FeatureSet controller (which reads
it to write status). Standard library and `kubeloop.store` only, so the operator can import it
without pulling in pyarrow or numpy.

Layout, under the FeatureSet's prefix `featuresets/<namespace>/<name>` (`featureset_prefix`):

    versions/<id>.json, blobs/...     the published versions (`kubeloop.store` layout)
    runs/<runId>.json                 one run result per materialization Job (`run_result_key`),
                                      written at the end of every run, success or failure

A run result (`RunResult.to_dict`, schemaVersion 1):

    {"kind": "FeatureSetRunResult", "schemaVersion": 1,
     "runId": "<Job name>", "pod": "<pod name>" | null,
     "featureSet": {"namespace", "name", "uid", "generation"},
     "specDigest": "sha256:<hex>" | null,         # spec_digest() of the spec the run used
     "startedAt": RFC 3339, "finishedAt": RFC 3339,
     "outcome": "Succeeded" | "Failed",
     "reason": Materialized | ContractViolated | SourceUnavailable | SecretNotFound
               | MaterializationFailed,
     "message": "...", "exitCode": 0 | 1 | 3,
     "version": "<id>" | null, "versionDigest": "sha256:<hex>" | null,
     "rows": int,                                   # rows read (published, when Succeeded)
     "violations": [{"column", "rule", "count", "total", "message"}]}

`column` is null for table-level rules (minRows) and the comma-joined key columns for
uniqueKeys. Exit codes: 0 success, 3 permanent failure (the Job's podFailurePolicy fails it at
once: contract violated, source missing, bad spec), 1 transient (the Job retries: store
unreachable ...). A retried pod of the same Job overwrites the result of its earlier attempt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubeloop.featureset.api import Reason
from kubeloop.store import CorruptObject, NotFound, ObjectStore

log = logging.getLogger("kubeloop.featureset")

RUN_RESULT_KIND = "FeatureSetRunResult"
RUN_RESULT_SCHEMA_VERSION = 1
RUNS_FOLDER = "runs"

SUCCEEDED = "Succeeded"
FAILED = "Failed"

EXIT_SUCCESS = 0
EXIT_TRANSIENT = 1
"""The Job retries the pod (store unreachable, source changed while it was read, ...)."""
EXIT_PERMANENT = 3
"""The Job's podFailurePolicy fails the Job at once (contract violated, source missing, bad spec)."""

RUN_REASONS = frozenset({
    Reason.MATERIALIZED,
    Reason.CONTRACT_VIOLATED,
    Reason.SOURCE_UNAVAILABLE,
    Reason.SECRET_NOT_FOUND,
    Reason.MATERIALIZATION_FAILED,
})

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def featureset_prefix(namespace: str, name: str) -> str:
    """The object store prefix of a FeatureSet: its versions and run results live under it."""
    return f"featuresets/{namespace}/{name}"


def check_run_id(run_id: str) -> str:
    """`run_id` if it can name a run result object (a Job or pod name can), else ValueError."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-253 letters, digits, '.', '_' or '-', starting "
                         "with a letter or digit")
    return run_id


def run_result_key(namespace: str, name: str, run_id: str) -> str:
    return f"{featureset_prefix(namespace, name)}/{RUNS_FOLDER}/{check_run_id(run_id)}.json"


def spec_digest(spec: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the FeatureSet spec as the CR holds it (camelCase), in canonical JSON:
    sorted keys, no whitespace, ASCII. The controller computes it from the same dict it puts in
    KUBELOOP_FEATURESET, so both sides agree on which spec a version was built from."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds (sortable as text), as the store's manifests write times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Violation:
    """One broken rule of the data contract."""

    column: str | None
    """Source column; None for table-level rules (minRows); the comma-joined key columns for
    uniqueKeys."""
    rule: str
    """type, min, max, allowedValues, maxNullFraction, minRows, uniqueKeys, or present (a
    column the FeatureSet reads is missing from the source)."""
    count: int
    """Offending values (rows, for minRows and uniqueKeys; files, for present)."""
    total: int
    """What `count` is out of."""
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "rule": self.rule, "count": self.count, "total": self.total,
                "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Violation:
        return cls(column=data.get("column"), rule=str(data["rule"]), count=int(data["count"]),
                   total=int(data["total"]), message=str(data["message"]))


@dataclass(frozen=True)
class RunResult:
    """The outcome of one materialization run (see the module docstring for the JSON)."""

    run_id: str
    namespace: str
    name: str
    started_at: datetime
    finished_at: datetime
    reason: Reason
    message: str
    exit_code: int
    uid: str | None = None
    generation: int | None = None
    spec_digest: str | None = None
    pod: str | None = None
    version: str | None = None
    version_digest: str | None = None
    rows: int = 0
    violations: Sequence[Violation] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.reason not in RUN_REASONS:
            raise ValueError(f"{self.reason} is not a run result reason")
        if (self.reason == Reason.MATERIALIZED) != (self.exit_code == EXIT_SUCCESS):
            raise ValueError("reason Materialized goes with exit code 0, and only it")

    @property
    def outcome(self) -> str:
        return SUCCEEDED if self.reason == Reason.MATERIALIZED else FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": RUN_RESULT_KIND,
            "schemaVersion": RUN_RESULT_SCHEMA_VERSION,
            "runId": self.run_id,
            "pod": self.pod,
            "featureSet": {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                           "generation": self.generation},
            "specDigest": self.spec_digest,
            "startedAt": format_time(self.started_at),
            "finishedAt": format_time(self.finished_at),
            "outcome": self.outcome,
            "reason": str(self.reason),
            "message": self.message,
            "exitCode": self.exit_code,
            "version": self.version,
            "versionDigest": self.version_digest,
            "rows": self.rows,
            "violations": [violation.to_dict() for violation in self.violations],
        }


def write_run(store: ObjectStore, result: RunResult) -> str:
    """Writes `result` to its key (replacing an earlier attempt of the same run); the key."""
    key = run_result_key(result.namespace, result.name, result.run_id)
    store.put_json(key, result.to_dict())
    return key


def _is_run_result(document: Any) -> bool:
    return (isinstance(document, dict) and document.get("kind") == RUN_RESULT_KIND
            and document.get("schemaVersion") == RUN_RESULT_SCHEMA_VERSION
            and isinstance(document.get("runId"), str) and isinstance(document.get("finishedAt"), str)
            and document.get("outcome") in (SUCCEEDED, FAILED))


def _order(document: Mapping[str, Any]) -> tuple[str, str]:
    return (str(document["finishedAt"]), str(document["runId"]))


def read_runs(store: ObjectStore, namespace: str, name: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The run results of a FeatureSet, oldest first (by finishedAt, then runId).

    With `limit`, only the `limit` most recently written valid results are read: objects are
    read newest first by the listing's modification time (then key) until `limit` of them are
    run results, so a FeatureSet with a long history costs one listing and about `limit` reads.
    A result that is not JSON of the expected kind, or that vanished between listing and
    reading, is skipped with a warning: status must keep working. StoreUnavailable and
    AccessDenied are raised like any store call's.
    """
    folder = f"{featureset_prefix(namespace, name)}/{RUNS_FOLDER}/"
    infos = [info for info in store.list_objects(folder, recursive=False) if info.key.endswith(".json")]
    infos.sort(key=lambda info: (info.last_modified or datetime.min.replace(tzinfo=UTC), info.key), reverse=True)
    documents: list[dict[str, Any]] = []
    for info in infos:
        if limit is not None and len(documents) >= limit:
            break
        try:
            document = store.get_json(info.key)
        except (NotFound, CorruptObject) as error:
            log.warning("featureset: skipping run result %s: %s", info.key, error)
            continue
        if not _is_run_result(document):
            log.warning("featureset: skipping %s: not a %s of schemaVersion %d", info.key, RUN_RESULT_KIND,
                        RUN_RESULT_SCHEMA_VERSION)
            continue
        documents.append(document)
    return sorted(documents, key=_order)


def latest_run(store: ObjectStore, namespace: str, name: str) -> dict[str, Any] | None:
    """The newest run result (by finishedAt, then runId), or None before the first run.

    Reads the few most recently written results only (a retried attempt rewrites its file, so
    the newest by finishedAt is among the most recently modified)."""
    runs = read_runs(store, namespace, name, limit=3)
    return runs[-1] if runs else None
