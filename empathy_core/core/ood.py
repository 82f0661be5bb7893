"""The "can't judge this" gate: texts too short, or too far from the training activations, get no probability.

Fitted on train/dev only (the detection rule, ``study/RULE.md``):

* ``min_tokens`` = max(3, half the 1st percentile of the short train texts' token counts);
* a Mahalanobis distance with a Ledoit-Wolf shrinkage covariance, fitted on the reference (train)
  activations at the detection probe's layer and pooling, thresholded at the 99th percentile of
  the dev texts' distances.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> gate = CantJudge.fit(rng.standard_normal((200, 4)), np.full(200, 20), rng.standard_normal((50, 4)))
    >>> gate.verdict(np.array([[0.0] * 4, [50.0] * 4]), np.array([20, 20])).tolist()
    ['ok', 'too_far']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

VERDICT_TEXT = {"too_short": "too short to judge", "too_far": "too far from the texts the probe was fitted on"}


@dataclass
class CantJudge:
    """Token-count floor + Mahalanobis (Ledoit-Wolf) distance ceiling."""

    min_tokens: int
    mean: np.ndarray  # (H,)
    precision: np.ndarray  # (H, H)
    max_distance: float
    quantile: float = 0.99

    @classmethod
    def fit(cls, X_ref: ArrayLike, ntok_ref: ArrayLike, X_dev: ArrayLike, quantile: float = 0.99) -> CantJudge:
        from sklearn.covariance import LedoitWolf

        X = np.asarray(X_ref, dtype=np.float64)
        lw = LedoitWolf().fit(X)
        min_tok = max(3, int(np.floor(0.5 * np.quantile(np.asarray(ntok_ref), 0.01))))
        g = cls(min_tok, lw.location_, lw.precision_, 0.0, quantile)
        g.max_distance = float(np.quantile(g.distance(X_dev), quantile))
        return g

    def distance(self, X: ArrayLike) -> np.ndarray:
        D = np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean
        return np.asarray(np.sqrt(np.einsum("nh,hk,nk->n", D, self.precision, D).clip(min=0)))

    def verdict(self, X: ArrayLike, n_tokens: ArrayLike) -> np.ndarray:
        """Per text: ``too_short``, ``too_far`` or ``ok`` (shortness is checked first)."""
        n = np.atleast_1d(np.asarray(n_tokens))
        far = self.distance(X) > self.max_distance
        return np.where(n < self.min_tokens, "too_short", np.where(far, "too_far", "ok"))

    def as_dict(self) -> dict:
        """The fitted scalars (the mean and precision live in the probe file)."""
        return {"min_tokens": self.min_tokens, "max_distance": self.max_distance, "quantile": self.quantile,
                "distance": "mahalanobis_ledoit_wolf"}
