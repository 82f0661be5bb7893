"""Detection directions from one layer's activations (N, H), and linear confound erasers (numpy).

Methods (all return a unit vector in activation space, signed so that empathic text projects
higher on the training data, the ``empathy_core.probes`` convention):

* ``mean_diff``   mu_empathic - mu_task ("the study's method"; also the mass-mean steering direction)
* ``logistic``    L2 logistic regression on standardised features, mapped back to activation space
* ``pca``         first principal axis of the (uncentred) paired differences
* ``whitened``    shrinkage LDA: (Sigma_s)^-1 (mu_e - mu_t), Sigma_s = (1 - a) Sigma + a (tr Sigma / H) I,
                  Sigma the pooled within-class covariance; the shrinkage a is chosen on dev
* erased variants (``erased_<base>_k<k>``): the same fitted on ``P x`` where ``P`` is a
  :class:`ProjectionEraser` fitted on the confound controls' TRAIN part only. Since P is an orthogonal
  projection, the resulting direction lies in P's range, so it scores raw activations directly.

``probes.fit_direction`` (torch, every layer) keeps the study's three methods; this module adds the
whitened and erased ones and the dev-side hyperparameter choice used by the detection experiment.

Hyperparameters are chosen with :func:`choose_on_dev` (highest dev AUROC; ties -> the first, i.e. the
most regularised, value in the grid).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5)); y = np.array([1, 0] * 30); X[y == 1, 0] += 3
    >>> d = mean_diff(X, y); bool(d[0] > 0.9)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

SHRINKAGES: tuple[float, ...] = (0.9, 0.5, 0.3, 0.1, 0.03, 0.01, 0.003)  # most regularised first
LOGISTIC_CS: tuple[float, ...] = (0.01, 0.1, 1.0)
ERASER_KS: tuple[int, ...] = (2, 8)


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _unit_signed(d: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    n = np.linalg.norm(d)
    if not np.isfinite(n) or n == 0:
        raise ValueError("Cannot normalise a zero or non-finite direction.")
    d = d / n
    p = X @ d
    return -d if p[y].mean() < p[~y].mean() else d


def _xy(X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        raise ValueError("Fitting a direction needs both empathic and task-focused examples.")
    return X, y


def mean_diff(X: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Unit mean-difference direction (the study's method)."""
    X, y = _xy(X, y)
    return _unit_signed(X[y].mean(0) - X[~y].mean(0), X, y)


def pca_pairs(X: ArrayLike, y: ArrayLike, groups: ArrayLike) -> np.ndarray:
    """First principal axis of the uncentred paired differences (empathic - task, same group id)."""
    X, y = _xy(X, y)
    g = np.asarray(groups)
    pos = {k: i for i, (k, lab) in enumerate(zip(g, y)) if lab}
    neg = {k: i for i, (k, lab) in enumerate(zip(g, y)) if not lab}
    common = sorted(set(pos) & set(neg))
    D = X[[pos[k] for k in common]] - X[[neg[k] for k in common]]
    return _unit_signed(np.linalg.svd(D, full_matrices=False)[2][0], X, y)


def logistic(X: ArrayLike, y: ArrayLike, C: float = 1.0) -> np.ndarray:
    """L2 logistic regression on standardised features; the weight vector mapped back to activation space."""
    from sklearn.linear_model import LogisticRegression

    X, y = _xy(X, y)
    mu, sd = X.mean(0), X.std(0) + 1e-8
    lr = LogisticRegression(C=C, max_iter=3000).fit((X - mu) / sd, y)
    return _unit_signed(lr.coef_[0] / sd, X, y)


@dataclass
class WhiteningBasis:
    """Thin SVD of the within-class residuals, so any shrinkage of the pooled covariance is one cheap solve.

    Sigma = R^T R / (n - 2) = V diag(evals) V^T on the residuals' span; outside it Sigma is 0, so
    (Sigma_s)^-1 delta = V diag(1 / lam) V^T delta + (delta - V V^T delta) / (a * scale),
    lam = (1 - a) evals + a * scale. Costs O(n^2 H) instead of O(H^3) when n < H.
    """

    evals: np.ndarray  # (r,)
    evecs: np.ndarray  # (H, r)
    delta: np.ndarray  # (H,) mu_e - mu_t
    scale: float  # tr(Sigma) / H

    @classmethod
    def fit(cls, X: ArrayLike, y: ArrayLike) -> WhiteningBasis:
        X, y = _xy(X, y)
        R = np.concatenate([X[y] - X[y].mean(0), X[~y] - X[~y].mean(0)])
        g, U = np.linalg.eigh(R @ R.T)  # Gram trick: (n, n) instead of an SVD of (n, H)
        keep = g > g.max() * 1e-10
        g, U = g[keep], U[:, keep]
        V = (R.T @ U) / np.sqrt(g)
        e = g / max(len(R) - 2, 1)
        return cls(e, V, X[y].mean(0) - X[~y].mean(0), float(e.sum() / X.shape[1]))

    def direction(self, shrinkage: float) -> np.ndarray:
        if not 0 < shrinkage <= 1:
            raise ValueError("shrinkage must be in (0, 1].")
        lam = (1 - shrinkage) * self.evals + shrinkage * self.scale
        c = self.evecs.T @ self.delta
        return self.evecs @ (c / lam) + (self.delta - self.evecs @ c) / (shrinkage * self.scale)


