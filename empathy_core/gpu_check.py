"""GPU check: exactness on tiny models of every architecture, and timings at the study's sizes (no download).

    python -m empathy_core gpu-check --json gpu-check.json [--sizes tiny|study] [--dtypes bf16,fp16]
    python -m empathy_core.gpu_check --json OUT ...        # the same, without the CLI module

Exits 1 when any exactness check fails (the JSON says which), 0 otherwise.

Exactness, on tiny random-init llama, qwen2, phi3 and gemma3 in each dtype:
  extraction   batched (batch 8, padded) equals one text at a time (max abs diff of the pooled
               states, relative to their scale, within the dtype's tolerance)
  alpha_zero   logits with the steering hook attached at α = 0 are bit-identical to plain logits
  per_row      each row of a batched 3-α greedy call equals the same α generated alone
  sampling     each row of a sampled 3-α call with a shared seed equals that α sampled alone, and
               another seed gives another sample

Timings (``--sizes study``: random-init weights from the exact configs of Qwen2.5-7B-Instruct,
Llama-3.1-8B and Phi-3-mini in ``core/study_configs``, so the same shapes and cost; ``--sizes
tiny``: the same configs at width 4 per head, for a dry run on CPU):
  the full detection fit as ``fit`` runs it (extraction of every table, every candidate of RULE.md's grid, the
  rule, the reports and the text-only baselines),
  extraction alone at batch 128 and 32, plain vs steered decode of 128 tokens, and single,
  side-by-side and 7-α generation of 128 tokens (these five interleaved round by round, medians of 3 rounds).

It needs torch, transformers, numpy, scipy, scikit-learn, safetensors, tokenizers and tqdm,
never gradio or plotly (``tests/test_gpu_check.py`` imports it with those blocked). On a
machine without this repo's requirements, carry the wheels of scipy and scikit-learn (the
metrics use them) together with the working tree.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .core.activations import extract
from .core.generation import GenerationRequest, side_by_side
from .core.models import ModelHandle, find_layers
from .core.steering import steer, steering_vectors
from .study import dataset
from .testing import tiny_model, tiny_tokenizer

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Batched vs single extraction: max abs diff / max abs value. Padding changes the kernels' shapes,
# so low-precision sums may round differently; fp32 must agree to float precision.
EXTRACT_TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}
TINY_ARCHS = ("llama", "qwen2", "phi3", "gemma3")
TIMING_KEYS = {"Qwen2.5-7B": "qwen2.5-7b", "Llama-3.1-8B": "llama3.1-8b", "Phi-3-mini": "phi3-mini"}
NEW_TOKENS = 128


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Median seconds of ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _interleaved(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int = 3) -> tuple[dict, dict]:
    """Median seconds of each function over ``rounds`` rounds that run every function once, in turn, after one
    warm-up each, so that a machine's drift between rounds falls on all of them alike (the raw rounds come back too)."""
    for fn in fns.values():
        fn()
    raw: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            raw[k].append(round(time.perf_counter() - t, 4))
    return {k: statistics.median(v) for k, v in raw.items()}, raw


def _request(h: ModelHandle, alphas: tuple[float, ...], new_tokens: int, greedy: bool = True, seed: int = 0,
             layer: int | None = None) -> GenerationRequest:
    g = torch.Generator().manual_seed(1)
    dirs = torch.nn.functional.normalize(torch.randn(h.n_layers, h.hidden_size, generator=g), dim=1)
    prompt = h.tokenizer.apply_chat_template([{"role": "user", "content": "The player next to you is stuck. What do you do?"}],
                                             tokenize=False, add_generation_prompt=True)
    return GenerationRequest(prompt=prompt, alphas=alphas, layer=h.n_layers // 2 if layer is None else layer,
                             directions=dirs, unit="raw", max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             greedy=greedy, seed=seed)


