import json

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from kubeloop.core.kube import ResourceType, api_errors_translated, resource_type, translate_api_error


def api_exception(status: int, message: str = "boom", headers=None) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps({"kind": "Status", "message": message})
    exc.headers = headers or {}
    return exc


@pytest.mark.parametrize(("status", "kind", "delay"), [
    (409, kopf.TemporaryError, 1),
    (429, kopf.TemporaryError, 7),
    (500, kopf.TemporaryError, 10),
    (503, kopf.TemporaryError, 10),
    (403, kopf.TemporaryError, 60),
    (404, kopf.TemporaryError, 10),
    (422, kopf.PermanentError, None),
    (400, kopf.PermanentError, None),
])
def test_translation(status, kind, delay):
    error = translate_api_error(api_exception(status, headers={"Retry-After": "7"}), "applying Job x")
    assert type(error) is kind
    assert "applying Job x" in str(error)
    assert "boom" in str(error)
    if delay is not None:
        assert error.delay == delay


def test_context_manager_translates_and_chains():
    with pytest.raises(kopf.PermanentError) as info, api_errors_translated("creating Service s"):
        raise api_exception(422, "spec.ports: Required value")
    assert "spec.ports: Required value" in str(info.value)
    assert isinstance(info.value.__cause__, ApiException)


def test_paths():
    job = resource_type("batch/v1", "Job")
    assert job.path("ml", "train-1", "status") == "/apis/batch/v1/namespaces/ml/jobs/train-1/status"
    assert resource_type("v1", "Namespace").path(None, "ml") == "/api/v1/namespaces/ml"
    assert ResourceType("v1", "ConfigMap", "configmaps").path("a") == "/api/v1/namespaces/a/configmaps"
    with pytest.raises(ValueError, match="does not know"):
        resource_type("v1", "Nope")
