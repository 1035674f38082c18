"""The HTML report of one drift check: a pure function from the check's result document (the
result.json the check writes) and per-feature histograms to one self-contained HTML page.

Self-contained means no script, no stylesheet or font from elsewhere: plots are inline SVG drawn
here (no plotting library in the check image), so the page renders from the object store, an
air-gapped cluster or an email attachment alike. Every name and value from data is escaped
(feature and category names come from users' data). Drifted features are named at the top.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kubeloop.driftmonitor.stats import Histogram

MAX_CATEGORIES_PLOTTED = 20
"""Categorical plots show the most frequent reference categories (plus the pooled cells)."""

_WIDTH, _HEIGHT, _PAD = 360, 150, 24
_REFERENCE_COLOR, _CURRENT_COLOR = "#4c78a8", "#f58518"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.verdict{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:15px}
.drift{background:#fde2e1;border:1px solid #e45756} .nodrift{background:#e3f4e1;border:1px solid #54a24b}
.insufficient{background:#f3f3f3;border:1px solid #999}
table{border-collapse:collapse;font-size:13px} th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} tr.drifted td{background:#fff1f0}
.meta td{border:none;padding:2px 8px} .feature{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
.note{color:#666;font-size:12px}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return _esc(number)
    if number != 0 and (abs(number) < 10 ** -digits or abs(number) >= 10**6):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{number:.{digits}f}" else f"{number}"


def _proportions(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def histogram_svg(name: str, histogram: Histogram) -> str:
    """Reference vs current as an inline SVG: densities over the bins of a numerical feature
    (bins differ in width, so heights are proportion / width), proportions of the categories of a
    categorical one (the most frequent `MAX_CATEGORIES_PLOTTED`)."""
    reference, current = _proportions(histogram.reference), _proportions(histogram.current)
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD
    bars: list[str] = []
    axis_labels: list[str] = []
    if histogram.edges is not None:
        edges = histogram.edges
        low, high = edges[0], edges[-1]
        span = (high - low) or 1.0
        widths = [max(edges[i + 1] - edges[i], span * 1e-3) for i in range(len(edges) - 1)]
        ref_density = [p / w for p, w in zip(reference, widths, strict=True)]
        cur_density = [p / w for p, w in zip(current, widths, strict=True)]
        top = max([*ref_density, *cur_density, 1e-12])
        for i in range(len(widths)):
            x0 = _PAD + (edges[i] - low) / span * inner_w
            x1 = _PAD + (edges[i] + widths[i] - low) / span * inner_w
            for density, color, opacity in ((ref_density[i], _REFERENCE_COLOR, 0.55),
                                            (cur_density[i], _CURRENT_COLOR, 0.55)):
                h = density / top * inner_h
                bars.append(f'<rect x="{x0:.1f}" y="{_PAD + inner_h - h:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                            f'height="{h:.1f}" fill="{color}" fill-opacity="{opacity}"/>')
        axis_labels.append(f'<text x="{_PAD}" y="{_HEIGHT - 6}" font-size="10">{_esc(_number(low, 3))}</text>')
        axis_labels.append(f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 6}" font-size="10" text-anchor="end">'
                           f'{_esc(_number(high, 3))}</text>')
    else:
        labels = histogram.labels or [str(i) for i in range(len(reference))]
        order = sorted(range(len(labels)), key=lambda i: -(histogram.reference[i] + histogram.current[i]))
        shown = sorted(order[:MAX_CATEGORIES_PLOTTED])
        top = max([*(reference[i] for i in shown), *(current[i] for i in shown), 1e-12])
        slot = inner_w / max(len(shown), 1)
        for k, i in enumerate(shown):
            x = _PAD + k * slot
            for offset, value, color in ((0.1, reference[i], _REFERENCE_COLOR), (0.5, current[i], _CURRENT_COLOR)):
                h = value / top * inner_h
                bars.append(f'<rect x="{x + offset * slot:.1f}" y="{_PAD + inner_h - h:.1f}" '
                            f'width="{0.4 * slot:.1f}" height="{h:.1f}" fill="{color}">'
                            f"<title>{_esc(labels[i])}: {_esc(_number(value))}</title></rect>")
            label = labels[i] if len(labels[i]) <= 10 else labels[i][:9] + "\u2026"
            axis_labels.append(f'<text x="{x + slot / 2:.1f}" y="{_HEIGHT - 6}" font-size="9" '
                               f'text-anchor="middle">{_esc(label)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
            f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{_esc(name)}: reference vs current">'
            f'<line x1="{_PAD}" y1="{_PAD + inner_h}" x2="{_WIDTH - _PAD}" y2="{_PAD + inner_h}" stroke="#888"/>'
            + "".join(bars) + "".join(axis_labels) + "</svg>")


def _verdict_block(result: Mapping[str, Any]) -> str:
    verdict = result.get("verdict")
    drifted = list(result.get("driftedFeatures") or [])
    names = ", ".join(f"<strong>{_esc(n)}</strong>" for n in drifted)
    if verdict == "insufficient-samples":
        return (f'<div class="verdict insufficient">No verdict: {_esc(result.get("sampleSize"))} predictions in the '
                f'window, fewer than minSamples = {_esc(result.get("minSamples"))}.</div>')
    share = result.get("driftShare")
    share_text = "&ndash;" if share is None else f"{float(share):.0%}"
    if verdict == "drift":
        return (f'<div class="verdict drift">Drift detected: {share_text} of the tested features drifted. '
                f"Drifted features: {names}</div>")
    suffix = f" Drifted features (below the dataset threshold): {names}" if drifted else ""
    return f'<div class="verdict nodrift">No dataset drift: {share_text} of the tested features drifted.{suffix}</div>'


def drift_report(result: Mapping[str, Any], histograms: Mapping[str, Histogram] | None = None,
                 details: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The report page of one check. `result` is the result.json document; `histograms` maps a
    feature to its reference/current counts; `details` may add per-feature values that the
    result does not carry (kind, effectSize, errorBound, note)."""
    histograms = histograms or {}
    details = details or {}
    monitor = result.get("monitor") or {}
    feature_set = result.get("featureSet") or {}
    window = result.get("window") or {}
    title = f"Drift check {monitor.get('namespace', '')}/{monitor.get('name', '')} {result.get('checkId', '')}"
    meta_rows = [
        ("Model", f"{result.get('model')} (version {result.get('modelVersion')})"),
        ("FeatureSet", f"{feature_set.get('name')} version {feature_set.get('version')}"),
        ("Window", f"{window.get('since')} \u2192 {window.get('until')}"),
        ("Samples", f"{result.get('sampleSize')} (min {result.get('minSamples')})"),
        ("Reference", result.get("reference")),
        ("Correction", result.get("correction")),
        ("Finished", result.get("time")),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        _verdict_block(result),
        '<table class="meta">' + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in meta_rows)
        + "</table>",
    ]
    features = list(result.get("features") or [])
    if features:
        parts.append("<h2>Features</h2><table><thead><tr><th>Feature</th><th>Kind</th><th>Method</th>"
                     "<th>Statistic</th><th>p-value</th><th>Threshold</th><th>Effect size</th><th>Drifted</th>"
                     "<th>Missing</th><th>Unseen categories</th><th>Error bound</th><th>Note</th></tr></thead><tbody>")
        for feature in sorted(features, key=lambda f: (not f.get("drifted"), str(f.get("name")))):
            extra = details.get(str(feature.get("name")), {})
            css = ' class="drifted"' if feature.get("drifted") else ""
            null_fraction = feature.get("nullFraction")
            parts.append(
                f"<tr{css}><td>{_esc(feature.get('name'))}</td><td>{_esc(extra.get('kind', ''))}</td>"
                f"<td>{_esc(feature.get('method'))}</td><td class=\"num\">{_number(feature.get('statistic'))}</td>"
                f"<td class=\"num\">{_number(feature.get('pValue'))}</td>"
                f"<td class=\"num\">{_number(feature.get('threshold'))}</td>"
                f"<td class=\"num\">{_number(extra.get('effectSize'))}</td>"
                f"<td>{'<strong>DRIFT</strong>' if feature.get('drifted') else 'no'}</td>"
                f"<td class=\"num\">{'&ndash;' if null_fraction is None else f'{float(null_fraction):.1%}'}</td>"
                f"<td class=\"num\">{_number(feature.get('unseenCategories'))}</td>"
                f"<td class=\"num\">{_number(extra.get('errorBound'))}</td>"
                f"<td class=\"note\">{_esc(extra.get('note') or '')}</td></tr>")
        parts.append("</tbody></table>")
    plotted = [f for f in features if str(f.get("name")) in histograms]
    if plotted:
        parts.append(f'<h2>Distributions</h2><div class="legend"><span style="background:{_REFERENCE_COLOR}"></span>'
                     f'reference<span style="background:{_CURRENT_COLOR}"></span>current window</div>')
        for feature in sorted(plotted, key=lambda f: (not f.get("drifted"), str(f.get("name")))):
            name = str(feature.get("name"))
            flag = " &mdash; <strong>drifted</strong>" if feature.get("drifted") else ""
            parts.append(f'<div class="feature"><div>{_esc(name)}{flag}</div>{histogram_svg(name, histograms[name])}'
                         "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
