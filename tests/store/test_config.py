"""StoreConfig from a pod's environment, from the operator's settings plus a Secret, and the
rule that credentials never show up in repr() or in error messages."""

from __future__ import annotations

import base64

import pytest

from kubeloop.core.settings import ObjectStore as ObjectStoreSettings
from kubeloop.store import StoreConfig, StoreConfigError, parse_endpoint
from kubeloop.store.config import DEFAULT_BUCKET

ACCESS = "KLACCESSKEY000000001"
SECRET = "s3cr3t-Value-That-Must-Never-Leak-000000"


def pod_env(**overrides: str) -> dict[str, str]:
    env = {
        "S3_ENDPOINT": "http://127.0.0.1:8333",
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "eu-west-1",
        "KUBELOOP_S3_BUCKET": "ml-data",
    }
    env.update(overrides)
    return {key: value for key, value in env.items() if value != "-"}


def test_from_env_reads_the_variables_the_local_secret_provides() -> None:
    config = StoreConfig.from_env(pod_env())
    assert (config.endpoint, config.secure, config.bucket, config.region) == \
        ("127.0.0.1:8333", False, "ml-data", "eu-west-1")
    assert (config.access_key, config.secret_key) == (ACCESS, SECRET)
    assert config.url == "http://127.0.0.1:8333"


def test_from_env_precedence_and_defaults() -> None:
    config = StoreConfig.from_env(pod_env(
        S3_ENDPOINT="-", AWS_ENDPOINT_URL="https://s3.example.com", AWS_REGION="-", KUBELOOP_S3_BUCKET="-"))
    assert (config.endpoint, config.secure, config.region, config.bucket) == \
        ("s3.example.com", True, "us-east-1", DEFAULT_BUCKET)
    # The operator's own variable wins over the generic ones.
    config = StoreConfig.from_env(pod_env(KUBELOOP_S3_ENDPOINT="http://store:9000"))
    assert config.endpoint == "store:9000"
    # kubeloop's Secret keys, when the Secret is mounted with envFrom.
    config = StoreConfig.from_env(pod_env(AWS_ACCESS_KEY_ID="-", AWS_SECRET_ACCESS_KEY="-",
                                          accessKey="A" * 20, secretKey="B" * 40))
    assert (config.access_key, config.secret_key) == ("A" * 20, "B" * 40)


def test_from_env_names_what_is_missing_without_values() -> None:
    with pytest.raises(StoreConfigError, match="S3_ENDPOINT"):
        StoreConfig.from_env(pod_env(S3_ENDPOINT="-"))
    with pytest.raises(StoreConfigError, match="AWS_SECRET_ACCESS_KEY") as raised:
        StoreConfig.from_env(pod_env(AWS_SECRET_ACCESS_KEY="-"))
    assert ACCESS not in str(raised.value)


def test_credentials_are_not_in_repr() -> None:
    config = StoreConfig.from_env(pod_env())
    assert SECRET not in repr(config) and ACCESS not in repr(config)
    assert "127.0.0.1:8333" in repr(config)


def test_from_settings_with_base64_or_plain_secret_data() -> None:
    settings = ObjectStoreSettings(endpoint="http://kubeloop-s3.kubeloop-system:8333", bucket="kubeloop")
    encoded = {"accessKey": base64.b64encode(ACCESS.encode()).decode(),
               "secretKey": base64.b64encode(SECRET.encode()).decode()}
    config = StoreConfig.from_settings(settings, encoded)
    assert (config.endpoint, config.secure, config.bucket) == ("kubeloop-s3.kubeloop-system:8333", False, "kubeloop")
    assert (config.access_key, config.secret_key) == (ACCESS, SECRET)
    plain = StoreConfig.from_settings(settings, {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET,
                                                 "S3_ENDPOINT": "https://other:443", "AWS_REGION": "x-1"},
                                      base64_encoded=False)
    # A Secret for another S3 service carries its own endpoint and region.
    assert (plain.endpoint, plain.secure, plain.region) == ("other:443", True, "x-1")
    raw = StoreConfig.from_settings(settings, {"accessKey": ACCESS.encode(), "secretKey": SECRET.encode()})
    assert raw.secret_key == SECRET


def test_from_secret_merges_data_and_string_data() -> None:
    settings = ObjectStoreSettings()
    secret = {"apiVersion": "v1", "kind": "Secret",
              "data": {"accessKey": base64.b64encode(b"OLD").decode(),
                       "secretKey": base64.b64encode(SECRET.encode()).decode()},
              "stringData": {"accessKey": ACCESS}}
    config = StoreConfig.from_secret(settings, secret)
    assert (config.access_key, config.secret_key) == (ACCESS, SECRET)


def test_secret_errors_name_the_key_not_the_value() -> None:
    settings = ObjectStoreSettings()
    with pytest.raises(StoreConfigError, match="'secretKey'") as raised:
        StoreConfig.from_settings(settings, {"accessKey": base64.b64encode(b"A").decode(), "secretKey": SECRET})
    assert SECRET not in str(raised.value)
    with pytest.raises(StoreConfigError, match="secretKey"):
        StoreConfig.from_settings(settings, {"accessKey": ACCESS}, base64_encoded=False)


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8333", ("127.0.0.1:8333", False)),
    ("https://s3.amazonaws.com", ("s3.amazonaws.com", True)),
    ("https://s3.amazonaws.com/", ("s3.amazonaws.com", True)),
    ("minio.svc:9000", ("minio.svc:9000", True)),
    ("http://[::1]:9000", ("[::1]:9000", False)),
])
def test_parse_endpoint(url: str, expected: tuple[str, bool]) -> None:
    assert parse_endpoint(url) == expected


@pytest.mark.parametrize("url", ["ftp://host", "http://host/bucket", "http://host:99999", "http://", "http://h?x=1"])
def test_parse_endpoint_refuses(url: str) -> None:
    with pytest.raises(StoreConfigError):
        parse_endpoint(url)


def test_endpoint_with_user_info_is_refused_without_echoing_it() -> None:
    with pytest.raises(StoreConfigError) as raised:
        parse_endpoint(f"http://{ACCESS}:{SECRET}@host:9000")
    assert SECRET not in str(raised.value) and ACCESS not in str(raised.value)


@pytest.mark.parametrize("changes", [{"bucket": "Bad_Bucket"}, {"bucket": "ab"}, {"part_size": 1024},
                                     {"max_attempts": 0}, {"endpoint": "http://x:1"}, {"secret_key": ""}])
def test_invalid_fields_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(StoreConfigError):
        StoreConfig.from_env(pod_env()).replace(**changes)
