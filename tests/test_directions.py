"""Detection methods recover a planted direction; the eraser removes a planted confound; the rule is RULE.md's."""

import numpy as np
import pytest

from empathy_core.core import directions as M
from empathy_core.core.ood import CantJudge
from empathy_core.study import detection as D
from empathy_core.study import metrics


def planted(n=300, h=40, seed=0):
    """Label signal along e_0 (two units), isotropic noise."""
    rng = np.random.default_rng(seed)
    y = np.array([1, 0] * (n // 2))
    X = rng.standard_normal((n, h))
    X[:, 0] += 2.0 * y
    groups = np.repeat(np.arange(n // 2), 2).astype(str)
    return X, y, groups


@pytest.mark.parametrize("method", ["mean_diff", "pca", "logistic", "whitened", "erased_mean_diff_k2", "erased_whitened_k2"])
def test_each_method_recovers_a_planted_direction(method):
    X, y, g = planted()
    Xd, yd, _ = planted(seed=1)
    base, k = M.method_parts(method)
    if k is not None:  # an eraser fitted on confound pairs that differ along e_5 only: must leave e_0 alone
        rng = np.random.default_rng(2)
        C = rng.standard_normal((40, X.shape[1])) * 0.1
        C[::2, 5] += 3.0
        er = M.ProjectionEraser.fit(C, np.array([1, 0] * 20), np.repeat(np.arange(20), 2).astype(str), k)
        X, Xd = er.apply(X), er.apply(Xd)
    d, _ = M.fit_method(base, X, y, g, Xd, yd)
    assert abs(np.linalg.norm(d) - 1) < 1e-9
    assert d[0] > 0.9, (method, d[0])  # cosine with the planted direction, signed: empathic projects higher
    assert metrics.auroc(Xd @ d, yd) > 0.85


def test_whitening_cancels_a_correlated_nuisance_that_mean_difference_keeps():
    def data(seed):
        rng = np.random.default_rng(seed)
        y = np.array([1, 0] * 200)
        X = rng.standard_normal((400, 10)) * 0.3
        nuis = rng.standard_normal(400) * 3.0
        X[:, 0] += y + nuis  # the label axis carries a big nuisance...
        X[:, 1] += nuis  # ...that another axis shows on its own
        return X, y

    X, y = data(0)
    Xt, yt = data(1)
    a_md, a_w = metrics.auroc(Xt @ M.mean_diff(X, y), yt), metrics.auroc(Xt @ M.whitened(X, y, 0.01), yt)
    assert a_w > 0.95 and a_w > a_md + 0.2


def test_eraser_removes_a_planted_confound_direction():
    rng = np.random.default_rng(0)
    h = 30
    conf_dir = rng.standard_normal(h)
    conf_dir /= np.linalg.norm(conf_dir)
    C = rng.standard_normal((60, h)) * 0.2
    y = np.array([1, 0] * 30)
    C[y == 1] += 2.0 * conf_dir  # high side shifted along conf_dir
    er = M.ProjectionEraser.fit(C, y, np.repeat(np.arange(30), 2).astype(str), k=1)
    assert abs(abs(er.basis[0] @ conf_dir) - 1) < 0.05
    Z = er.apply(rng.standard_normal((100, h)) + 3.0 * conf_dir)
    assert np.abs(Z @ conf_dir).max() < 0.5  # the confound is (nearly) gone...
    X, yy, g = planted(h=h)
    d = M.mean_diff(er.apply(X), yy)
    assert abs(d @ er.basis[0]) < 1e-9  # ...and a direction fitted after erasure has no component along it
    # on fresh confound pairs, the high - low shift along the confound shrinks to under 5% of what it was
    Cn = rng.standard_normal((60, h)) * 0.2
    Cn[y == 1] += 2.0 * conf_dir
    shift = lambda Z: (Z[y == 1] - Z[y == 0]).mean(0) @ conf_dir  # noqa: E731
    assert shift(Cn) > 1.5 and abs(shift(er.apply(Cn))) < 0.05 * shift(Cn)


def cand(method, layer, pooling="mean", dev=0.8, conf=0.5):
    return {"method": method, "pooling": pooling, "layer": layer, "hyper": None, "dev_short": dev, "dev_long": dev,
            "dev_score": dev, "conf_in": {a: conf for a in ("sentiment", "politeness", "length", "enthusiasm")}}


def test_rule_eligibility_ties_and_fallback():
    cs = [cand("logistic", 2, dev=0.90), cand("mean_diff", 4, dev=0.897), cand("whitened", 0, dev=0.95, conf=0.3)]
    pick = D.choose_default(cs)
    # whitened is best but tone-reading (ineligible); logistic and mean_diff tie within 0.005: fewer parameters wins
    assert (pick["method"], pick["layer"], pick["n_eligible"]) == ("mean_diff", 4, 2)
    none = [cand("logistic", 2, dev=0.90, conf=0.2), cand("whitened", 0, dev=0.88, conf=0.35), cand("pca", 1, dev=0.80, conf=0.7)]
    pick = D.choose_default(none)
    assert pick["method"] == "whitened" and pick["rule_branch"].startswith("fallback")  # pca is beyond the 0.03 margin


def hcand(method, layer, dev=0.8, conf=0.5, hostile=1.0):
    return {**cand(method, layer, dev=dev, conf=conf), "hostile_dev": hostile}


def test_amendment_2_needs_the_dev_hostile_share():
    # the best tone-blind candidate puts only 80% of the dev hostile set on the task side: not eligible
    cs = [hcand("whitened", 4, dev=0.95, hostile=0.8), hcand("logistic", 2, dev=0.90, hostile=0.92),
          hcand("pca", 6, dev=0.97, conf=0.3, hostile=1.0)]
    pick = D.choose_default(cs)
    assert (pick["method"], pick["hostile_dev"], pick["n_eligible"], pick["n_tone_eligible"]) == ("logistic", 0.92, 1, 2)
    # none reaches 0.90: the highest share among tone-blind candidates within 0.03 of their best dev_score
    cs = [hcand("whitened", 4, dev=0.95, hostile=0.8), hcand("mean_diff", 2, dev=0.93, hostile=0.86),
          hcand("logistic", 8, dev=0.90, hostile=0.88), hcand("pca", 6, dev=0.99, conf=0.3, hostile=1.0)]
    pick = D.choose_default(cs)
    assert pick["method"] == "mean_diff" and pick["rule_branch"].startswith("fallback (amendment 2)")
    # without the dev set (no hostile_dev field) the rule is the one before the amendment
    assert D.choose_default([cand("whitened", 4, dev=0.95)])["method"] == "whitened"


def test_rule_text_is_the_preregistered_one():
    text = D.rule_text()
    assert "written 2026-11-27 ~13:30 UTC, before any test-split number was computed" in text
    assert "## Amendment (13:41 UTC" in text and "eligible = candidates with conf_in[a] in [0.40, 0.60]" in text.lower()
    assert "## Amendment 2 (2026-12-07, session 13; written before any number was computed on the round-4" in text
    assert "AND hostile_dev >= 0.90" in text and f"{D.HOSTILE_MIN:.2f}" == "0.90"


def test_gate_catches_short_and_far_texts():
    rng = np.random.default_rng(0)
    gate = CantJudge.fit(rng.standard_normal((300, 6)), np.full(300, 20), rng.standard_normal((80, 6)))
    v = gate.verdict(np.array([[0.0] * 6, [0.0] * 6, [30.0] * 6]), np.array([20, 2, 20]))
    assert v.tolist() == ["ok", "too_short", "too_far"]
    assert gate.min_tokens == 10
    false = (gate.verdict(rng.standard_normal((2000, 6)), np.full(2000, 20)) != "ok").mean()
    assert false < 0.05
