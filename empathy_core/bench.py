"""Benchmarks, reported as ratios measured in one run (never asserted in tests).

    python -m empathy_core bench-extract --model smollm2-135m [--json OUT]

Each timing is the median of several repeats after a warm-up.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch


def median_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_loads(key: str) -> dict:
    """Cold load (GGUF dequantization, written to an empty cache) vs a cached reload."""
    from .models import load_model

    old = os.environ.get("EMPATHY_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EMPATHY_CACHE"] = tmp
        try:
            cold = load_model(key)
            cold_s = cold.load_seconds
            del cold
            cached_s = statistics.median(load_model(key).load_seconds for _ in range(3))
        finally:
            if old is None:
                os.environ.pop("EMPATHY_CACHE", None)
            else:
                os.environ["EMPATHY_CACHE"] = old
    return {"load_cold_s": round(cold_s, 2), "load_cached_s": round(cached_s, 3)}


def measure_scoring(handle, text: str, repeats: int = 5) -> dict:
    """Scoring one text at all layers (hooks project every token) vs one plain forward pass."""
    from .activations import _trunk, encode, score_tokens, tokenize_one

    D = torch.nn.functional.normalize(torch.randn(handle.n_layers, handle.hidden_size), dim=1)
    ids, mask = tokenize_one(handle, text, "mean")
    enc = encode(handle, [(ids, mask)])
    x = enc.input_ids.to(handle.device)

    @torch.inference_mode()
    def plain_full():
        handle.model(input_ids=x, use_cache=False)

    @torch.inference_mode()
    def plain_trunk():
        _trunk(handle)(input_ids=x, use_cache=False)

    def score():
        score_tokens(handle, text, D)

    fwd = median_time(plain_full, repeats, 2)
    trunk = median_time(plain_trunk, repeats, 2)
    sc = median_time(score, repeats, 2)
    return {"forward_ms": round(fwd * 1e3, 2), "forward_trunk_ms": round(trunk * 1e3, 2),
            "score_all_layers_ms": round(sc * 1e3, 2), "ratio_score_over_forward": round(sc / fwd, 3),
            "ratio_score_over_trunk_forward": round(sc / trunk, 3), "score_tokens": len(ids)}


def bench_extract(key: str = "smollm2-135m", n_texts: int = 100) -> dict:
    from . import dataset
    from .activations import extract
    from .models import load_model

    res = {"model": key, "torch_threads": torch.get_num_threads()}
    res.update(measure_loads(key))
    handle = load_model(key)
    pairs = dataset.load_pairs()
    texts = [t for p in pairs for t in (p.empathic, p.task)][:n_texts]
    extract(handle, texts[:8], batch_size=8)  # warm-up
    batched = median_time(lambda: extract(handle, texts, batch_size=16), 3, 0)
    single = median_time(lambda: extract(handle, texts, batch_size=1), 1, 0)
    res.update({"n_texts": len(texts), "extract_batched_s": round(batched, 3), "extract_one_at_a_time_s": round(single, 3),
                "ratio_one_at_a_time_over_batched": round(single / batched, 2)})
    res.update(measure_scoring(handle, pairs[0].empathic))
    return res
