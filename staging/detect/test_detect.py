"""Unit tests for the offline detection code (fast; the model test is marked slow).

    PYTHONPATH=.:staging .venv/bin/python -m pytest staging/detect/test_detect.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from detect import methods as M
from detect.evaluate import AXES, choose_default, pair_bootstrap_ci
from detect.ood import CantJudge
from empathy_core.study import metrics


def _toy(n=100, h=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2 * n, h))
    y = np.array([1, 0] * n).astype(bool)
    X[y, 0] += 2.0
    g = np.repeat(np.arange(n), 2)
    return X, y, g


def test_directions_are_unit_and_signed():
    X, y, g = _toy()
    for base in ("mean_diff", "pca", "whitened", "logistic"):
        d, _ = M.fit_method(base, X, y, g, X, y)
        assert abs(np.linalg.norm(d) - 1) < 1e-9
        assert (X @ d)[y].mean() > (X @ d)[~y].mean()
        assert abs(d[0]) > 0.7


def test_whitening_matches_explicit_solve():
    X, y, _ = _toy(h=30)
    wb = M.WhiteningBasis.fit(X, y)
    R = np.concatenate([X[y] - X[y].mean(0), X[~y] - X[~y].mean(0)])
    S = R.T @ R / (len(R) - 2)
    a = 0.2
    ref = np.linalg.solve((1 - a) * S + a * np.trace(S) / 30 * np.eye(30), wb.delta)
    assert np.allclose(wb.direction(a), ref, rtol=1e-8, atol=1e-10)


def test_whitening_handles_more_dims_than_samples():
    X, y, _ = _toy(n=10, h=50)
    d = M.whitened(X, y, 0.1)
    assert np.isfinite(d).all()


def test_eraser_removes_confound_direction_and_probe_stays_in_range():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 8))
    lab = np.array([1, 0] * 20).astype(bool)
    X[lab, 1] += 3.0  # the confound lives on axis 1
    er = M.ProjectionEraser.fit(X, lab, np.repeat(np.arange(20), 2), k=1)
    assert abs(abs(er.basis[0, 1]) - 1) < 0.1
    Xe = er.apply(X)
    assert np.abs(Xe @ er.basis.T).max() < 1e-10
    Xp, yp, _ = _toy(h=8)
    d = M.mean_diff(er.apply(Xp), yp)
    assert np.allclose(Xp @ d, er.apply(Xp) @ d)  # erased probes score raw activations directly


def test_pair_bootstrap_matches_reference_shape():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(60)
    y = np.array([1, 0] * 30)
    s[y == 1] += 1
    g = np.repeat(np.arange(30), 2)
    lo, hi = pair_bootstrap_ci(s, y, g, 500)
    a = metrics.auroc(s, y)
    assert lo < a < hi
    lo2, hi2 = metrics.bootstrap_auroc_ci(s, y, g, n_boot=500)
    assert abs(lo - lo2) < 0.06 and abs(hi - hi2) < 0.06


def _cand(method, layer, dev, conf, pooling="mean"):
    return {"method": method, "pooling": pooling, "layer": layer, "hyper": None, "dev_short": dev, "dev_long": dev,
            "dev_score": dev, "conf_in": {a: conf for a in AXES}}


def test_rule_prefers_eligible_then_simpler():
    c = [_cand("whitened", 4, 0.95, 0.30), _cand("whitened", 6, 0.90, 0.5), _cand("mean_diff", 8, 0.897, 0.55)]
    pick = choose_default(c)
    assert (pick["method"], pick["layer"]) == ("mean_diff", 8)  # within 0.005 of the best eligible: simpler wins
    c = [_cand("whitened", 4, 0.95, 0.30), _cand("logistic", 2, 0.93, 0.35)]
    pick = choose_default(c)
    assert pick["rule_branch"].startswith("fallback") and pick["method"] == "logistic"


def test_cant_judge_gate():
    rng = np.random.default_rng(0)
    Xr = rng.standard_normal((300, 5))
    gate = CantJudge.fit(Xr, np.full(300, 20), rng.standard_normal((100, 5)))
    v = gate.verdict(np.array([[0.0] * 5, [50.0] * 5, [0.0] * 5]), np.array([20, 20, 1]))
    assert list(v) == ["ok", "too_far", "too_short"]


@pytest.mark.slow
def test_extract_multi_equals_extract():
    torch = pytest.importorskip("torch")
    from detect.cache import extract_multi
    from empathy_core.core.activations import extract
    from empathy_core.core.models import load_model

    h = load_model("smollm2-135m")
    texts = ["I stop and stay with them.", "Heading for the exit now, good luck.", "."]
    multi, _ = extract_multi(h, texts, log_every=0)
    for p in ("mean", "last"):
        ref = extract(h, texts, pooling=p).pooled
        assert torch.allclose(multi[p], ref, atol=1e-4)
