"""The sweep's controls on tiny models: matched random push, cluster intervals, seed split, alpha = 0 exactness."""

import numpy as np
import pytest
import torch

from empathy_core.core.prompts import render_prompt
from empathy_core.core.steering import steer, steering_vectors
from empathy_core.study import controls, metrics
from empathy_core.study.sweep import Condition, SweepSettings
from empathy_core.study.sweep_eval import EvalSettings, mean_activation, run_eval_cell, seed_pairs


@torch.no_grad()
def test_matched_random_push_has_the_probe_norm_and_is_orthogonal_to_the_mean(tiny):
    layer = 1
    prompt = render_prompt(tiny.tokenizer, tiny.is_chat, "maze")
    mu = mean_activation(tiny, prompt, layer)
    g = torch.Generator().manual_seed(3)
    noise = torch.nn.functional.normalize(torch.randn(tiny.hidden_size, generator=g), dim=0)
    probe_dir = torch.nn.functional.normalize(mu / mu.norm() + 0.3 * noise, dim=0)  # mostly along the mean
    rand = controls.matched_random_direction(mu, "maze", 0, layer)
    assert abs(float(rand @ mu)) / float(mu.norm()) < 1e-5
    assert abs(float(probe_dir @ mu)) / float(mu.norm()) > 0.5  # the probe is aligned with the mean; the control is not
    norms = torch.tensor([float(mu.norm())] * tiny.n_layers)
    vecs = steering_vectors(tiny, {layer: torch.stack([probe_dir, rand])}, "relative", norms)
    ids = tiny.tokenizer(prompt, return_tensors="pt", add_special_tokens=not tiny.is_chat)["input_ids"].repeat(2, 1)

    def block_output(alpha: float) -> torch.Tensor:
        """Block ``layer``'s output as the next block sees it (a hook registered after the steering hook)."""
        seen = []
        with steer(tiny, vecs, torch.tensor([alpha, alpha])):
            h = tiny.layers[layer].register_forward_hook(
                lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out).detach().clone()))
            try:
                tiny.model(input_ids=ids)
            finally:
                h.remove()
        return seen[0]

    plain = block_output(0.0)
    for alpha in (0.1, 0.3):
        pushed = block_output(alpha)
        added = (pushed - plain).norm(dim=-1)  # (2, T): what each row's hook added at every position
        assert torch.allclose(added[0], added[1], rtol=1e-4)
        assert torch.allclose(added[0], torch.full_like(added[0], alpha * float(mu.norm())), rtol=1e-4)


def test_matched_random_is_fresh_per_scenario_seed_and_layer():
    mu = torch.randn(32)
    a = controls.matched_random_direction(mu, "maze", 0, 1)
    assert torch.equal(a, controls.matched_random_direction(mu, "maze", 0, 1))
    for other in (controls.matched_random_direction(mu, "duel", 0, 1), controls.matched_random_direction(mu, "maze", 1, 1),
                  controls.matched_random_direction(mu, "maze", 0, 2)):
        assert abs(float(a @ other)) < 0.9


def test_cluster_bootstrap_is_wider_than_wilson_on_clustered_data():
    rng = np.random.default_rng(0)
    success, clusters = [], []
    for c in range(15):  # 15 baselines, each with 8 rows that share its fate
        p = 0.9 if rng.random() < 0.5 else 0.1
        for _ in range(8):
            success.append(bool(rng.random() < p))
            clusters.append(("s", c))
    r = controls.cluster_bootstrap_rate(success, clusters)
    lo, hi = metrics.wilson_ci(r.successes, r.eligible)
    assert r.ci is not None and r.ci[1] - r.ci[0] > 1.3 * (hi - lo)
    assert r.ci[0] <= r.rate <= r.ci[1] and r.clusters == 15


def test_cluster_bootstrap_matches_wilson_roughly_without_clustering():
    rng = np.random.default_rng(1)
    success = list(rng.random(200) < 0.3)
    r = controls.cluster_bootstrap_rate(success, list(range(200)))
    lo, hi = metrics.wilson_ci(r.successes, r.eligible)
    assert r.ci is not None and abs((r.ci[1] - r.ci[0]) - (hi - lo)) < 0.03


def test_choose_and_report_seeds_are_disjoint():
    choose, report = controls.split_seeds(2, 6)
    assert not set(choose) & set(report) and len(report) * 5 >= 30
    e = EvalSettings()
    assert not set(e.choose_seeds) & set(e.report_seeds) and len(e.report_seeds) * len(e.scenarios) >= 30
    with pytest.raises(ValueError):
        EvalSettings(choose_seeds=(0, 1), report_seeds=(1, 2))
    with pytest.raises(ValueError):
        controls.split_seeds(3, 3, choose_start=0, report_start=2)


