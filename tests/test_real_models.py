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
    """The committed precomputed/smollm2-135m/detection.json is what the code computes now."""
    committed, (probe, fresh) = fresh_smol_detection
    assert fresh["dataset_sha256"] == committed["dataset_sha256"] == dataset.dataset_sha256()
    assert fresh["best_layer"] == committed["best_layer"]
    for a, b in zip(fresh["layers"], committed["layers"]):
        assert a["auroc_test"] == pytest.approx(b["auroc_test"], abs=2e-3)
        assert a["confound_auroc"] == pytest.approx(b["confound_auroc"], abs=2e-3)
    committed_probe = store.load_probe("smollm2-135m")
    cos = torch.nn.functional.cosine_similarity(probe.directions, committed_probe.directions, dim=1)
    assert cos.min().item() > 0.999


def test_probe_beats_its_random_direction_control(fresh_smol_detection):
    _, (_, fresh) = fresh_smol_detection
    best = fresh["layers"][fresh["best_layer"]]
    assert best["auroc_test_ci"][0] > best["random_auroc_p95"]
    assert best["auroc_test_ci"][0] > 0.5


@pytest.mark.xfail(strict=True, reason=(
    "The issue's goal of test AUROC >= 0.95 at the best layer is not reached on our confound-controlled data: "
    "mean-difference probes on SmolLM2-135M reach about 0.75, and logistic probes about 0.86-0.89 "
    "(non-minimal pairs alone: about 0.95). strict=True makes this fail loudly once the goal is met."))
def test_smollm2_best_layer_test_auroc_reaches_095(fresh_smol_detection):
    _, (_, fresh) = fresh_smol_detection
    assert fresh["layers"][fresh["best_layer"]]["auroc_test"] >= 0.95


@pytest.mark.parametrize("key", ["smollm2-135m", "gemma3-270m"])
def test_reproduces_committed_probe_scores_through_the_cli(key, tmp_path):
    pairs = [p for p in dataset.load_pairs() if p.split == "test"][:4]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t, "pair": p.id}) + "\n" for p in pairs for t in (p.empathic, p.task)))
    out = tmp_path / "out.jsonl"
    assert cli.main(["score", "--model", key, "--in", str(inp), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    det = store.load_detection(key)
    assert len(rows) == 8 and {r["layer"] for r in rows} == {det["best_layer"]}
    # the CLI's scores are the projections of the committed probe at that layer
    from tests.conftest import real_model

    h = real_model(key)
    probe = store.load_probe(key)
    want = probe.score(extract(h, [r["text"] for r in rows]).pooled)[:, det["best_layer"]]
    torch.testing.assert_close(torch.tensor([r["score"] for r in rows]), want, atol=1e-4, rtol=1e-4)
