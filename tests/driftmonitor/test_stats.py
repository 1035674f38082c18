"""The drift statistics engine against scipy's reference implementations, known shifts, the
false-positive rate under no drift, corrections against a hand computation, the profile mode's
documented error bounds, and missing values / unseen categories."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from kubeloop.driftmonitor import stats as drift
from kubeloop.driftmonitor.stats import (
    DriftOptions,
    detect_drift,
    detect_drift_on_rows,
    references_from_profile,
)
from kubeloop.featureset.profile import ProfileOptions, build_profile

SIZES = [(5, 7), (40, 40), (300, 450), (2000, 1500), (12_000, 9_000), (30_000, 30_000)]


@pytest.mark.parametrize(("n1", "n2"), SIZES)
def test_ks_equals_scipy(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 * 7 + n2)
    for a, b in ((rng.normal(size=n1), rng.normal(0.2, 1.3, size=n2)),
                 (rng.integers(0, 8, n1).astype(float), rng.integers(0, 9, n2).astype(float))):  # ties
        statistic, p_value = drift.ks_test(a, b)
        expected = stats.ks_2samp(a, b)
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("n1", "n2"), SIZES)
def test_wasserstein_equals_scipy(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 + n2)
    for a, b in ((rng.gamma(2.0, 3.0, n1), rng.gamma(2.2, 3.0, n2)),
                 (rng.integers(0, 5, n1).astype(float), rng.integers(0, 6, n2).astype(float))):
        assert drift.wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(
            stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)
        assert drift.normed_wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a), rel=1e-9)


def test_chi2_equals_scipy_contingency() -> None:
    rng = np.random.default_rng(3)
    for cells in (3, 4, 7, 30):
        reference = rng.integers(0, 200, cells)
        current = rng.integers(0, 200, cells)
        reference[0] = current[0] = 0  # a cell empty in both samples is dropped, as it must be for scipy
        statistic, p_value, cramers_v = drift.chi2_test(reference, current)
        table = np.vstack([reference, current])[:, 1:]
        expected = stats.chi2_contingency(table, correction=False)
        assert statistic == pytest.approx(expected.statistic, rel=1e-10)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        assert cramers_v == pytest.approx(stats.contingency.association(table, method="cramer", correction=False),
                                          rel=1e-9)


def test_two_by_two_chi2_is_the_two_proportion_z_test() -> None:
    # Evidently's test for binary features at small n is the pooled two-proportion z-test: chi2 = z^2.
    reference, current = np.array([420, 580]), np.array([470, 530])
    p1, p2 = reference[0] / reference.sum(), current[0] / current.sum()
    pooled = (reference[0] + current[0]) / (reference.sum() + current.sum())
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / reference.sum() + 1 / current.sum()))
    statistic, p_value, _ = drift.chi2_test(reference, current)
    assert statistic == pytest.approx(z * z, rel=1e-12)
    assert p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_jensen_shannon_and_psi_equal_their_definitions() -> None:
    rng = np.random.default_rng(4)
    reference, current = rng.integers(1, 100, 12), rng.integers(0, 100, 12)
    current[3] = 0
    r, c = reference / reference.sum(), current / current.sum()
    assert drift.jensen_shannon(reference, current) == pytest.approx(jensenshannon(r, c), rel=1e-12)
    c_filled = np.where(c == 0, 1e-4, c)
    assert drift.psi(reference, current) == pytest.approx(float(np.sum((c_filled - r) * np.log(c_filled / r))))


def test_ks_p_values_are_vectorized_like_scipy() -> None:
    rng = np.random.default_rng(5)
    samples = [(rng.normal(size=20_000), rng.normal(0.01 * i, 1, size=15_000)) for i in range(5)]
    d = np.array([drift.ks_test(a, b)[0] for a, b in samples])
    p = drift.ks_p_values(d, np.full(5, 20_000), np.full(5, 15_000))
    expected = [stats.ks_2samp(a, b).pvalue for a, b in samples]
    assert p == pytest.approx(expected, rel=1e-9, abs=1e-300)


# -- corrections --------------------------------------------------------------------------------------


def test_bonferroni_and_fdr_against_a_hand_computation() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    # m = 5 tests (NaN is no test). Bonferroni: 5 p, capped at 1.
    assert np.allclose(drift.adjust_p_values(p, "bonferroni"), [0.05, 0.2, 0.15, 0.025, np.nan, 1.0], equal_nan=True)
    # BH by hand: sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> p m / rank = 0.025, 0.025, 0.05, 0.05, 0.5,
    # then the running minimum from the largest rank down (already monotone here).
    assert np.allclose(drift.adjust_p_values(p, "fdr"), [0.025, 0.05, 0.05, 0.025, np.nan, 0.5], equal_nan=True)
    assert np.allclose(drift.adjust_p_values(p, "none"), p, equal_nan=True)


def test_fdr_adjusted_p_values_reproduce_the_step_up_procedure() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        m = int(rng.integers(1, 40))
        p = np.where(rng.random(m) < 0.3, rng.random(m) * 0.01, rng.random(m))
        alpha = 0.05
        ordered = np.sort(p)
        passing = np.flatnonzero(ordered <= alpha * np.arange(1, m + 1) / m)
        k = passing[-1] + 1 if passing.size else 0
        expected_rejected = p <= (ordered[k - 1] if k else -1.0)
        assert np.array_equal(drift.adjust_p_values(p, "fdr") <= alpha, expected_rejected)


# -- detection ----------------------------------------------------------------------------------------


def _frame(rng: np.random.Generator, n: int, *, shift: bool) -> dict[str, np.ndarray]:
    categories = np.array(["a", "b", "c", "d"])
    cat_p = [0.4, 0.3, 0.2, 0.1] if not shift else [0.3, 0.3, 0.2, 0.2]
    return {
        "mean": rng.normal(0.5 if shift else 0.0, 1.0, n),
        "variance": rng.normal(0.0, 2.0 if shift else 1.0, n),
        "stable": rng.normal(3.0, 2.0, n),
        "category": rng.choice(categories, n, p=cat_p),
        "new_category": rng.choice(np.array(["x", "y", "z"]) if shift else np.array(["x", "y"]), n),
        "stable_category": rng.choice(categories, n, p=[0.25] * 4),
    }


@pytest.mark.parametrize("n", [500, 5_000, 50_000])
def test_known_shifts_are_detected_and_stable_features_are_not(n: int) -> None:
    rng = np.random.default_rng(n)
    result = detect_drift_on_rows(_frame(rng, n, shift=False), _frame(rng, n, shift=True))
    assert result.drifted_features == ["mean", "variance", "category", "new_category"]
    assert result.drift_share == pytest.approx(4 / 6)
    assert result.drifted is True
    by_name = {f.name: f for f in result.features}
    assert by_name["new_category"].unseen_categories == 1
    expected_method = "ks" if n <= 1000 else "wasserstein"
    assert by_name["mean"].method == expected_method and by_name["category"].method == "chi2"


def test_identical_distributions_false_positive_rate_is_nominal() -> None:
    """Under no drift each p-value test rejects with probability alpha = 0.05. Over R = 400
    seeded repetitions of 4 features, the count of rejections is Binomial(1600, 0.05) (mean 80,
    sd 8.7); [45, 120] is the 99.99% range (|z| > 4 has probability < 1e-4), so the test checks
    the level without being flaky, and the seed makes it deterministic anyway."""
    rng = np.random.default_rng(2026)
    options = DriftOptions(correction="none", method="auto")
    rejections = 0
    for _ in range(400):
        reference = {"x": rng.normal(size=300), "y": rng.exponential(size=300),
                     "c": rng.choice(["a", "b", "c"], 300), "d": rng.choice(["u", "v"], 300, p=[0.8, 0.2])}
        current = {"x": rng.normal(size=400), "y": rng.exponential(size=400),
                   "c": rng.choice(["a", "b", "c"], 400), "d": rng.choice(["u", "v"], 400, p=[0.8, 0.2])}
        result = detect_drift_on_rows(reference, current, options)
        assert [f.method for f in result.features] == ["ks", "ks", "chi2", "chi2"]
        rejections += sum(f.raw_p_value is not None and f.raw_p_value < 0.05 for f in result.features)
    assert 45 <= rejections <= 120


def test_effect_size_floor_stops_negligible_shifts_in_huge_samples() -> None:
    rng = np.random.default_rng(8)
    n = 400_000
    reference = {"c": rng.choice(["a", "b"], n, p=[0.5, 0.5])}
    current = {"c": rng.choice(["a", "b"], n, p=[0.497, 0.503])}  # significant at this n, V ~ 0.003
    forced = detect_drift_on_rows(reference, current, DriftOptions(method="chi2"))
    raw_p_value = forced.features[0].raw_p_value
    assert raw_p_value is not None and raw_p_value < 0.05 and forced.features[0].drifted
    floored = detect_drift_on_rows(reference, current, DriftOptions(method="chi2", min_effect_size=0.01))
    assert not floored.features[0].drifted
    auto = detect_drift_on_rows(reference, current)  # auto's own floor (0.02)
    assert not auto.features[0].drifted and auto.features[0].min_effect_size == drift.AUTO_CATEGORICAL_MIN_EFFECT
    small_real_shift = {"c": rng.choice(["a", "b"], n, p=[0.47, 0.53])}  # V ~ 0.03
    assert detect_drift_on_rows(reference, small_real_shift).features[0].drifted


def test_forced_methods_and_fallback_for_categorical() -> None:
    rng = np.random.default_rng(9)
    reference, current = _frame(rng, 3000, shift=False), _frame(rng, 3000, shift=True)
    for method in ("ks", "psi", "chi2", "wasserstein", "jensenshannon"):
        result = detect_drift_on_rows(reference, current, DriftOptions(method=method))
        by_name = {f.name: f for f in result.features}
        assert by_name["mean"].method == method and by_name["mean"].drifted
        assert not by_name["stable"].drifted
        if method in ("ks", "wasserstein"):
            assert by_name["category"].method == "chi2" and "does not apply" in (by_name["category"].note or "")
        else:
            assert by_name["category"].method == method


def test_psi_and_jensen_shannon_on_numerical_use_the_reference_bins() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=5000), rng.normal(0.3, 1, size=4000)
    result = detect_drift_on_rows({"x": a}, {"x": b}, DriftOptions(method="psi"))
    edges = drift.equal_mass_edges(np.sort(a), drift.DEFAULT_BINS)
    ref_counts = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1)
    cur_counts = np.bincount(np.searchsorted(edges, b, side="right"), minlength=edges.size + 1)
    assert result.features[0].statistic == pytest.approx(drift.psi(ref_counts, cur_counts))
    assert edges.size == drift.DEFAULT_BINS - 1


# -- missing values and unseen categories -------------------------------------------------------------


def test_missing_values_are_left_out_and_reported() -> None:
    rng = np.random.default_rng(11)
    a = rng.normal(size=2000)
    b = rng.normal(size=2000)
    b[:500] = np.nan
    b[500:520] = np.inf
    cats = pa.array(["a", None, "b", "a"] * 500)
    result = detect_drift_on_rows({"x": a, "c": pa.array(["a", "b"] * 1000)}, {"x": b, "c": cats})
    x, c = result.features
    assert x.null_fraction == pytest.approx(520 / 2000) and x.current_size == 1480 and not x.drifted
    assert x.statistic == pytest.approx(stats.wasserstein_distance(a, b[520:]) / np.std(a), rel=1e-9)
    assert c.null_fraction == pytest.approx(0.25) and c.current_size == 1500


def test_all_missing_current_is_drift_and_empty_reference_is_untested() -> None:
    rng = np.random.default_rng(12)
    result = detect_drift_on_rows({"x": rng.normal(size=100), "e": np.full(100, np.nan)},
                                  {"x": np.full(50, np.nan), "e": rng.normal(size=50)})
    x, e = result.features
    assert x.drifted and x.statistic is None and "all values missing" in (x.note or "")
    assert not e.drifted and e.statistic is None and "no reference values" in (e.note or "")
    assert result.drift_share == 1.0  # only x was tested
    missing_column = detect_drift_on_rows({"x": rng.normal(size=100)}, {})
    assert missing_column.features[0].drifted and missing_column.features[0].null_fraction == 1.0


def test_unseen_categories_are_pooled_counted_and_do_not_crash() -> None:
    reference = {"c": pa.array(["a", "b", "c"] * 300)}
    current = {"c": pa.array(["a", "b", "c"] * 290 + ["new1", "new2", "new3"] * 10)}
    result = detect_drift_on_rows(reference, current, DriftOptions(method="chi2"))
    feature = result.features[0]
    assert feature.unseen_categories == 3
    assert feature.histogram is not None and feature.histogram.labels == ["a", "b", "c", drift.UNSEEN]
    table = np.array([[300, 300, 300, 0], [290, 290, 290, 30]])
    assert feature.statistic == pytest.approx(stats.chi2_contingency(table, correction=False).statistic)


def test_low_cardinality_numerical_is_categorical() -> None:
    rng = np.random.default_rng(13)
    result = detect_drift_on_rows({"k": rng.integers(0, 3, 5000)}, {"k": rng.integers(0, 4, 5000)})
    feature = result.features[0]
    assert feature.kind == "categorical" and feature.method == "chi2" and feature.unseen_categories == 1


# -- profile mode -------------------------------------------------------------------------------------


def test_profile_with_the_whole_sample_is_exact() -> None:
    rng = np.random.default_rng(14)
    reference = pa.table({"x": rng.normal(size=900), "c": rng.choice(["a", "b", "c"], 900)})
    current = {"x": rng.normal(0.1, 1, size=700), "c": pa.array(rng.choice(["a", "b", "c", "d"], 700))}
    profile = build_profile([reference])
    for method in ("auto", "ks", "wasserstein", "chi2", "psi", "jensenshannon"):
        options = DriftOptions(method=method)
        from_profile = detect_drift(references_from_profile(profile, section="features"), current, options)
        from_rows = detect_drift_on_rows({"x": reference["x"], "c": reference["c"]}, current, options)
        for p, r in zip(from_profile.features, from_rows.features, strict=True):
            assert (p.method, p.drifted, p.unseen_categories) == (r.method, r.drifted, r.unseen_categories)
            assert p.statistic == pytest.approx(r.statistic, rel=1e-12)
            assert (p.p_value is None) == (r.p_value is None)
            assert p.p_value == (None if r.p_value is None else pytest.approx(r.p_value, rel=1e-12))
            assert p.error_bound == 0.0


@pytest.mark.parametrize("distribution", ["normal", "lognormal", "uniform", "integers"])
def test_profile_mode_error_is_within_its_documented_bound(distribution: str) -> None:
    rng = np.random.default_rng(15)
    n = 60_000
    draw = {
        "normal": lambda shift: rng.normal(shift, 1.0, n),
        "lognormal": lambda shift: rng.lognormal(shift, 0.8, n),
        "uniform": lambda shift: rng.uniform(shift, 1.0 + shift, n),
        "integers": lambda shift: rng.integers(0, 40, n).astype(float) + round(10 * shift),
    }[distribution]
    reference = draw(0.0)
    profile = build_profile([pa.table({"x": reference})], options=ProfileOptions(sketch_k=1024))
    [approximate] = references_from_profile(profile, section="features")
    assert not approximate.exact and approximate.grid is not None and approximate.grid.rank_error > 0
    for shift in (0.0, 0.05, 0.3):
        current = draw(shift)
        for method in ("ks", "wasserstein"):
            options = DriftOptions(method=method)
            got = detect_drift([approximate], {"x": current}, options).features[0]
            exact = detect_drift_on_rows({"x": reference}, {"x": current}, options).features[0]
            assert got.error_bound is not None and exact.statistic is not None and got.statistic is not None
            assert abs(got.statistic - exact.statistic) <= got.error_bound


def test_profile_categories_beyond_top_k_are_pooled() -> None:
    rng = np.random.default_rng(16)
    values = np.array([f"v{i}" for i in range(30)])
    reference = pa.table({"c": rng.choice(values, 20_000)})
    profile = build_profile([reference], options=ProfileOptions(top_k=10))
    [ref] = references_from_profile(profile, section="features")
    assert not ref.complete
    current = {"c": pa.array(rng.choice(np.append(values, "brand-new"), 20_000))}
    feature = detect_drift([ref], current).features[0]
    assert feature.unseen_categories is None  # cannot tell a new value from the reference's tail
    assert feature.histogram is not None and feature.histogram.labels is not None
    assert feature.histogram.labels[-1] == drift.OTHER and len(feature.histogram.labels) == 11


def test_unknown_profile_column_names_what_there_is() -> None:
    profile = build_profile([pa.table({"x": np.arange(10.0)})])
    with pytest.raises(KeyError, match="'nope' is not a feature of the reference profile .it has x"):
        references_from_profile(profile, ["nope"], section="features")