# ---------------------------------------------------------------------- exactness
def check_extraction(h: ModelHandle, dtype: torch.dtype) -> dict:
    texts = [t for p in dataset.load_pairs()[:8] for t in (p.empathic, p.task)]
    batched = extract(h, texts, batch_size=8).pooled
    single = extract(h, texts, batch_size=1).pooled
    diff = float((batched - single).abs().max())
    scale = float(single.abs().max()) or 1.0
    return {"max_abs_diff": diff, "relative": diff / scale, "tolerance": EXTRACT_TOL[dtype],
            "ok": diff / scale <= EXTRACT_TOL[dtype]}


@torch.inference_mode()
def check_alpha_zero(h: ModelHandle) -> dict:
    enc = h.tokenizer(["I stopped to help her before the timer ran out."], return_tensors="pt").to(h.device)
    plain = h.model(**enc).logits
    vec = torch.ones(h.hidden_size, device=h.device, dtype=h.dtype)
    with steer(h, steering_vectors(h, {h.n_layers // 2: vec}, "raw"), [0.0]):
        hooked = h.model(**enc).logits
    return {"ok": bool(torch.equal(plain, hooked)), "max_abs_diff": float((plain - hooked).abs().max())}


def check_per_row(h: ModelHandle, greedy: bool, new_tokens: int = 12) -> dict:
    alphas = (0.0, 4.0, -4.0)
    together = side_by_side(h, _request(h, alphas, new_tokens, greedy, seed=7)).rows
    solo = [side_by_side(h, _request(h, (a,), new_tokens, greedy, seed=7)).rows[0] for a in alphas]
    same = [t.token_ids == s.token_ids for t, s in zip(together, solo)]
    out: dict[str, Any] = {"rows_equal_solo": same, "ok": all(same)}
    if not greedy:  # the noise must matter: another seed, another sample
        other = side_by_side(h, _request(h, (0.0,), new_tokens, greedy, seed=8)).rows[0]
        out["other_seed_differs"] = other.token_ids != solo[0].token_ids
        out["ok"] = out["ok"] and out["other_seed_differs"]
    return out


def exactness(device: torch.device, dtypes: list[torch.dtype]) -> dict:
    """Every check on every tiny architecture in every dtype."""
    tok = tiny_tokenizer()
    out: dict[str, Any] = {}
    for arch in TINY_ARCHS:
        for dt in dtypes:
            h = tiny_model(arch, tokenizer=tok)
            h.model.to(device=device, dtype=dt)
            name = f"{arch}/{str(dt).removeprefix('torch.')}"
            try:
                out[name] = {"extraction": check_extraction(h, dt), "alpha_zero": check_alpha_zero(h),
                             "per_row": check_per_row(h, greedy=True), "sampling": check_per_row(h, greedy=False)}
            except RuntimeError as exc:  # e.g. a dtype this device's kernels do not support
                out[name] = {"error": f"{type(exc).__name__}: {exc}", "ok": False}
                continue
            out[name]["ok"] = all(v["ok"] for v in out[name].values())
    return out


# ---------------------------------------------------------------------- timings
def study_handle(key: str, device: torch.device, dtype: torch.dtype, tiny: bool) -> ModelHandle:
    """Random-init weights with the study model's exact config (``tiny``: 4 per attention head, for a dry run)."""
    from .core.study_models import random_init, study_config

    heads = study_config(key).num_attention_heads
    model = random_init(key, hidden=4 * heads if tiny else None, intermediate=8 * heads if tiny else None,
                        dtype=dtype, device=device)
    return ModelHandle(key=f"random-init:{key}", model=model, tokenizer=tiny_tokenizer(), layers=find_layers(model),
                       revision="random-init:0", is_chat=True)


def time_fit(h: ModelHandle, quick: bool) -> dict:
    """The full detection fit as ``fit`` runs it (``run_detection``): extraction of every table at both poolings,
    the study's probe with its per-layer controls, every candidate of RULE.md's grid, the rule, the test-side reports,
    the can't-judge gate and the text-only baselines.

    The MiniLM baseline is left out where its package is missing (a lent machine); it reads text only, so its cost is
    the same for every model. ``quick`` (the CPU dry run) cuts the bootstrap and random-direction counts. The tokenizer
    is the word-level test tokenizer, so texts are a little shorter in tokens than under the real one.
    """
    from .study.experiments import DetectionSettings, run_detection
    from .study.judges import embedding_model_dir

    try:
        embedding_model_dir()
        baselines: tuple[str, ...] = ("tfidf_logreg", "minilm_logreg")
    except FileNotFoundError:
        baselines = ("tfidf_logreg",)
    s = DetectionSettings(n_boot=100 if quick else 1000, n_random=20 if quick else 200, baselines=baselines)
    _sync(h.device)
    t0 = time.perf_counter()
    _, rec = run_detection(h, s)
    _sync(h.device)
    d = rec["default"]
    return {"n_boot": s.n_boot, "n_random": s.n_random, "batch_size": s.batch_size, "baselines": list(baselines),
            "activations_s": rec["seconds"]["activations"], "rule_s": rec["seconds"]["rule"],
            "total_s": round(time.perf_counter() - t0, 2), "default": f"{d['method']} {d['pooling']} layer {d['layer']}"}


def time_extraction(h: ModelHandle) -> dict:
    pairs = dataset.pair_texts(dataset.load_pairs())
    texts = pairs.texts + dataset.confound_texts(dataset.load_confounds()).texts + [g.text for g in dataset.load_graded()]
    out: dict[str, Any] = {"n_texts": len(texts)}
    for b in (128, 32):
        out[f"batch_{b}_s"] = round(_timed(lambda b=b: extract(h, texts, batch_size=b), h.device, 1), 2)  # type: ignore[misc]
    return out


def time_generation(h: ModelHandle, new_tokens: int = NEW_TOKENS) -> dict:
    req = _request(h, (4.0,), new_tokens)
    ids = h.tokenizer(req.prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(h.device)
    vecs = steering_vectors(h, {req.layer: req.directions[req.layer].to(h.device, h.dtype)}, "raw")
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=h.tokenizer.pad_token_id)

    @torch.inference_mode()
    def plain() -> None:
        h.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)

    @torch.inference_mode()
    def steered() -> None:
        with steer(h, vecs, 4.0):
            h.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)

    med, raw = _interleaved({
        "plain": plain, "steered": steered, "single": lambda: side_by_side(h, req),
        "pair": lambda: side_by_side(h, _request(h, (0.0, 4.0), new_tokens)),
        "strip": lambda: side_by_side(h, _request(h, tuple(float(a) for a in range(-3, 4)), new_tokens))}, h.device)
    t_plain, t_steer, single, pair, strip = (med[k] for k in ("plain", "steered", "single", "pair", "strip"))
    return {"new_tokens": new_tokens, "plain_tok_s": round(new_tokens / t_plain, 1),
            "steered_tok_s": round(new_tokens / t_steer, 1), "steered_over_plain": round(t_plain / t_steer, 3),
            "single_s": round(single, 3), "side_by_side_s": round(pair, 3), "strip_7_s": round(strip, 3),
            "side_by_side_over_single": round(pair / single, 3), "strip_7_over_single": round(strip / single, 3),
            "rounds_s": raw}


PARTS = ("exactness", "generation", "extraction", "fit")


def timings(device: torch.device, dtype: torch.dtype, tiny: bool, parts: tuple[str, ...] = PARTS,
            models: tuple[str, ...] = tuple(TIMING_KEYS)) -> dict:
    """Each study-sized model's timings (``models``: labels of TIMING_KEYS), for the ``parts`` asked for
    (printed as each one ends)."""
    steps: dict[str, Callable[[ModelHandle], dict]] = {"generation": time_generation, "extraction": time_extraction,
                                                         "fit": lambda h: time_fit(h, quick=tiny)}
    out: dict[str, Any] = {}
    for label, key in ((m, TIMING_KEYS[m]) for m in models):
        h = study_handle(key, device, dtype, tiny)
        n_params = sum(p.numel() for p in h.model.parameters())
        out[label] = {"config": key, "params": n_params, "n_layers": h.n_layers, "hidden": h.hidden_size}
        for part in (p for p in steps if p in parts):
            out[label][part] = steps[part](h)
            print(f"{label} {part}: {json.dumps(out[label][part])}", flush=True)
        del h
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def run(sizes: str = "tiny", dtypes: str = "bf16,fp16", device: str | None = None, parts: tuple[str, ...] = PARTS,
        models: tuple[str, ...] = tuple(TIMING_KEYS)) -> dict:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unknown = [m for m in models if m not in TIMING_KEYS]
    if unknown or not models:
        raise ValueError(f"Unknown model(s) {unknown or models!r}; choose from {', '.join(TIMING_KEYS)}.")
    names = [d.strip() for d in dtypes.split(",") if d.strip()]
    bad = [d for d in names if d not in DTYPES]
    if bad or not names:
        raise ValueError(f"Unknown dtype(s) {bad or dtypes!r}; choose from {', '.join(DTYPES)}.")
    t0 = time.perf_counter()
    ex = exactness(dev, [DTYPES[d] for d in names]) if "exactness" in parts else {}
    print(f"exactness: {json.dumps({k: v['ok'] for k, v in ex.items()})}", flush=True)
    timing_dtype = DTYPES[names[0]] if dev.type == "cuda" else torch.float32  # CPU dry run: fp32 timings
    result = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "python": platform.python_version(), "sizes": sizes, "dtypes": names,
              "exactness": ex, "exactness_ok": all(v["ok"] for v in ex.values()),
              "timing_dtype": str(timing_dtype).removeprefix("torch."),
              "parts": list(parts), "timings": timings(dev, timing_dtype, tiny=sizes == "tiny", parts=parts,
                                                                   models=models)}
    import transformers

    result["transformers"] = transformers.__version__
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(json_out: str, sizes: str = "tiny", dtypes: str = "bf16,fp16", parts: str = ",".join(PARTS),
         models: str = ",".join(TIMING_KEYS)) -> int:
    """Run, write ``json_out``, print a summary; 1 when an exactness check failed."""
    torch.manual_seed(0)
    wanted = tuple(p.strip() for p in parts.split(",") if p.strip())
    if not wanted or set(wanted) - set(PARTS):
        raise ValueError(f"Unknown part(s) in {parts!r}; choose from {', '.join(PARTS)}.")
    res = run(sizes, dtypes, parts=wanted, models=tuple(m.strip() for m in models.split(",") if m.strip()))
    Path(json_out).write_text(json.dumps(res, indent=1) + "\n")
    for name, v in res["exactness"].items():
        print(f"{name:20s} {'ok' if v['ok'] else 'FAILED'}  " + ("" if "error" in v else
              f"extract rel diff {v['extraction']['relative']:.1e}, alpha0 {v['alpha_zero']['ok']}, "
              f"per-row {v['per_row']['ok']}, sampling {v['sampling']['ok']}") + v.get("error", ""))
    for label, t in res["timings"].items():
        if set(PARTS[1:]) - set(t):
            continue  # a partial run: its parts were printed as they ended
        g = t["generation"]
        print(f"{label}: {t['params'] / 1e9:.2f} B params; full fit (all methods) {t['fit']['total_s']} s; extract "
              f"{t['extraction']['n_texts']} texts {t['extraction']['batch_128_s']} / {t['extraction']['batch_32_s']} s; "
              f"decode {g['plain_tok_s']} tok/s; steered/plain {g['steered_over_plain']}; side-by-side/single "
              f"{g['side_by_side_over_single']}; 7-α/single {g['strip_7_over_single']}")
    verdict = "not run" if not res["exactness"] else "all pass" if res["exactness_ok"] else "FAILED"
    print(f"wrote {json_out}; exactness {verdict}; {res['seconds']} s")
    return 0 if res["exactness_ok"] else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="GPU check (see the module docstring)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--sizes", default="tiny", choices=["tiny", "study"])
    ap.add_argument("--dtypes", default="bf16,fp16")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS))
    ap.add_argument("--models", default=",".join(TIMING_KEYS), help="comma-separated subset of " + ", ".join(TIMING_KEYS))
    a = ap.parse_args()
    sys.exit(main(a.json, a.sizes, a.dtypes, a.parts, a.models))