def ledoit_wolf_shrinkage(X: ArrayLike, y: ArrayLike) -> float:
    """Ledoit-Wolf's analytic shrinkage for the within-class residuals (a value in [0, 1])."""
    from sklearn.covariance import ledoit_wolf_shrinkage as lw

    X, y = _xy(X, y)
    R = np.concatenate([X[y] - X[y].mean(0), X[~y] - X[~y].mean(0)])
    return float(lw(R, assume_centered=True))


def whitened(X: ArrayLike, y: ArrayLike, shrinkage: float) -> np.ndarray:
    """Shrinkage-LDA direction (whitened mean difference)."""
    X, y = _xy(X, y)
    return _unit_signed(WhiteningBasis.fit(X, y).direction(shrinkage), X, y)


# ----------------------------------------------------------------------------- erasers


@dataclass
class ProjectionEraser:
    """Orthogonal projection off the top-k principal directions of paired (high - low) confound differences.

    ``basis`` (k, H) holds orthonormal rows; ``apply`` returns ``X - (X V^T) V``. Fitted only on the
    confound-control TRAIN part. Being an orthogonal projection, any direction ``w`` fitted on erased
    activations and lying in its range satisfies ``w . P x = w . x``.
    """

    basis: np.ndarray

    @classmethod
    def fit(cls, X_conf: ArrayLike, labels: ArrayLike, groups: ArrayLike, k: int,
            axes: Sequence[str] | np.ndarray | None = None) -> ProjectionEraser:
        """Top-k right singular vectors of the paired differences (each pair's high - low).

        If ``axes`` is given, each axis's differences are scaled to equal total weight so one axis
        with large activation shifts (e.g. length) cannot take every component.
        """
        X = np.asarray(X_conf, dtype=np.float64)
        lab = np.asarray(labels).astype(bool)
        g = np.asarray(groups)
        hi = {k_: i for i, (k_, l_) in enumerate(zip(g, lab)) if l_}
        lo = {k_: i for i, (k_, l_) in enumerate(zip(g, lab)) if not l_}
        ids = sorted(set(hi) & set(lo))
        D = X[[hi[i] for i in ids]] - X[[lo[i] for i in ids]]
        if axes is not None:
            ax = np.asarray(axes)[[hi[i] for i in ids]]
            for a in np.unique(ax):
                m = ax == a
                D[m] /= np.sqrt((D[m] ** 2).sum()) + 1e-12
        k = min(k, len(D))
        V = np.linalg.svd(D, full_matrices=False)[2][:k]
        return cls(V)

    def apply(self, X: ArrayLike) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X - (X @ self.basis.T) @ self.basis

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])


# ------------------------------------------------------------------------ selection


def choose_on_dev(values: Sequence[float], fit: Callable[[float], np.ndarray], X_dev: ArrayLike,
                  y_dev: ArrayLike) -> tuple[float, np.ndarray, float]:
    """The hyperparameter value whose fitted direction has the highest dev AUROC.

    Returns (value, direction, dev AUROC); ties keep the earlier value in ``values``.
    """
    best: tuple[float, np.ndarray, float] | None = None
    for v in values:
        d = fit(v)
        a = _auroc(np.asarray(X_dev) @ d, np.asarray(y_dev))
        if best is None or a > best[2] + 1e-12:
            best = (v, d, a)
    if best is None:
        raise ValueError("No hyperparameter values to choose from.")
    return best


# Fewer fitted parameters first: the tie-break order of RULE.md.
COMPLEXITY: dict[str, int] = {"mean_diff": 0, "pca": 1, **{f"erased_mean_diff_k{k}": 2 + i for i, k in enumerate(ERASER_KS)},
                              "whitened": 10, **{f"erased_whitened_k{k}": 11 + i for i, k in enumerate(ERASER_KS)},
                              "logistic": 20}
METHODS: tuple[str, ...] = tuple(COMPLEXITY)


def method_parts(method: str) -> tuple[str, int | None]:
    """'erased_whitened_k4' -> ('whitened', 4); 'logistic' -> ('logistic', None)."""
    if method.startswith("erased_"):
        base, k = method[len("erased_"):].rsplit("_k", 1)
        return base, int(k)
    return method, None


def fit_method(base: str, X_tr: ArrayLike, y_tr: ArrayLike, g_tr: ArrayLike, X_dev: ArrayLike | None = None,
               y_dev: ArrayLike | None = None, hyper: float | None = None) -> tuple[np.ndarray, float | None]:
    """Fit one base method on (already erased, if wanted) train activations.

    ``hyper`` fixes the hyperparameter; otherwise it is chosen on (X_dev, y_dev). Returns (direction, hyper).
    """
    if base == "mean_diff":
        return mean_diff(X_tr, y_tr), None
    if base == "pca":
        return pca_pairs(X_tr, y_tr, g_tr), None
    if (X_dev is None or y_dev is None) and hyper is None and base in ("logistic", "whitened"):
        raise ValueError(f"{base} needs a dev split to choose its hyperparameter, or a fixed one.")
    if base == "logistic":
        if hyper is not None:
            return logistic(X_tr, y_tr, hyper), hyper
        v, d, _ = choose_on_dev(LOGISTIC_CS, lambda c: logistic(X_tr, y_tr, c), X_dev, y_dev)  # type: ignore[arg-type]
        return d, v
    if base == "whitened":
        Xt, yt = _xy(X_tr, y_tr)
        wb = WhiteningBasis.fit(Xt, yt)
        if hyper is not None:
            return _unit_signed(wb.direction(hyper), Xt, yt), hyper
        v, d, _ = choose_on_dev(SHRINKAGES, lambda a: _unit_signed(wb.direction(a), Xt, yt), X_dev, y_dev)  # type: ignore[arg-type]
        return d, v
    raise ValueError(f"Unknown method {base!r}.")