def test_success_needs_the_call_and_the_band():
    task, emp, neither = (False, True), (True, False), (False, False)
    assert controls.success(1, emp, task, 1.0, 0.0, band=0.5)
    assert not controls.success(1, emp, task, 0.4, 0.0, band=0.5)  # inside the noise band
    assert not controls.success(1, neither, task, 3.0, 0.0, band=0.5)  # incoherent/echo/off-topic: no call
    assert not controls.success(1, emp, emp, 3.0, 0.0, band=0.5)  # the baseline was not a task call
    assert controls.success(-1, task, emp, -1.0, 0.0, band=0.5)
    assert controls.noise_band([0, 0, 0], [1, 1, 1]) == 1.0


def test_eval_cell_alpha_zero_is_bit_identical_and_seed_pairs(tiny):
    s = SweepSettings(new_tokens=6)
    torch.manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(tiny.n_layers, tiny.hidden_size), dim=-1)
    norms = torch.ones(tiny.n_layers) * 3.0
    recs = run_eval_cell(tiny, dirs, norms, "maze", 1, 0, (-0.3, 0.0, 0.3), s, tag="mean_diff")
    conds = [(str(r.condition), r.alpha) for r in recs]
    assert conds == [("probe", -0.3), ("probe", 0.0), ("probe", 0.3), ("matched_random", -0.3), ("matched_random", 0.3)]
    plain = run_eval_cell(tiny, dirs, norms, "maze", 1, 0, (0.0,), s, matched_random=False)[0]
    base = next(r for r in recs if r.alpha == 0)
    assert base.text == plain.text and base.raw_alpha == 0.0
    other = run_eval_cell(tiny, dirs, norms, "maze", 1, 1, (0.0,), s, matched_random=False)[0]
    pairs = seed_pairs([base, other], (0, 1))
    assert [(a.seed, b.seed) for a, b in pairs] == [(0, 1), (1, 0)]
    assert all(r.condition in (Condition.PROBE, Condition.MATCHED_RANDOM) for r in recs)


@torch.no_grad()
def test_evaluation_resumes_from_its_judged_cells(tiny, tmp_path, monkeypatch):
    """A rerun with the cell cache generates and judges nothing again and gives the same evaluation;
    a cell whose file is missing (the run stopped there) is made again, identically."""
    from empathy_core.study import sweep_eval
    from empathy_core.study.sweep_eval import CellCache, run_evaluation

    torch.manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(tiny.n_layers, tiny.hidden_size), dim=-1)
    norms = torch.ones(tiny.n_layers) * 3.0
    s = SweepSettings(new_tokens=4)
    e = EvalSettings(alphas=(0.0, 0.3), choose_seeds=(100, 101), report_seeds=(0, 1), layers=(1,), scenarios=("maze",))
    judged: list[str] = []

    def judge(recs):  # a deterministic stand-in for the judges: the gates pass, the call follows the text's hash
        for r in recs:
            judged.append(r.text)
            h = sum(map(ord, r.text)) % 3
            r.gates = {"coherent": True, "on_topic": True, "echo": False}
            r.call = {"empathy": h / 2, "empathic": h == 2, "task": h == 0}

    cache = CellCache(tmp_path / "cells")
    first, recs = run_evaluation(tiny, {"mean_diff": dirs}, norms, e, s, judge, cache=cache)
    n_cells = len(list((tmp_path / "cells").glob("*.json")))
    assert n_cells == 2 + 2 * 2 and cache.hits == 0 and len(judged) == len(recs)
    (tmp_path / "cells" / "report-mean_diff-L1-a0.3-s1-maze.json").unlink()  # as if the run stopped before it
    judged.clear()
    calls = []
    real = sweep_eval.run_eval_cell
    monkeypatch.setattr(sweep_eval, "run_eval_cell", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    redecided: list[str] = []
    again = CellCache(tmp_path / "cells", on_hit=lambda rs: redecided.extend(r.text for r in rs))
    second, recs2 = run_evaluation(tiny, {"mean_diff": dirs}, norms, e, s, judge, cache=again)
    assert again.hits == n_cells - 1 and calls == ["maze"] and len(judged) == 5
    assert len(redecided) == len(recs) - 5  # every stored record is re-decided under the current validation
    assert [r.to_dict() for r in recs2] == [r.to_dict() for r in recs]
    assert second == first


def test_cluster_interval_never_collapses_at_zero_successes():
    """0 of 8: resampling cannot vary the rate, so the interval is Wilson's, not [0, 0]."""
    r = controls.cluster_bootstrap_rate([False] * 8, list(range(8)))
    assert r.rate == 0.0 and r.ci is not None and r.ci[0] == 0.0
    assert r.ci[1] == pytest.approx(metrics.wilson_ci(0, 8)[1]) and r.ci[1] > 0.3
