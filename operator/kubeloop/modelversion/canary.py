"""The figures a canary step is judged on, read from Prometheus.

The model server counts its requests by HTTP status and times them
(`kubeloop_server_requests_total`, `kubeloop_server_request_duration_seconds`, labelled with
`model` and `model_version`), and Prometheus scrapes its pods (the InferenceService's
`prometheus.io/*` annotations). A step is judged on the increase over the step's duration:
5xx answers / all answers, and the 99th percentile of the latency histogram. Client errors (4xx:
a request naming a missing feature) are the caller's fault, not the version's, so they do not
count against it.

Flagger and Argo Rollouts judge canaries the same way (Prometheus queries over the step); the
query text is built by pure functions so that tests and `promtool` see exactly what runs.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

from kubeloop.modelversion.status import CanaryHealth

QUERY_TIMEOUT_SECONDS = 5.0
SERVER_ERRORS = 'code=~"5.."'


def _selector(namespace: str, model: str, version: str, extra: str = "") -> str:
    def quoted(value: str) -> str:
        return json.dumps(value)  # PromQL string literals accept JSON's escapes

    parts = [f"namespace={quoted(namespace)}", f"model={quoted(model)}", f"model_version={quoted(version)}"]
    return "{" + ",".join(parts + ([extra] if extra else [])) + "}"


def _window(duration: timedelta) -> str:
    return f"{max(int(math.ceil(duration.total_seconds())), 1)}s"


def requests_query(namespace: str, model: str, version: str, duration: timedelta) -> str:
    return (f"sum(increase(kubeloop_server_requests_total{_selector(namespace, model, version)}"
            f"[{_window(duration)}]))")


def errors_query(namespace: str, model: str, version: str, duration: timedelta) -> str:
    return (f"sum(increase(kubeloop_server_requests_total{_selector(namespace, model, version, SERVER_ERRORS)}"
            f"[{_window(duration)}]))")


def latency_p99_query(namespace: str, model: str, version: str, duration: timedelta) -> str:
    return (f"histogram_quantile(0.99, sum by (le) (rate(kubeloop_server_request_duration_seconds_bucket"
            f"{_selector(namespace, model, version)}[{_window(duration)}])))")


def _scalar(prometheus_url: str, query: str) -> float | None:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_SECONDS) as response:  # noqa: S310 - configured URL
        document = json.load(response)
    if document.get("status") != "success":
        raise RuntimeError(document.get("error") or "query failed")
    results = document.get("data", {}).get("result") or []
    if not results:
        return None
    value = float(results[0]["value"][1])
    return None if math.isnan(value) else value


def canary_health(prometheus_url: str | None, namespace: str, model: str, version: str,
                  duration: timedelta) -> CanaryHealth:
    """The version's request count, error rate and p99 latency over the last `duration`."""
    if not prometheus_url:
        return CanaryHealth(unavailable="no Prometheus is configured (KUBELOOP_PROMETHEUS_URL)")
    try:
        requests = _scalar(prometheus_url, requests_query(namespace, model, version, duration))
        errors = _scalar(prometheus_url, errors_query(namespace, model, version, duration))
        latency = _scalar(prometheus_url, latency_p99_query(namespace, model, version, duration))
    except (OSError, urllib.error.URLError, ValueError, KeyError, RuntimeError) as error:
        return CanaryHealth(unavailable=f"Prometheus at {prometheus_url} could not be queried ({error})")
    if not requests:
        return CanaryHealth(requests=requests or 0.0)
    return CanaryHealth(requests=requests, error_rate=(errors or 0.0) / requests, latency_p99_seconds=latency)
