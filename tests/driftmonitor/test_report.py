"""The HTML report: self-contained, escaped, drifted features named prominently, one plot per
feature with histograms."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import numpy as np

from kubeloop.driftmonitor.report import MAX_CATEGORIES_PLOTTED, drift_report, histogram_svg
from kubeloop.driftmonitor.stats import Histogram, detect_drift_on_rows


def result_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 1, "kind": "kubeloop.dev/DriftCheckResult", "checkId": "20260301T123000Z",
        "monitor": {"name": "fraud-drift", "namespace": "ml", "uid": "u"}, "model": "fraud",
        "modelVersion": "fraud-v3", "featureSet": {"name": "customers", "version": "abcdef012345"},
        "time": "2026-03-01T12:30:02Z", "window": {"since": "2026-03-01T10:30:00Z", "until": "2026-03-01T12:30:00Z"},
        "sampleSize": 5000, "minSamples": 1000, "verdict": "drift", "drifted": True, "driftShare": 0.5,
        "driftedFeatures": ["<script>alert(1)</script>"],
        "features": [
            {"name": "<script>alert(1)</script>", "method": "wasserstein", "statistic": 0.42, "pValue": None,
             "threshold": 0.1, "drifted": True, "nullFraction": 0.01, "unseenCategories": None},
            {"name": "country", "method": "chi2", "statistic": 3.2, "pValue": 0.36, "threshold": 0.05,
             "drifted": False, "nullFraction": 0.0, "unseenCategories": 2},
        ],
        "reportUri": "s3://b/drift/ml/fraud-drift/checks/20260301T123000Z/report.html", "reference": "profile",
        "correction": "fdr",
    }
    doc.update(changes)
    return doc


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


def test_report_is_self_contained_escaped_and_names_the_drifted_features() -> None:
    histograms = {
        "<script>alert(1)</script>": Histogram(reference=[10, 20, 30], current=[30, 20, 10], edges=[0.0, 1.0, 2.0, 5.0]),
        "country": Histogram(reference=[5, 5, 0], current=[4, 5, 1], labels=["de", "<b>fr</b>", "(unseen)"]),
    }
    page = drift_report(result_doc(), histograms, {"country": {"kind": "categorical", "note": "a & b"}})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>fr</b>" not in page and "&lt;b&gt;fr&lt;/b&gt;" in page and "a &amp; b" in page
    verdict = re.search(r'<div class="verdict drift">(.*?)</div>', page)
    assert verdict is not None and "Drifted features: <strong>&lt;script&gt;" in verdict.group(1)
    collector = _Collector()
    collector.feed(page)
    assert "script" not in collector.tags and "link" not in collector.tags and "img" not in collector.tags
    assert not [value for name, value in collector.attributes if name in ("src", "href")]
    assert collector.tags.count("svg") == 2
    # drifted features come first in the table
    assert page.index("&lt;script&gt;alert(1)") < page.index("<td>country</td>")


def test_insufficient_samples_report_says_why() -> None:
    page = drift_report(result_doc(verdict="insufficient-samples", drifted=None, driftShare=None, features=[],
                                   driftedFeatures=[], sampleSize=12))
    assert "No verdict: 12 predictions" in page and "minSamples = 1000" in page and "<svg" not in page


def test_no_drift_report() -> None:
    page = drift_report(result_doc(verdict="no-drift", drifted=False, driftShare=0.0, driftedFeatures=[]))
    assert 'class="verdict nodrift"' in page and "No dataset drift" in page


def test_histograms_from_the_engine_plot() -> None:
    rng = np.random.default_rng(1)
    result = detect_drift_on_rows({"x": rng.normal(size=2000), "c": rng.choice([f"v{i}" for i in range(40)], 2000)},
                                  {"x": rng.normal(1, 1, size=2000), "c": rng.choice([f"v{i}" for i in range(45)], 2000)})
    for feature in result.features:
        assert feature.histogram is not None
        svg = histogram_svg(feature.name, feature.histogram)
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert "nan" not in svg.lower()
    categorical = histogram_svg("c", result.features[1].histogram)  # type: ignore[arg-type]
    assert categorical.count("<title>") == 2 * MAX_CATEGORIES_PLOTTED


def test_degenerate_histograms_do_not_crash() -> None:
    for histogram in (Histogram(reference=[0], current=[0], edges=[1.0, 1.0]),
                      Histogram(reference=[3], current=[0], labels=["only"]),
                      Histogram(reference=[], current=[], labels=[])):
        svg = histogram_svg("x", histogram)
        assert svg.startswith("<svg") and "nan" not in svg.lower()
