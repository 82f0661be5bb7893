"""The bench's packed-linear comparison on a tiny model: it measures both linear paths and leaves the model as it was."""

from types import SimpleNamespace

import pytest
import torch

from empathy_core.bench import PARTS, measure_packed_linear
from empathy_core.core.fast_linear import packed_bytes, use_packed_linear, use_stock_linear


def test_stock_linear_undoes_the_packed_path():
    lin = torch.nn.Linear(24, 40)
    seq = torch.nn.Sequential(lin)
    assert use_packed_linear(seq) == 1 and "forward" in lin.__dict__
    with torch.inference_mode():
        lin(torch.randn(4, 1, 24))
    assert packed_bytes(seq) > 0
    assert use_stock_linear(seq) == 1 and "forward" not in lin.__dict__ and "_packed" not in lin.__dict__
    assert use_stock_linear(seq) == 0


@pytest.mark.parametrize("patched", [False, True])
def test_packed_comparison_reports_both_paths_and_restores_the_model(tiny_models, patched):
    h = tiny_models["llama"]
    use_stock_linear(h.model)
    if patched:
        use_packed_linear(h.model)
    probe = SimpleNamespace(directions=torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1),
                            mean_norms=torch.ones(h.n_layers))
    try:
        out = measure_packed_linear(h, probe, 1, new_tokens=2, repeats=1)
        assert out["packed_linear_on_at_load"] is patched
        assert out["pack_all_layers_s"] >= 0 and out["packed_copy_bytes"] > 0
        assert isinstance(out["strip7_same_text_stock_and_packed"], bool)
        for suffix in ("_stock_linear", "_packed_linear"):
            assert out[f"side_by_side_s{suffix}"] > 0 and out[f"strip7_batched_s{suffix}"] > 0
            # over the stock single row; the times are rounded to 1 ms, so the ratio lies within their rounding
            pair, one = out[f"side_by_side_s{suffix}"], out["single_s_stock_linear"]
            ratio = out[f"ratio_side_by_side_over_single{suffix}"]
            assert (pair - 5e-4) / (one + 5e-4) - 1e-3 <= ratio <= (pair + 5e-4) / max(one - 5e-4, 1e-9) + 1e-3
        linears = [m for m in h.model.modules() if type(m) is torch.nn.Linear]
        assert all(("forward" in m.__dict__) is patched for m in linears)
        assert packed_bytes(h.model) == 0  # the comparison's packed copies are freed
    finally:
        use_stock_linear(h.model)
    assert "packed" in PARTS


def test_generation_bench_separates_decode_from_the_prompt_pass(tiny_models):
    from empathy_core.bench import measure_generation

    h = tiny_models["llama"]
    probe = SimpleNamespace(directions=torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1),
                            mean_norms=torch.ones(h.n_layers))
    out = measure_generation(h, probe, 1, new_tokens=4, repeats=1)
    assert out["prompt_tokens"] > 1 and out["prefill_s"] > 0
    # decode alone leaves out the prompt's pass, so it is at least as fast as end to end (up to timing noise)
    assert out["plain_decode_tok_s"] > 0 and out["plain_tok_s"] > 0


def test_fit_agreement_compares_a_fit_with_the_committed_results(tmp_path):
    import json

    from empathy_core import store
    from empathy_core.bench import fit_agreement

    def det(aurocs, layer, method="whitened", score=0.9):
        return {"best_layer": 1, "layers": [{"layer": i, "auroc_test": a} for i, a in enumerate(aurocs)],
                "default": {"method": method, "pooling": "mean", "layer": layer, "dev_score": score}}

    (tmp_path / store.FIT_FILE).write_text(json.dumps({"matmul_autocast": "bfloat16", "model_dtype": "float32"}))
    (tmp_path / "detection.json").write_text(json.dumps(det([0.5, 0.8, 0.7], 2, score=0.88)))
    a = fit_agreement(tmp_path, det([0.52, 0.8, 0.69], 1))
    assert a["fit_matmul"] == "bfloat16" and a["max_abs_diff_layer_auroc_test_vs_committed"] == 0.02
    assert a["same_best_layer"] and not a["same_default_probe"] and a["default_dev_score"] == [0.88, 0.9]
    (tmp_path / store.FIT_FILE).write_text(json.dumps({"matmul_autocast": None, "model_dtype": "float32"}))
    same = fit_agreement(tmp_path, det([0.5, 0.8, 0.7], 2, score=0.88))
    assert same["fit_matmul"] == "float32" and same["max_abs_diff_layer_auroc_test_vs_committed"] == 0.0
    assert same["same_default_probe"]


def test_linear_layers_once_runs_every_linear_layer_once(tiny_models, monkeypatch):
    from empathy_core import bench

    h = tiny_models["llama"]
    calls = []
    real = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, w, b=None: calls.append(tuple(w.shape)) or real(x, w, b))
    bench.linear_layers_once(h)
    assert calls == [tuple(m.weight.shape) for m in h.model.modules() if isinstance(m, torch.nn.Linear)]


def test_interleaved_medians_run_every_item_in_every_round():
    from empathy_core.bench import interleaved_medians

    order, raw = [], {}
    out = interleaved_medians({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, raw=raw)
    assert order == ["a", "b"] * 4 and set(out) == {"a", "b"} and all(v >= 0 for v in out.values())
    assert {k: len(v) for k, v in raw.items()} == {"a": 3, "b": 3}  # the warm-up round is not kept


def test_the_packed_comparison_never_overwrites_the_generation_part(tiny_models):
    """Both parts go into one result dict; a shared key would replace the generation part's own (default path)
    numbers with the comparison's stock-path ones (as the 7-row strip once did)."""
    from empathy_core.bench import measure_generation

    h = tiny_models["llama"]
    probe = SimpleNamespace(directions=torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1),
                            mean_norms=torch.ones(h.n_layers))
    try:
        gen = measure_generation(h, probe, 1, new_tokens=2, repeats=1)
        packed = measure_packed_linear(h, probe, 1, new_tokens=2, repeats=1)
    finally:
        use_stock_linear(h.model)
    assert not set(gen) & set(packed)


def test_generation_bench_with_the_ceiling_times_the_linears_in_its_rounds(tiny_models):
    from empathy_core.bench import measure_generation

    h = tiny_models["llama"]
    probe = SimpleNamespace(directions=torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size), dim=1),
                            mean_norms=torch.ones(h.n_layers))
    out = measure_generation(h, probe, 1, new_tokens=2, repeats=1, with_ceiling=True)
    assert out["linear_layers_alone_s"] > 0
    assert "linear_layers_alone_s" not in measure_generation(h, probe, 1, new_tokens=2, repeats=1)
