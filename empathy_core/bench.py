"""Benchmarks, reported as ratios measured in one run (never asserted in tests).

    python -m empathy_core bench --model smollm2-135m [--json OUT] [--new-tokens 48] [--repeats 3]
    python -m empathy_core bench --parts packed --new-tokens 16 --repeats 2   # one part only

Measures, after a warm-up, with medians of the repeats:
  generation   plain vs steered tokens/s; one row vs a side-by-side pair; a strip of six
               alphas in one batched call vs six sequential calls; a 7-alpha dose-response
               strip (one batched call) vs one row
  packed       one row, the pair and the 7-alpha strip with the stock nn.Linear and with the
               packed oneDNN path of core/fast_linear.py (decode steps of 4-64 rows; on by default),
               interleaved (ratios over one stock row); the time to pack, and whether the texts agree
  bandwidth    batch-1 decode tokens/s against the memory-bandwidth bound: the bytes of weights
               read per token divided by a measured copy bandwidth. Decode alone is (new tokens - 1)
               over (plain generation - a one-token generation), which removes the prompt's forward
               pass (compute-bound, ~100 tokens at once); end to end is given beside it. Beside them,
               the model's linear layers alone (one row through each, nothing else) against the bound:
               the ceiling this BLAS sets on decode. The copy bandwidth is measured before and after
               the generation part, and the higher of the two makes the bound
  scoring      one text scored at every layer vs one plain forward pass
  extraction   100 texts batched vs one at a time
  loading      cold (GGUF dequantization into an empty cache) vs cached
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .core.models import ModelHandle
    from .core.probes import Probe


def median_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
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
    from .core.models import load_model

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


def measure_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth in bytes/s: a ``mib`` MiB fp32 buffer copied into another, counting the
    bytes read and the bytes written (the median of ``repeats``; far larger than any cache)."""
    n = mib * (1 << 20) // 4
    src, dst = torch.ones(n), torch.empty(n)
    t = median_time(lambda: dst.copy_(src), repeats, 1)
    return 2 * n * 4 / t


def weight_bytes_per_token(handle: ModelHandle) -> int:
    """Bytes of weights one decode step reads: every parameter once, except the input embedding table,
    of which a step reads one row (unless it is tied to the LM head, which reads all of it)."""
    seen, total = set(), 0
    for p in handle.model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    emb = handle.model.get_input_embeddings().weight
    out = handle.model.get_output_embeddings()
    if out is None or out.weight.data_ptr() != emb.data_ptr():
        total -= (emb.shape[0] - 1) * emb.shape[1] * emb.element_size()
    return total


def linear_layers_once(handle: ModelHandle) -> None:
    """One row through every ``nn.Linear`` of the model once, in order, and nothing else: the
    matrix-vector products a decode step cannot avoid, with none of the rest (attention, norms,
    Python). Timed beside decode, it shows how close decode can come to the bandwidth bound with
    this machine's BLAS."""
    with torch.inference_mode():
        for m in handle.model.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.functional.linear(torch.ones(1, 1, m.in_features, device=handle.device, dtype=m.weight.dtype),
                                           m.weight, m.bias)


def measure_scoring(handle: ModelHandle, text: str, repeats: int = 5) -> dict:
    """Scoring one text at all layers (hooks project every token) vs one plain forward pass."""
    from .core.activations import _trunk, encode, score_tokens, tokenize_one

    D = torch.nn.functional.normalize(torch.randn(handle.n_layers, handle.hidden_size), dim=1)
    ids, mask = tokenize_one(handle, text, "mean")
    enc = encode(handle, [(ids, mask)])
    x = enc.input_ids.to(handle.device)

    @torch.inference_mode()
    def plain_full() -> None:
        handle.model(input_ids=x, use_cache=False)

    @torch.inference_mode()
    def plain_trunk() -> None:
        _trunk(handle)(input_ids=x, use_cache=False)

    def score() -> None:
        score_tokens(handle, text, D)

    fwd = median_time(plain_full, repeats, 2)
    trunk = median_time(plain_trunk, repeats, 2)
    sc = median_time(score, repeats, 2)
    return {"forward_ms": round(fwd * 1e3, 2), "forward_trunk_ms": round(trunk * 1e3, 2),
            "score_all_layers_ms": round(sc * 1e3, 2), "ratio_score_over_forward": round(sc / fwd, 3),
            "ratio_score_over_trunk_forward": round(sc / trunk, 3), "score_tokens": len(ids)}


