"""The sweep's controls and its honest intervals: pure functions, no model.

    >>> split_seeds(2, 6)                                  # choose-seeds, report-seeds (disjoint)
    ((100, 101), (0, 1, 2, 3, 4, 5))
    >>> noise_band([0.1, -0.3, 0.2], [0.0, 0.4, 0.1])      # 95th pct of |judge(seed) - judge(other seed)| at alpha = 0
    0.64

- ``matched_random_direction``: a unit direction orthogonal to the mean activation, drawn fresh for
  each (scenario, seed, layer). Added at the same relative alpha as the probe's direction (a unit
  vector too), its push has the probe push's norm at every alpha.
- ``noise_band``: how far the judge moves when only the sampling seed changes (alpha = 0).
- ``cluster_bootstrap_rate``: a success rate with a 95% interval that resamples whole
  (scenario, seed) baselines, since every steered row of one baseline shares it.
- ``success``: the validated call (gates, empathy cut-offs) beyond the noise band.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .metrics import wilson_ci


def split_seeds(n_choose: int, n_report: int, choose_start: int = 100, report_start: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Seeds that choose the layer, alpha range and direction, and disjoint seeds that report."""
    choose = tuple(range(choose_start, choose_start + n_choose))
    report = tuple(range(report_start, report_start + n_report))
    if set(choose) & set(report):
        raise ValueError(f"choose-seeds {choose} and report-seeds {report} overlap")
    return choose, report


def matched_random_direction(mean_activation: torch.Tensor, scenario: str, seed: int, layer: int,
                             salt: int = 1234) -> torch.Tensor:
    """A unit vector orthogonal to ``mean_activation`` (H,), reproducible from (salt, scenario, seed, layer)."""
    h = int(hashlib.sha256(f"{salt}:{scenario}:{seed}:{layer}".encode()).hexdigest()[:15], 16)
    g = torch.Generator().manual_seed(h)
    v = torch.randn(mean_activation.shape[-1], generator=g, dtype=torch.float64)
    m = mean_activation.double().flatten()
    if float(m.norm()) > 0:
        m = m / m.norm()
        v = v - (v @ m) * m
    return (v / v.norm()).float()


def noise_band(judge_seed: Sequence[float], judge_other_seed: Sequence[float], q: float = 95.0) -> float:
    """The ``q``th percentile of |judge(alpha = 0, seed) - judge(alpha = 0, another seed)|, paired by baseline."""
    a, b = np.asarray(judge_seed, dtype=float), np.asarray(judge_other_seed, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("the noise band needs paired, non-empty judge scores")
    return float(np.round(np.percentile(np.abs(a - b), q), 6))


@dataclass(frozen=True)
class Rate:
    """A success rate over eligible rows with its cluster-bootstrap 95% interval."""

    successes: int
    eligible: int
    clusters: int
    rate: float | None
    ci: tuple[float, float] | None

    def to_dict(self) -> dict:
        return {"successes": self.successes, "n": self.eligible, "clusters": self.clusters, "rate": self.rate,
                "ci": list(self.ci) if self.ci else None,
                "ci_method": "cluster bootstrap over (scenario, seed) baselines, widened to at least the Wilson interval"}


def cluster_bootstrap_rate(success: Sequence[bool], clusters: Sequence[Hashable], n_boot: int = 2000,
                           seed: int = 0) -> Rate:
    """sum(success) / n with a percentile 95% interval from resampling whole clusters with replacement, widened
    where needed to contain the Wilson interval (which matters at 0 or n successes, where resampling cannot vary)."""
    s = np.asarray(success, dtype=float)
    if s.size != len(clusters):
        raise ValueError("one cluster per row")
    if s.size == 0:
        return Rate(0, 0, 0, None, None)
    ids = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    cl = np.array([ids[c] for c in clusters])
    k = len(ids)
    per_succ = np.bincount(cl, weights=s, minlength=k)
    per_n = np.bincount(cl, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, k, size=(n_boot, k))
    rates = per_succ[draw].sum(1) / per_n[draw].sum(1)
    lo, hi = np.percentile(rates, [2.5, 97.5])
    # Where every row fails (or every row succeeds) resampling cannot vary the rate and the percentile interval
    # collapses to a point; the Wilson interval still says how little n rows show. Take the wider of the two.
    w_lo, w_hi = wilson_ci(int(s.sum()), int(s.size))
    return Rate(int(s.sum()), int(s.size), k, float(s.mean()), (float(min(lo, w_lo)), float(max(hi, w_hi))))


def success(sign: int, steered_call: tuple[bool, bool], base_call: tuple[bool, bool], steered_judge: float,
            base_judge: float, band: float) -> bool:
    """The validated success call for one steered (or prompted, or seed-only) row against its baseline.

    ``*_call`` are (empathic call, task call) of ``validation.calls`` (gates included). For sign > 0:
    the baseline is a task call, the row an empathic call, and the judge rose by more than ``band``;
    for sign < 0 the reverse. Incoherent, off-topic or echo rows never pass (the calls need the gates).
    """
    move = steered_judge - base_judge
    if sign > 0:
        return bool(base_call[1] and steered_call[0] and move > band)
    return bool(base_call[0] and steered_call[1] and -move > band)


def eligible(sign: int, base_call: tuple[bool, bool]) -> bool:
    """A baseline the call can move from: a task call for sign > 0, an empathic call for sign < 0."""
    return bool(base_call[1] if sign > 0 else base_call[0])
