"""Metric code checked against sklearn and scipy."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from empathy_core.study import metrics


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    s = rng.normal(size=80) + y * seed * 0.3
    s[:10] = np.round(s[:10])  # some ties
    assert metrics.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_vectorised_auroc_matches_scalar():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50).astype(bool)
    S = rng.normal(size=(7, 50))
    np.testing.assert_allclose(metrics._auroc_rows(S, y), [metrics.auroc(r, y) for r in S])


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(2)
    y = np.tile([1, 0], 60)
    s = rng.normal(size=120) + y
    groups = np.repeat(np.arange(60), 2)
    lo, hi = metrics.bootstrap_auroc_ci(s, y, groups, n_boot=1000)
    a = metrics.auroc(s, y)
    assert lo < a < hi and 0.05 < hi - lo < 0.4


def test_midpoint_threshold_and_accuracy():
    s = np.array([0.0, 1.0, 4.0, 5.0])
    y = np.array([0, 0, 1, 1])
    assert metrics.midpoint_threshold(s, y) == 2.5
    assert metrics.accuracy(s, y, 2.5) == 1.0
    assert metrics.accuracy(s, y, 4.5) == 0.75


def test_cohens_d_by_hand():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    pooled = np.sqrt((2 * a.var(ddof=1) + 2 * b.var(ddof=1)) / 4)
    assert metrics.cohens_d(np.r_[a, b], np.r_[1, 1, 1, 0, 0, 0]) == pytest.approx((a.mean() - b.mean()) / pooled)


def test_correlations_match_scipy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    y = x + rng.normal(size=60)
    r, lo, hi = metrics.correlation_ci(x, y, "spearman", n_boot=500)
    assert r == pytest.approx(stats.spearmanr(x, y).statistic)
    assert lo < r < hi
    r, lo, hi = metrics.correlation_ci(x, y, "pearson", n_boot=500)
    assert r == pytest.approx(stats.pearsonr(x, y).statistic)


def test_random_directions_on_noise_sit_near_chance():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 32))
    y = np.tile([1, 0], 100)
    aucs = metrics.random_direction_aurocs(X[:100], y[:100], X[100:], y[100:], n_dirs=200)
    assert aucs.shape == (200,)
    assert 0.4 < aucs.mean() < 0.6 and np.quantile(aucs, 0.95) < 0.75


def test_wilson_interval_known_values():
    lo, hi = metrics.wilson_ci(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert metrics.wilson_ci(0, 0) == (0.0, 1.0)


def test_platt_is_monotone():
    s = np.linspace(-3, 3, 40)
    y = (s + np.random.default_rng(5).normal(scale=1, size=40) > 0).astype(int)
    a, b = metrics.platt(s, y)
    assert a > 0


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_vectorised_correlation_bootstrap_equals_one_resample_at_a_time(method):
    """The reference: scipy on each resample in turn, with the same draws; ties (graded levels) and resamples
    with a constant side (left out) included."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=9), rng.integers(0, 3, 9).astype(float)
    fn = stats.spearmanr if method == "spearman" else stats.pearsonr
    draw = np.random.default_rng(0)
    boots = []
    for _ in range(300):
        i = draw.integers(0, 9, 9)
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(fn(x[i], y[i]).statistic)
    want = (fn(x, y).statistic, np.quantile(boots, 0.025), np.quantile(boots, 0.975))
    assert metrics.correlation_ci(x, y, method, n_boot=300) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("paired", [True, False])
def test_vectorised_auroc_bootstrap_equals_one_resample_at_a_time(paired):
    rng = np.random.default_rng(6)
    n = 8
    s, y = np.round(rng.normal(size=2 * n), 1), np.tile([1, 0], n).astype(bool)
    groups = np.repeat(np.arange(n), 2) if paired else np.arange(2 * n)
    members = [np.flatnonzero(groups == k) for k in range(groups.max() + 1)]
    draw, boots = np.random.default_rng(0), []
    for _ in range(300):
        idx = np.concatenate([members[k] for k in draw.integers(0, len(members), len(members))])
        if 0 < y[idx].sum() < len(idx):
            boots.append(roc_auc_score(y[idx], s[idx]))
    want = (np.quantile(boots, 0.025), np.quantile(boots, 0.975))
    got = metrics.bootstrap_auroc_ci(s, y, groups if paired else None, n_boot=300)
    assert got == pytest.approx(want, abs=1e-12)
