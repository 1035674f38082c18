"""kubeloop.store: the S3 object store layer that FeatureSets, TrainingRuns, ModelVersions and
DriftMonitors keep their data in (minio SDK; runs in pods and in the operator, never imports kopf).

    store = ObjectStore.from_env(os.environ)                  # in a pod
    store = ObjectStore(StoreConfig.from_secret(settings.object_store, secret))   # in the operator
    version = store.publish_version("featuresets/default/churn", {"features.parquet": path},
                                    {"rows": 5_000_000, "schema": {...}})
    store.download(version, "features.parquet", local_path)   # raises DigestMismatch if tampered

Key layout in the bucket
------------------------
Everything a resource writes lives under one prefix, so that deleting the prefix deletes it
all and credentials can be scoped to it. The prefixes below are the convention for the
resources (namespace and name from Kubernetes); the store itself only imposes the layout
within a prefix:

    featuresets/<ns>/<name>/            FeatureSet versions (features, fitted parameters, profile)
    trainingruns/<ns>/<name>/           run records, checkpoints (attempt/epoch in the manifest)
    models/<ns>/<model>/                artifacts of a registered model's versions
    models/<ns>/<model>/index.json      registry index with aliases (compare-and-swap document)
    predictions/<ns>/<modelversion>/    prediction log batches (plain objects, time-ordered keys)
    drift/<ns>/<monitor>/               drift reports (HTML and results)

Within a version prefix (`layout.py`):

    <prefix>/versions/<id>.json         manifest: id, digest, created, files, caller's manifest;
                                        written last, with If-None-Match: *, never overwritten
    <prefix>/blobs/sha256/<hex>         file contents, content-addressed, immutable,
                                        metadata x-amz-meta-sha256: <hex>
    <prefix>/.tmp/<upload>/<n>          temporaries of a publication in progress

Every object kubeloop writes carries `x-amz-meta-sha256` (bare hex); digests are shown and
stored as `sha256:<hex>`. Version ids are the first 12 hex digits of the sha256 of the
canonical JSON of the files' digests and sizes plus the caller's manifest: same content, same
id. Modules: `config` (StoreConfig), `client` (ObjectStore), `versions` (atomic publication),
`documents` (compare-and-swap JSON), `content` (digests), `layout` (keys), `transport`
(HTTP pool, retries, error translation), `errors`.
"""

from kubeloop.store.client import ObjectInfo, ObjectStore
from kubeloop.store.config import StoreConfig, parse_endpoint
from kubeloop.store.content import Content, format_digest, parse_digest
from kubeloop.store.documents import TaggedJson
from kubeloop.store.errors import (
    AccessDenied,
    ConditionalWritesUnsupported,
    Conflict,
    CorruptObject,
    DigestMismatch,
    NotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from kubeloop.store.versions import FileEntry, Version

__all__ = [
    "AccessDenied",
    "ConditionalWritesUnsupported",
    "Conflict",
    "Content",
    "CorruptObject",
    "DigestMismatch",
    "FileEntry",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "StoreConfig",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "TaggedJson",
    "Version",
    "format_digest",
    "parse_digest",
    "parse_endpoint",
]
