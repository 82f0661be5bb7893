"""Real-model tests on the two bundled models (SmolLM2-135M-Instruct and Gemma-3-270M).

The first load of each dequantizes its GGUF file (15-45 s) and caches safetensors; later
loads take about a second.
"""

import json

import pytest
import torch

from empathy_core import cli, store
from empathy_core.core.activations import extract
from empathy_core.study import dataset
from tests.test_activations import _hook_reads

pytestmark = pytest.mark.real


@pytest.mark.parametrize("key,layers,width", [("smollm2-135m", 30, 576), ("gemma3-270m", 18, 640)])
def test_bundled_models_load_with_expected_shape(key, layers, width):
    from tests.conftest import real_model

    h = real_model(key)
    assert (h.n_layers, h.hidden_size) == (layers, width)
    assert h.dtype == torch.float32 and h.device.type == "cpu"
    assert h.is_chat == (key == "smollm2-135m")


@pytest.mark.parametrize("key", ["smollm2-135m", "gemma3-270m"])
def test_real_hook_reads_equal_hidden_states(key):
    from tests.conftest import real_model

    h = real_model(key)
    caps, hs = _hook_reads(h, "I put the bucket down and walk over to D with the water.")
    for L in range(h.n_layers - 1):
        torch.testing.assert_close(caps[L], hs[L + 1], rtol=0, atol=0)


def test_real_batched_equals_one_at_a_time(smol):
    pairs = dataset.load_pairs()[:6]
    texts = [p.empathic for p in pairs] + [p.task for p in pairs]
    batched = extract(smol, texts, batch_size=6)
    for i, t in enumerate(texts):
        one = extract(smol, [t], batch_size=1)
        # fp32 sums taken in a different order (padded batch vs one row) differ by rounding, which scales with the
        # activations' size: allow 1e-6 of the largest value (about 1e-4 here), not an absolute number
        scale = one.pooled[0].abs().max().item()
        assert (batched.pooled[i] - one.pooled[0]).abs().max().item() <= 1e-6 * scale


def test_reproduces_committed_detection(fresh_smol_detection):
    """The committed precomputed/smollm2-135m/detection.json is what the code computes now: the study's probe at
    every layer, the dev-chosen default's dev numbers, curve and every test-side report, the gate, the TF-IDF baseline."""
    committed, (probe, fresh) = fresh_smol_detection
    assert fresh["dataset_sha256"] == committed["dataset_sha256"] == dataset.dataset_sha256()
    assert fresh["best_layer"] == committed["best_layer"]
    for a, b in zip(fresh["layers"], committed["layers"]):
        assert a["auroc_test"] == pytest.approx(b["auroc_test"], abs=2e-3)
        assert a["confound_auroc"] == pytest.approx(b["confound_auroc"], abs=2e-3)
    committed_probe = store.load_probe("smollm2-135m")
    cos = torch.nn.functional.cosine_similarity(probe.directions, committed_probe.directions, dim=1)
    assert cos.min().item() > 0.999
    d = committed["default"]
    (cand,) = [c for c in committed["candidates_dev"] if (c["method"], c["pooling"], c["layer"]) == (d["method"], d["pooling"], d["layer"])]
    (again,) = [c for c in fresh["candidates_dev"] if c["method"] == d["method"] and c["layer"] == d["layer"]
                and c["pooling"] == d["pooling"]]
    for k in ("dev_short", "dev_long"):
        assert again[k] == pytest.approx(cand[k], abs=2e-3), k
    assert again["conf_in"] == pytest.approx(cand["conf_in"], abs=2e-3)
    a, b = fresh["reports"]["default"], committed["reports"]["default"]
    for k in ("test_auroc", "minimal_test_auroc", "lexical_test_auroc", "loso_test_auroc_mean", "graded_spearman",
              "longform_test_auroc_short_fit", "short_test_auroc_longform_fit"):
        assert a[k] == pytest.approx(b[k], abs=2e-3), k
    for axis, v in b["confound_heldout"].items():
        assert a["confound_heldout"][axis]["auroc"] == pytest.approx(v["auroc"], abs=2e-3), axis
    assert a["sanity"]["summary"] == pytest.approx(b["sanity"]["summary"], abs=2e-3)
    assert fresh["gate"]["max_distance"] == pytest.approx(committed["gate"]["max_distance"], rel=1e-3)
    for r1, r2 in zip(fresh["default_curve"], committed["default_curve"]):
        assert r1["auroc_test"] == pytest.approx(r2["auroc_test"], abs=2e-3)
    cos = torch.nn.functional.cosine_similarity(probe.detection.directions, committed_probe.detection.directions, dim=1)
    assert cos.min().item() > 0.999
    tf, tf0 = fresh["baselines"]["tfidf_logreg"], committed["baselines"]["tfidf_logreg"]
    assert tf["test_auroc"] == pytest.approx(tf0["test_auroc"], abs=1e-6) and tf["C"] == tf0["C"]