def measure_extraction(handle: ModelHandle, n_texts: int = 100, repeats: int = 3) -> dict:
    from .core.activations import extract
    from .study import dataset

    pairs = dataset.load_pairs()
    texts = [t for p in pairs for t in (p.empathic, p.task)][:n_texts]
    extract(handle, texts[:8], batch_size=8)  # warm-up
    batched = median_time(lambda: extract(handle, texts, batch_size=16), repeats, 0)
    single = median_time(lambda: extract(handle, texts, batch_size=1), repeats, 0)
    return {"extract_n_texts": len(texts), "extract_batched_s": round(batched, 3),
            "extract_one_at_a_time_s": round(single, 3), "ratio_extract_one_at_a_time_over_batched": round(single / batched, 2)}


def measure_generation(handle: ModelHandle, probe: Probe, layer: int, new_tokens: int = 48, repeats: int = 3,
                       alpha: float = 0.3, with_ceiling: bool = False) -> dict:
    """Every generation measure, interleaved round by round (``interleaved_medians``). With
    ``with_ceiling``, each round also runs one row through every linear layer (``linear_layers_once``),
    so the ceiling comes from the same minutes as the decode it is compared with."""
    from .core.generation import GenerationRequest, side_by_side
    from .core.prompts import render_prompt
    from .core.steering import steer, steering_vectors

    prompt = render_prompt(handle.tokenizer, handle.is_chat, "listener")
    ids = handle.tokenizer(prompt, return_tensors="pt", add_special_tokens=not handle.is_chat)["input_ids"].to(handle.device)
    vecs = steering_vectors(handle, {layer: probe.directions[layer]}, "relative", probe.mean_norms)
    gen_kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=handle.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)

    @torch.inference_mode()
    def plain() -> None:
        handle.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen_kw)

    @torch.inference_mode()
    def prefill_only() -> None:  # the prompt's forward pass and one token: what every call pays before decoding
        handle.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **{**gen_kw, "max_new_tokens": 1,
                                                                                       "min_new_tokens": 1})

    def steered() -> None:
        with steer(handle, vecs, alpha), torch.inference_mode():
            handle.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen_kw)

    def sbs(alphas: list[float]) -> Callable[[], object]:
        req = GenerationRequest(prompt, alphas=tuple(alphas), layer=layer, directions=probe.directions, unit="relative",
                                mean_norms=probe.mean_norms, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        return lambda: side_by_side(handle, req)

    strip = [-0.5, -0.25, 0.0, 0.25, 0.5, 0.75]
    strip7 = [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3]  # the app's dose-response strip
    items: dict[str, Callable[[], object]] = {
        "plain": plain, "prefill": prefill_only, "steered": steered, "single": sbs([alpha]), "pair": sbs([0.0, alpha]),
        "strip6": sbs(strip), "sequential6": lambda: [sbs([a])() for a in strip], "strip7": sbs(strip7)}
    if with_ceiling:
        items["linears"] = lambda: linear_layers_once(handle)
    raw: dict[str, list[float]] = {}
    t = interleaved_medians(items, repeats, raw)
    out = {"generation_rounds_s": {k: [round(x, 3) for x in v] for k, v in raw.items()},
        "new_tokens": new_tokens, "steer_layer": layer, "alpha_relative": alpha,
        "plain_tok_s": round(new_tokens / t["plain"], 2), "steered_tok_s": round(new_tokens / t["steered"], 2),
        "prompt_tokens": int(ids.shape[1]), "prefill_s": round(t["prefill"], 3),
        "plain_decode_tok_s": round((new_tokens - 1) / max(t["plain"] - t["prefill"], 1e-9), 2),
        "ratio_steered_over_plain": round(t["plain"] / t["steered"], 3),
        "single_s": round(t["single"], 3), "side_by_side_s": round(t["pair"], 3),
        "ratio_side_by_side_over_single": round(t["pair"] / t["single"], 3),
        "strip6_batched_s": round(t["strip6"], 3), "strip6_sequential_s": round(t["sequential6"], 3),
        "ratio_strip6_sequential_over_batched": round(t["sequential6"] / t["strip6"], 3),
        "strip7_batched_s": round(t["strip7"], 3), "ratio_strip7_over_single": round(t["strip7"] / t["single"], 3),
    }
    if with_ceiling:
        out["linear_layers_alone_s"] = t["linears"]
    return out


def interleaved_medians(items: dict[str, Callable[[], object]], repeats: int,
                        raw: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Median seconds of each item over ``repeats`` rounds, after a warm-up round; every round runs every
    item once, in order, so a burst of load elsewhere on the machine touches one round of each, not all
    rounds of one (the ratios between items are what this bench reports). ``raw``, if given, receives
    every timed round's seconds per item."""
    times: dict[str, list[float]] = {k: [] for k in items} if raw is None else raw
    times.update({k: [] for k in items})
    for i in range(repeats + 1):
        for name, fn in items.items():
            t = time.perf_counter()
            fn()
            if i:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def measure_packed_linear(handle: ModelHandle, probe: Probe, layer: int, new_tokens: int = 48,
                          repeats: int = 3) -> dict:
    """One row, a side-by-side pair and the 7-α strip, each with the stock ``nn.Linear`` and with the
    packed oneDNN path for decode steps of 4-64 rows (``core/fast_linear.py``), interleaved so both see
    the same load; the model's own setting is restored afterwards. Ratios are over the stock single row.
    Also: the time to pack every layer once (the first strip pays it), the packed copies' size, and
    whether each path gave the same strip."""
    from .core.fast_linear import packed_bytes, use_packed_linear, use_stock_linear
    from .core.generation import GenerationRequest, side_by_side
    from .core.prompts import render_prompt

    prompt = render_prompt(handle.tokenizer, handle.is_chat, "listener")
    was_patched = use_stock_linear(handle.model) > 0
    runs: dict[tuple[str, int], list[float]] = {}
    texts: dict[str, list[str]] = {}
    strips = {1: (0.3,), 2: (0.0, 0.3), 7: (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)}
    first_strip = {}
    try:
        for i in range(repeats + 1):  # the first round warms up (and packs) and is not counted
            for path in ("stock", "packed"):
                use_stock_linear(handle.model)  # frees the packed copies: every round packs again, outside the timing
                if path == "packed" and not use_packed_linear(handle.model):
                    raise RuntimeError("This torch build has no oneDNN linear kernels; nothing to compare.")
                if path == "packed":
                    t = time.perf_counter()
                    _pack_all(handle)
                    if not i:
                        first_strip["pack_s"] = time.perf_counter() - t
                for rows, alphas in strips.items():
                    req = GenerationRequest(prompt, alphas=alphas, layer=layer, directions=probe.directions,
                                            mean_norms=probe.mean_norms, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
                    t = time.perf_counter()
                    res = side_by_side(handle, req)
                    if i:
                        runs.setdefault((path, rows), []).append(time.perf_counter() - t)
                    if rows == 7:
                        texts[path] = [r.text for r in res.rows]
                if path == "packed":
                    first_strip["packed_bytes"] = packed_bytes(handle.model)
    finally:
        use_stock_linear(handle.model)
        if was_patched:
            use_packed_linear(handle.model)
    med = {k: statistics.median(v) for k, v in runs.items()}
    one = med[("stock", 1)]
    out: dict[str, Any] = {"packed_linear_on_at_load": was_patched, "pack_all_layers_s": round(first_strip["pack_s"], 3),
                           "packed_copy_bytes": first_strip["packed_bytes"],
                           "strip7_same_text_stock_and_packed": texts["stock"] == texts["packed"]}
    for path in ("stock", "packed"):
        suffix = f"_{path}_linear"  # never the generation part's own keys, which this part must not overwrite
        out[f"single_s{suffix}"] = round(med[(path, 1)], 3)
        out[f"side_by_side_s{suffix}"] = round(med[(path, 2)], 3)
        out[f"strip7_batched_s{suffix}"] = round(med[(path, 7)], 3)
        out[f"ratio_side_by_side_over_single{suffix}"] = round(med[(path, 2)] / one, 3)
        out[f"ratio_strip7_over_single{suffix}"] = round(med[(path, 7)] / one, 3)
    return out


def _pack_all(handle: ModelHandle) -> None:
    """Run one 4-row decode-shaped input through every patched linear layer, so each packs its weight."""
    with torch.inference_mode():
        for m in handle.model.modules():
            if type(m) is torch.nn.Linear and "forward" in m.__dict__:
                m(torch.zeros(4, 1, m.in_features, device=handle.device, dtype=m.weight.dtype))


PARTS = ("loading", "generation", "packed", "bandwidth", "scoring", "extraction")


def bench(key: str = "qwen2.5-coder-0.5b", new_tokens: int = 48, repeats: int = 3, n_texts: int = 100,
          parts: tuple[str, ...] = PARTS) -> dict:
    """Everything in one run (or the named ``parts``); see the module docstring."""
    from . import store
    from .core.models import load_model
    from .study import dataset

    res: dict[str, Any] = {"model": key, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if "loading" in parts:
        res.update(measure_loads(key))
    handle = load_model(key)
    probe = store.load_probe(key)
    layer = int(store.load_detection(key)["best_layer"])
    res["device"] = str(handle.device)
    res["dtype"] = str(handle.dtype).replace("torch.", "")
    bandwidths = []
    if "bandwidth" in parts:
        bandwidths.append(measure_bandwidth())
    if "generation" in parts:
        res.update(measure_generation(handle, probe, layer, new_tokens, repeats, with_ceiling="bandwidth" in parts))
    if "packed" in parts:
        res.update(measure_packed_linear(handle, probe, layer, new_tokens, repeats))
    if "bandwidth" in parts:
        wb = weight_bytes_per_token(handle)
        bandwidths.append(measure_bandwidth())  # before and after the decode it bounds; the higher one (the stricter bound)
        bw = max(bandwidths)
        bound = bw / wb
        res.update({"copy_bandwidth_gb_s": round(bw / 1e9, 2), "copy_bandwidth_gb_s_before_after": [round(b / 1e9, 2) for b in bandwidths],
                    "weight_bytes_per_token": wb, "decode_bound_tok_s": round(bound, 2)})
        if "plain_tok_s" in res:  # decode alone (after the prompt's pass), and end to end with the prompt's pass
            res["ratio_plain_decode_over_bound"] = round(res["plain_decode_tok_s"] / bound, 3)
            res["ratio_plain_end_to_end_over_bound"] = round(res["plain_tok_s"] / bound, 3)
            ceiling = 1 / res.pop("linear_layers_alone_s")
            res["linear_layers_alone_tok_s"] = round(ceiling, 2)
            res["ratio_linear_layers_alone_over_bound"] = round(ceiling / bound, 3)
    if "scoring" in parts:
        res.update(measure_scoring(handle, dataset.load_pairs()[0].empathic, repeats=max(5, repeats)))
    if "extraction" in parts:
        res.update(measure_extraction(handle, n_texts, repeats))
    return res


APP_PROMPT = "Game chat:\n[User] I had a rough day and nobody answers me.\n\nWhat do you do now?"


def _app_ready(client: Any, t0: float, timeout: float) -> str:
    """Poll /status until Ready; the model the app serves by default, read from its status line."""
    import re

    while "Ready" not in (status := client.predict(api_name="/status")):
        if "Start-up failed" in status:
            raise RuntimeError(status)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the model did not become ready")
        time.sleep(0.2)
    m = re.search(r"Ready: (\S+) loaded", status)
    if m is None:
        raise RuntimeError(f"cannot read the default model from the status line {status!r}")
    return m.group(1)


def _steer_job(client: Any, key: str, layer: int, new_tokens: int, seed: int) -> tuple[Any, float, float]:
    """Submit one /steer and wait for its first streamed token: (job, submit time, first-token time)."""
    t = time.perf_counter()
    job = client.submit(key, "listener", APP_PROMPT, 0.2, layer, new_tokens, seed, True, None, api_name="/steer")
    while not any(o and (o[0] or o[1]) for o in job.outputs()):
        if job.done():
            break
        time.sleep(0.01)
    return job, t, time.perf_counter()


def _generation(job: Any) -> tuple[float, float, int]:
    """(request seconds are measured by the caller) the generation seconds and new tokens the app saved."""
    import json

    saved = json.loads(Path(job.result()[6]).read_text())
    return time.perf_counter(), saved["seconds"], saved["new_tokens"]


def measure_app_latency(client: Any, key: str, layer: int, repeats: int, new_tokens: int) -> dict:
    """Through the HTTP API: a side-by-side alone (first streamed token, whole request, generation), a
    score alone, then a score sent while a side-by-side streams (its latency, and the generation's
    slowdown against the runs alone)."""
    first, steer_s, gen_s, tokens = [], [], [], []
    for i in range(repeats):
        job, t, t_first = _steer_job(client, key, layer, new_tokens, i)
        end, gen, n = _generation(job)
        first.append(t_first - t)
        steer_s.append(end - t)
        gen_s.append(gen)
        tokens.append(n)
    score_s, busy_score_s, busy_gen_s = [], [], []
    for i in range(repeats):
        t = time.perf_counter()
        client.predict(key, f"I waited with them until they felt safe ({i}).", layer, None, api_name="/score")
        score_s.append(time.perf_counter() - t)
    for i in range(repeats):
        job, _, _ = _steer_job(client, key, layer, new_tokens, i)
        t = time.perf_counter()
        client.predict(key, f"I stayed with them until help came ({i}).", layer, None, api_name="/score")
        busy_score_s.append(time.perf_counter() - t)
        busy_gen_s.append(_generation(job)[1])
    med = statistics.median
    return {"time_to_first_streamed_token_s": round(med(first), 2),
            "side_by_side_request_s": round(med(steer_s), 2), "side_by_side_generation_s": round(med(gen_s), 2),
            "new_tokens_per_row": med(tokens), "request_over_generation_ratio": round(med(steer_s) / med(gen_s), 2),
            "score_request_s": round(med(score_s), 3), "score_during_generation_s": round(med(busy_score_s), 3),
            "score_during_generation_max_s": round(max(busy_score_s), 3),
            "generation_with_a_score_s": round(med(busy_gen_s), 2),
            "generation_slowdown_by_a_score": round(med(busy_gen_s) / med(gen_s), 3)}


def _first_page(proc: Any, url: str, t0: float, timeout: float) -> float:
    import urllib.request

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and b"<html" in r.read().lower():
                    return time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the page did not answer")
        time.sleep(0.1)


def _launch(port: int, timeout: float, args: tuple[str, ...] = (), env: dict | None = None) -> tuple[Any, Any, float, float]:
    """Start ``python app.py`` and wait until its page answers and its model is ready.

    Returns (process, client, seconds to first page, seconds to ready); the caller ends the process.
    """
    import subprocess
    import sys

    from gradio_client import Client

    root = Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=root,
                            env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", **(env or {})),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        first_page = _first_page(proc, url, t0, timeout)
        client = Client(url, verbose=False)
        _app_ready(client, t0, timeout)
    except BaseException:
        proc.terminate()
        proc.wait(30)
        raise
    return proc, client, first_page, time.perf_counter() - t0


def fit_agreement(fit: Path, committed: dict) -> dict:
    """How a fit in the user cache compares with the committed (float32, precompute) detection results of the same
    model: its matmul dtype, the largest |difference| of per-layer test AUROC, and whether the best layer and the
    rule's default (method, pooling, layer) are the same."""
    from . import store

    meta = store.read_json(fit / store.FIT_FILE)
    det = store.read_json(fit / "detection.json")
    mine = {r["layer"]: r["auroc_test"] for r in det["layers"]}
    diff = max(abs(mine[r["layer"]] - r["auroc_test"]) for r in committed["layers"])
    pick = ("method", "pooling", "layer")
    return {"fit_matmul": meta.get("matmul_autocast") or meta.get("model_dtype"),
            "max_abs_diff_layer_auroc_test_vs_committed": round(diff, 4),
            "same_best_layer": det["best_layer"] == committed["best_layer"],
            "same_default_probe": all(det["default"][k] == committed["default"][k] for k in pick),
            "default_dev_score": [round(det["default"]["dev_score"], 4), round(committed["default"]["dev_score"], 4)]}


def bench_fit_app(key: str = "smollm2-135m", port: int = 7898, timeout: float = 900.0) -> dict:
    """Fit the probe in the app (a fresh ``python app.py``) while another visitor's replays keep asking.

    The app gets a copy of ``precomputed/`` without ``key``'s results (so it offers the fit) and an
    empty fits folder (``EMPATHY_FITS``); the model itself loads from the usual cache. Visitor A
    presses "Fit the probe on this model"; visitor B asks for the steering and cross-model replays
    of another model once a second until the fit ends, and each answer is timed.
    """
    import shutil
    import tempfile

    from gradio_client import Client

    from . import store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "precomputed"
        shutil.copytree(store.PRECOMPUTED, root)
        shutil.rmtree(store.model_dir(key, root))
        other = next(d.name for d in sorted(root.iterdir()) if (d / "steering.json").exists())
        proc, client_a, _, ready = _launch(port, timeout, ("--model", key),
                                           {"EMPATHY_PRECOMPUTED": str(root), "EMPATHY_FITS": str(Path(tmp) / "fits")})
        try:
            client_b = Client(f"http://127.0.0.1:{port}/", verbose=False)
            t = time.perf_counter()
            job = client_a.submit(key, api_name="/fit_probe")
            replay_s = []
            while not job.done():
                r = time.perf_counter()
                client_b.predict(other, "listener", None, api_name="/steering_charts")
                client_b.predict(False, api_name="/cross_model_charts")
                replay_s.append(time.perf_counter() - r)
                time.sleep(1.0)
            note = job.result()
            fit_s = time.perf_counter() - t
        finally:
            proc.terminate()
            proc.wait(30)
        agreement = fit_agreement(next((Path(tmp) / "fits").glob("*/*/" + store.FIT_FILE)).parent,
                                  store.load_detection(key))
    return {"model": key, "app_ready_s": round(ready, 2), "fit_in_app_s": round(fit_s, 2), **agreement,
            "fit_note": note if isinstance(note, str) else note[0], "replays_during_fit": len(replay_s),
            "replay_pair_median_s": round(statistics.median(replay_s), 3) if replay_s else None,
            "replay_pair_max_s": round(max(replay_s), 3) if replay_s else None, "other_model": other}


def bench_app(port: int = 7899, repeats: int = 3, new_tokens: int = 64, timeout: float = 600.0) -> dict:
    """Start ``python app.py`` as a fresh process and time what a visitor waits for, on the model the
    app serves by default (read from its status line) at that model's default steering layer (read
    from its precomputed results, as the app does).

    time to first page   process start -> the page's HTML answers 200 (charts replay from JSON)
    time to model ready  process start -> the status endpoint says Ready (load + warm-up + judge)
    first streamed token /steer submitted -> the first streamed update with text
    side-by-side latency one /steer request (baseline + steered, 64 new tokens, greedy), end to end
                         through the HTTP API, median of ``repeats``; beside it the generation time
                         the app itself reports, and the per-request overhead as a ratio
    score latency        one /score request (one forward pass + chart), median of ``repeats``; then the
                         same while a 64-token side-by-side streams, and that generation's slowdown
    """
    from . import store

    proc, client, first_page, ready = _launch(port, timeout)
    try:
        key = _app_ready(client, time.perf_counter(), timeout)  # already ready: reads the model from the status line
        st = store.load_optional(key, "steering.json")
        layer = int(st["best_steering_layer"]) if st else int(store.load_detection(key)["best_layer"])
        res = measure_app_latency(client, key, layer, repeats, new_tokens)
    finally:
        proc.terminate()
        proc.wait(30)
    return {"model": key, "layer": layer, "time_to_first_page_s": round(first_page, 2),
            "time_to_model_ready_s": round(ready, 2), **res, "repeats": repeats}
