"""Steering on the real SmolLM2-135M-Instruct model."""

import numpy as np
import pytest
import torch
from scipy import stats

from empathy_core import store
from empathy_core.core.generation import GenerationRequest, side_by_side
from empathy_core.core.prompts import render_prompt
from empathy_core.core.steering import steer, steering_vectors
from empathy_core.study import dataset

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def setup(smol):
    probe = store.load_probe("smollm2-135m")
    layer = int(store.load_detection("smollm2-135m")["best_layer"])
    return smol, probe, layer


def test_alpha_zero_is_bit_identical_on_smollm2(setup):
    h, probe, layer = setup
    ids = h.tokenizer(render_prompt(h.tokenizer, h.is_chat, "duel"), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        base = h.model(input_ids=ids).logits
        with steer(h, steering_vectors(h, {layer: probe.directions[layer]}, "relative", probe.mean_norms), 0.0):
            same = h.model(input_ids=ids).logits
    assert torch.equal(base, same)


def test_batched_rows_match_separate_runs_on_smollm2(setup):
    """Step logits within 1e-4 and greedy tokens equal for >= 32 tokens, unless a near-tie."""
    h, probe, layer = setup
    ids = h.tokenizer(render_prompt(h.tokenizer, h.is_chat, "listener"), return_tensors="pt", add_special_tokens=False)["input_ids"]
    vecs = steering_vectors(h, {layer: probe.directions[layer]}, "relative", probe.mean_norms)
    alphas = [0.0, 0.2, -0.2]
    n = 32
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True,
              pad_token_id=h.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    with torch.no_grad(), steer(h, vecs, alphas):
        out = h.model.generate(input_ids=ids.repeat(3, 1), attention_mask=torch.ones(3, ids.shape[1], dtype=torch.long), **kw)
    toks_b, logits_b = out.sequences[:, ids.shape[1]:], torch.stack(out.logits, 1)
    for i, a in enumerate(alphas):
        with torch.no_grad(), steer(h, vecs, a):
            one = h.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
        toks_1, logits_1 = one.sequences[:, ids.shape[1]:], torch.stack(one.logits, 1)
        agree = int((toks_b[i] == toks_1[0]).cumprod(0).sum())
        upto = min(agree + 1, n)
        assert (logits_b[i, :upto] - logits_1[0, :upto]).abs().max().item() <= 1e-4
        if agree < n:
            top2 = logits_1[0, agree].topk(2).values
            assert (top2[0] - top2[1]).item() < 1e-3, f"row {i} diverged at step {agree} without a near-tie"


@pytest.mark.xfail(strict=True, reason=(
    "A finding, not a bug: refitted on the tone-balanced data (issue 10), SmolLM2's mean-difference direction no "
    "longer moves the independent judge beyond a random direction of the same norm (Spearman 0.13 vs 0.14 on "
    "this machine; floor 0.3). The old data's direction did, through tone. Issue 11's validated sweep (rerun "
    "with the next precompute) measures this properly; strict, so a direction that passes again turns this red."))
def test_independent_judge_score_of_generated_text_rises_with_alpha(setup, embedding_judge):
    """Steer with the probe, judge with something else: the MiniLM embedding classifier (trained on
    the dataset's train split, never on the steered model's states) must score the replies higher
    as alpha rises, over 5 alphas x 5 scenarios, and more so than along a random direction of the
    same norm (the control)."""
    from empathy_core.study.sweep import random_direction

    h, probe, layer = setup
    judge = embedding_judge
    alphas = [-0.3, -0.15, 0.0, 0.15, 0.3]
    rand = random_direction(h.hidden_size, layer, 1234)
    rho = {}
    for name, rows_dir in (("probe", probe.directions[layer]), ("random", rand)):
        xs, ys = [], []
        for s in dataset.SCENARIO_IDS:
            req = GenerationRequest(render_prompt(h.tokenizer, h.is_chat, s), tuple(alphas), layer, probe.directions,
                                    unit="relative", mean_norms=probe.mean_norms, max_new_tokens=40,
                                    row_directions=torch.stack([rows_dir] * len(alphas)))
            texts = [r.text if r.text.strip() else "." for r in side_by_side(h, req).rows]
            xs += alphas
            ys += judge.score(texts).tolist()
        rho[name] = stats.spearmanr(xs, ys).statistic
        if name == "probe":
            means = np.array(ys).reshape(5, 5).mean(0)
            assert means[-1] > means[0], means
    assert rho["probe"] > 0.3, rho
    assert rho["probe"] > rho["random"], rho