def test_probe_beats_its_random_direction_control(fresh_smol_detection):
    _, (_, fresh) = fresh_smol_detection
    best = fresh["layers"][fresh["best_layer"]]
    assert best["auroc_test_ci"][0] > best["random_auroc_p95"]
    assert best["auroc_test_ci"][0] > 0.5


# Floors of the dev-chosen default on SmolLM2 (the fourth data round's whitened probe, mean pooling, layer 6), about
# 0.05 below what was measured (README, detection.json: test 0.854, minimal 0.768, lexical 0.849, LOSO 0.733, graded
# 0.607, long-form 0.870, long-form fit on short 0.718); the goals (test >= 0.90 and >= TF-IDF + 0.03,
# minimal >= 0.85, LOSO >= 0.80, graded >= 0.70, long-form >= 0.85) are not met at this size but for long-form
# transfer: these catch regressions, they do not claim the goals.
SMOL_FLOORS: dict[str, float] = {"test_auroc": 0.80, "minimal_test_auroc": 0.72, "lexical_test_auroc": 0.80,
                                  "loso_test_auroc_mean": 0.68, "graded_spearman": 0.55,
                                  "longform_test_auroc_short_fit": 0.82, "short_test_auroc_longform_fit": 0.67}


def test_smollm2_default_probe_floors(fresh_smol_detection):
    _, (_, fresh) = fresh_smol_detection
    rep = fresh["reports"]["default"]
    for k, floor in SMOL_FLOORS.items():
        assert rep[k] >= floor, (k, rep[k], floor)
    assert rep["test_auroc"] > fresh["reports"]["study_mean_diff"]["test_auroc"]  # the default beats the study's method


@pytest.mark.parametrize("key", ["smollm2-135m", "gemma3-270m"])
def test_reproduces_committed_probe_scores_through_the_cli(key, tmp_path):
    pairs = [p for p in dataset.load_pairs() if p.split == "test"][:4]
    inp = tmp_path / "in.jsonl"
    texts = [t for p in pairs for t in (p.empathic, p.task)] + ["123"]
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    assert cli.main(["score", "--model", key, "--in", str(inp), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    det = store.load_detection(key)["default"]
    assert len(rows) == 9 and {r["layer"] for r in rows} == {det["layer"]} and {r["probe"] for r in rows} == {det["method"]}
    assert rows[-1]["verdict"] == "too_short" and rows[-1]["p_empathic"] is None  # "123" cannot be judged
    # the CLI's scores are the projections of the committed detection probe at its layer and pooling
    from tests.conftest import real_model

    h = real_model(key)
    probe = store.load_probe(key)
    want = probe.detection.score(extract(h, texts, pooling=det["pooling"]).pooled)[:, det["layer"]]
    torch.testing.assert_close(torch.tensor([r["score"] for r in rows]), want, atol=1e-4, rtol=1e-4)
    # --probe study: the study's mean difference at its best layer
    assert cli.main(["score", "--model", key, "--in", str(inp), "--out", str(out), "--probe", "study"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    best = store.load_detection(key)["best_layer"]
    want = probe.score(extract(h, texts).pooled)[:, best]
    torch.testing.assert_close(torch.tensor([r["score"] for r in rows]), want, atol=1e-4, rtol=1e-4)
