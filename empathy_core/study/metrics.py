"""Detection metrics with their uncertainty: AUROC (+ pair bootstrap CI), accuracy, Cohen's d,
random-direction baselines, correlations with bootstrap CIs, and Wilson intervals.

Conventions:
    * scores are projections; label 1 = empathic.
    * The accuracy threshold is always the midpoint of the two class means on the *train*
      split (``midpoint_threshold``); no metric tunes a threshold on the data it reports.
    * Bootstrap CIs resample *pairs* (both texts of a pair together), since the two texts
      of a pair are not independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUROC needs both classes.")
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _auroc_rows(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of each row of S (R, N) against labels y (N,), vectorised."""
    ranks = stats.rankdata(S, axis=1)
    n1, n0 = y.sum(), (~y).sum()
    return (ranks[:, y].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def bootstrap_auroc_ci(scores: ArrayLike, labels: ArrayLike, groups: ArrayLike | None = None, n_boot: int = 1000,
                       alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile CI for AUROC, resampling groups (pairs) with replacement."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    g = np.arange(len(s)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    G = g.max() + 1
    members = [np.flatnonzero(g == k) for k in range(G)]
    rng = np.random.default_rng(seed)
    if len({len(m) for m in members}) == 1:  # equal groups (single texts, pairs): every resample at once
        picks = rng.integers(0, G, (n_boot, G))  # the same draws as one resample at a time
        idx = np.stack(members)[picks].reshape(n_boot, -1)
        yy = y[idx]
        n1 = yy.sum(1)
        ok = (n1 > 0) & (n1 < yy.shape[1])
        ranks = stats.rankdata(s[idx[ok]], axis=1)
        n1, n0 = n1[ok], yy.shape[1] - n1[ok]
        out = ((ranks * yy[ok]).sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)
        return float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2))
    out = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, G, G)
        idx = np.concatenate([members[k] for k in pick])
        yy = y[idx]
        if yy.all() or not yy.any():
            out[b] = np.nan
            continue
        out[b] = auroc(s[idx], yy)
    out = out[~np.isnan(out)]
    return float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2))


def midpoint_threshold(train_scores: ArrayLike, train_labels: ArrayLike) -> float:
    """The one threshold rule: midpoint of the two class means on the training split."""
    s = np.asarray(train_scores, dtype=np.float64)
    y = np.asarray(train_labels).astype(bool)
    return float((s[y].mean() + s[~y].mean()) / 2)


def accuracy(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    return float(((s > threshold) == y).mean())


def cohens_d(scores: ArrayLike, labels: ArrayLike) -> float:
    """Standardised mean difference (empathic minus task) with the pooled SD."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    a, b = s[y], s[~y]
    na, nb = len(a), len(b)
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("inf") * np.sign(a.mean() - b.mean())


def random_direction_aurocs(X_train: np.ndarray, y_train: ArrayLike, X_test: np.ndarray, y_test: ArrayLike, n_dirs: int = 200,
                            seed: int = 0) -> np.ndarray:
    """AUROC on test of random unit directions, each signed on train as the probe is.

    Signing on train makes the control as strong as the probe's own sign rule; an unsigned
    random direction would sit symmetric around 0.5 and flatter the probe.
    """
    rng = np.random.default_rng(seed)
    H = X_train.shape[1]
    D = rng.standard_normal((n_dirs, H))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    ytr = np.asarray(y_train).astype(bool)
    tr = X_train @ D.T  # (N, R)
    sign = np.sign(tr[ytr].mean(0) - tr[~ytr].mean(0))
    sign[sign == 0] = 1
    te = (X_test @ D.T) * sign  # (N, R)
    return _auroc_rows(te.T, np.asarray(y_test).astype(bool))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b`` (rows of equal length)."""
    am = a - a.mean(axis=1, keepdims=True)
    bm = b - b.mean(axis=1, keepdims=True)
    return (am * bm).sum(axis=1) / np.sqrt((am * am).sum(axis=1) * (bm * bm).sum(axis=1))


def correlation_ci(x: ArrayLike, y: ArrayLike, method: str = "spearman", n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> tuple[float, float, float]:
    """(r, lo, hi): Spearman or Pearson correlation with a percentile bootstrap CI.

    All resamples are drawn at once (the same draws, in the same order, as one resample at a time) and their
    correlations computed together: Spearman as the Pearson r of average ranks within each resample. Resamples
    in which x or y is constant have no correlation and are left out."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    spearman = method == "spearman"
    r = float(stats.spearmanr(x, y).statistic if spearman else stats.pearsonr(x, y).statistic)
    n = len(x)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    xs, ys = x[idx], y[idx]
    keep = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    xs, ys = xs[keep], ys[keep]
    if spearman:
        xs, ys = stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1)
    b = _rowwise_pearson(xs, ys)
    return r, float(np.quantile(b, alpha / 2)), float(np.quantile(b, 1 - alpha / 2))


def wilson_ci(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def platt(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """Fit P(empathic | score) = sigmoid(a * score + b) by logistic regression (dev split)."""
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    lr = LogisticRegression(C=1e4, max_iter=5000).fit(s, np.asarray(labels))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def pair_bootstrap_ci(scores: ArrayLike, labels: ArrayLike, groups: ArrayLike, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> list[float]:
    """Percentile CI of AUROC resampling groups (pairs); vectorised when every group has one text of each class
    (otherwise ``bootstrap_auroc_ci``)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    if not (np.bincount(inv) == 2).all() or y.sum() != len(uniq):
        lo, hi = bootstrap_auroc_ci(s, y, g, n_boot=n_boot, seed=seed, alpha=alpha)
        return [lo, hi]
    pos = np.empty(len(uniq), int)
    neg = np.empty(len(uniq), int)
    pos[inv[y]] = np.flatnonzero(y)
    neg[inv[~y]] = np.flatnonzero(~y)
    rng = np.random.default_rng(seed)
    G = len(uniq)
    pick = rng.integers(0, G, (n_boot, G))
    R = stats.rankdata(np.concatenate([s[pos[pick]], s[neg[pick]]], axis=1), axis=1)  # (B, 2G): positives first
    a = (R[:, :G].sum(1) - G * (G + 1) / 2) / (G * G)
    return [float(np.quantile(a, alpha / 2)), float(np.quantile(a, 1 - alpha / 2))]
