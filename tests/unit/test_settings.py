import pytest

from kubeloop.core.settings import Settings, SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert settings.namespaces == ()
    assert settings.metrics_port == 8080
    assert settings.max_workers == 32
    assert settings.peering_name is None


def test_from_env():
    settings = Settings.from_env({
        "KUBELOOP_NAMESPACES": "ml, team-b",
        "KUBELOOP_METRICS_PORT": "9090",
        "KUBELOOP_RESYNC_SECONDS": "30",
        "KUBELOOP_IMAGE_TRAINER": "registry.local/trainer:1",
        "KUBELOOP_S3_BUCKET": "models",
        "KUBELOOP_POST_EVENTS": "false",
    })
    assert settings.namespaces == ("ml", "team-b")
    assert settings.metrics_port == 9090
    assert settings.resync_seconds == 30.0
    assert settings.images.trainer == "registry.local/trainer:1"
    assert settings.object_store.bucket == "models"
    assert settings.post_events is False


@pytest.mark.parametrize(("env", "message"), [
    ({"KUBELOOP_METRICS_PORT": "http"}, "KUBELOOP_METRICS_PORT='http' is not an integer"),
    ({"KUBELOOP_MAX_WORKERS": "0"}, "KUBELOOP_MAX_WORKERS=0 must be >= 1"),
    ({"KUBELOOP_POST_EVENTS": "maybe"}, "not a boolean"),
    ({"KUBELOOP_LOG_FORMAT": "xml"}, "must be 'plain' or 'json'"),
    ({"KUBELOOP_RESYNC_SECONDS": "0.1"}, "must be >= 1.0"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)
