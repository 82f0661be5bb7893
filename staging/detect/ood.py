"""The "can't judge this" rule: texts too short, or too far from the training activations, get no probability.

Fitted on train/dev only (see RULE.md):

* ``min_tokens`` = max(3, half the 1st percentile of the train texts' token counts);
* a Mahalanobis distance with a Ledoit-Wolf shrinkage covariance, fitted on the reference (train)
  activations at the probe's layer and pooling, thresholded at the 99th percentile of the dev texts'
  distances.

    >>> gate = CantJudge.fit(X_train, ntok_train, X_dev)             # doctest: +SKIP
    >>> gate.verdict(X_new, ntok_new)   # array of "ok" / "too_short" / "too_far"   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CantJudge:
    """Token-count floor + Mahalanobis (Ledoit-Wolf) distance ceiling."""

    min_tokens: int
    mean: np.ndarray  # (H,)
    precision: np.ndarray  # (H, H)
    max_distance: float
    quantile: float = 0.99

    @classmethod
    def fit(cls, X_ref, ntok_ref, X_dev, quantile: float = 0.99) -> CantJudge:
        from sklearn.covariance import LedoitWolf

        X_ref = np.asarray(X_ref, dtype=np.float64)
        lw = LedoitWolf().fit(X_ref)
        min_tok = max(3, int(np.floor(0.5 * np.quantile(np.asarray(ntok_ref), 0.01))))
        g = cls(min_tok, lw.location_, lw.precision_, 0.0, quantile)
        g.max_distance = float(np.quantile(g.distance(X_dev), quantile))
        return g

    def distance(self, X) -> np.ndarray:
        D = np.asarray(X, dtype=np.float64) - self.mean
        return np.sqrt(np.einsum("nh,hk,nk->n", D, self.precision, D).clip(min=0))

    def verdict(self, X, n_tokens) -> np.ndarray:
        """Per text: ``too_short``, ``too_far`` or ``ok`` (shortness is checked first)."""
        n = np.asarray(n_tokens)
        far = self.distance(X) > self.max_distance
        return np.where(n < self.min_tokens, "too_short", np.where(far, "too_far", "ok"))

    def as_dict(self) -> dict:
        return {"min_tokens": self.min_tokens, "max_distance": self.max_distance, "quantile": self.quantile,
                "distance": "mahalanobis_ledoit_wolf"}
