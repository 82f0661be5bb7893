"""Command line: ``python -m empathy_core COMMAND``.

    python -m empathy_core extract --model smollm2-135m [--method mean_diff|logistic|pca] [--pooling mean|last|chat]
    python -m empathy_core score --model smollm2-135m [--layer N|best] --in IN.jsonl --out OUT.jsonl
    python -m empathy_core export --model smollm2-135m --layer best [--alpha A] --format safetensors|gguf --out FILE
    python -m empathy_core fit --model ID_OR_PATH [--refresh]
    python -m empathy_core gpu-check --json OUT [--sizes tiny|study] [--dtypes bf16,fp16] [--parts ...] [--models ...]
    python -m empathy_core precompute --model smollm2-135m [--quick] [--refresh] [--only detection|steering] [--out-dir DIR]
    python -m empathy_core validate-judges [--out FILE]
    python -m empathy_core bench --model smollm2-135m [--json OUT]
    python -m empathy_core bench-app [--json OUT]
    python -m empathy_core bench-fit [--model smollm2-135m] [--json OUT]

``extract`` writes ``precomputed/KEY/probes.safetensors`` and ``precomputed/KEY/detection.json``.
``score`` reads them; each input line is a JSON object with a "text" field, and each output
line is that object plus "score" (the projection on the probe), "layer" and "probe"; with the default detection
probe also "verdict" ("ok", or "too_short" / "too_far": can't judge) and "p_empathic" (null when it can't judge).

This module only parses arguments and calls the library; results are read and written by
``store.py``. A ``UserError`` (bad input, missing results, a model that cannot load here)
prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from .bench import PARTS as BENCH_PARTS
from .core.models import DEFAULT_MODEL
from .errors import UserError
from .store import load_detection, load_probe, model_dir, write_json


class CLIError(UserError):
    """A user-facing error: printed without a traceback, exit status 2."""


def resolve_layer(layer: str | int, detection: dict, n_layers: int) -> int:
    if layer in ("best", None):
        return int(detection["best_layer"])
    try:
        n = int(layer)
    except (TypeError, ValueError):
        raise CLIError(f"--layer must be a number or 'best', not {layer!r}.") from None
    if not 0 <= n < n_layers:
        raise CLIError(f"Layer {n} is out of range: this model has layers 0 to {n_layers - 1}.")
    return n


def cmd_extract(a: argparse.Namespace) -> int:
    from .core.models import load_model
    from .study.experiments import DetectionSettings, run_detection

    s = DetectionSettings(method=a.method, pooling=a.pooling, n_boot=a.n_boot, n_random=a.n_random, seed=a.seed,
                          batch_size=a.batch_size)
    print(f"Loading {a.model}...", file=sys.stderr)
    handle = load_model(a.model)
    print(f"Loaded in {handle.load_seconds:.1f}s ({'cache' if handle.from_cache else 'first load'}); "
          f"{handle.n_layers} layers, width {handle.hidden_size}.", file=sys.stderr)
    probe, record = run_detection(handle, s, progress=True)
    out = model_dir(handle.key, a.out_dir)
    probe.save(out / "probes.safetensors")
    write_json(out / "detection.json", record)
    b = record["layers"][record["best_layer"]]
    print(f"Best layer (dev AUROC): {record['best_layer']}  test AUROC {b['auroc_test']:.3f} "
          f"[{b['auroc_test_ci'][0]:.3f}, {b['auroc_test_ci'][1]:.3f}]  random p95 {b['random_auroc_p95']:.3f}  "
          f"LOSO {b['loso_auroc_mean']:.3f}  lexical {b['lexical_auroc_test']:.3f}  confound {b['confound_auroc']:.3f}  "
          f"graded rho {b['graded_spearman']:.3f}")
    print(f"Wrote {out / 'probes.safetensors'} and {out / 'detection.json'}")
    return 0


def _read_jsonl(path: str) -> list[dict]:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"Input file {path} does not exist.")
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CLIError(f"{path}:{n}: not valid JSON ({exc.msg}).") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
            raise CLIError(f"{path}:{n}: each line must be a JSON object with a non-empty \"text\" field.")
        rows.append(obj)
    if not rows:
        raise CLIError(f"{path} has no lines to score.")
    return rows


def cmd_score(a: argparse.Namespace) -> int:
    """Score texts with the default detection probe (its method, pooling and layer, and its can't-judge gate), or
    with the study's mean difference (``--probe study``, or a probe file without a detection probe)."""
    from .core.activations import extract
    from .core.models import load_model

    probe = load_probe(a.model, a.out_dir)
    detection = load_detection(a.model, a.out_dir)
    rows = _read_jsonl(a.inp)
    det = probe.detection if a.probe == "default" else None
    layer = resolve_layer(a.layer, {**detection, "best_layer": det.layer} if det is not None else detection, probe.n_layers)
    handle = load_model(a.model)
    probe.check_compatible(handle.n_layers, handle.hidden_size, handle.key)
    pooling = det.pooling if det is not None else probe.meta.get("pooling", "mean")
    scenarios = [r.get("scenario") or "" for r in rows] if pooling == "chat" else None
    acts = extract(handle, [r["text"] for r in rows], pooling=pooling, scenarios=scenarios, progress=True, desc="scoring")  # type: ignore[arg-type]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        if det is None:
            for r, s in zip(rows, probe.score(acts.pooled)[:, layer].tolist()):
                f.write(json.dumps({**r, "score": s, "layer": layer, "probe": "study_mean_diff"}, ensure_ascii=False) + "\n")
        else:
            scores = det.score(acts.pooled)[:, layer].tolist()
            gate = det.gate().verdict(acts.pooled[:, det.layer].double().numpy(), acts.n_tokens.numpy())
            for r, s, g in zip(rows, scores, gate.tolist()):
                p = det.probability(s, layer) if g == "ok" else None
                f.write(json.dumps({**r, "score": s, "layer": layer, "probe": det.method, "verdict": g,
                                    "p_empathic": p}, ensure_ascii=False) + "\n")
    print(f"Scored {len(rows)} texts at layer {layer} with "
          f"{'the default detection probe (' + det.method + ')' if det is not None else 'the study mean difference'}; wrote {out}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from .core.export import export_vector, write_gguf, write_safetensors
    from .core.models import REGISTRY

    probe = load_probe(a.model, a.out_dir)
    detection = load_detection(a.model, a.out_dir)
    layer = resolve_layer(a.layer, detection, probe.n_layers)
    vec = export_vector(probe, layer, a.alpha, a.unit)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.format == "gguf":
        spec = REGISTRY.get(a.model)
        write_gguf(out, vec, layer, a.model_hint or (spec.arch if spec else "llama"))
    else:
        write_safetensors(out, probe, layer, vec, a.alpha, a.unit)
    print(f"Wrote layer {layer} of {a.model} ({'unit direction' if a.alpha is None else f'alpha {a.alpha} {a.unit}'}) "
          f"as {a.format} to {out}")
    return 0


def cmd_fit(a: argparse.Namespace) -> int:
    """The app's "Fit the probe on this model": the detection experiment, written to the user cache."""
    from .core.models import load_model
    from .study.fit import current_fit, fit_model, read_fit

    model = str(Path(a.model).expanduser().resolve()) if Path(a.model).expanduser().is_dir() else a.model
    print(f"Loading {model}...", file=sys.stderr)
    handle = load_model(model)
    existing = current_fit(handle.key, handle.revision)
    if existing is not None and not a.refresh:
        print(f"Already fitted on this machine at {read_fit(existing)['fitted_at']} (--refresh fits again): {existing}")
        return 0
    res = fit_model(handle, progress=True)
    print(f"Fitted {handle.key} in {res.seconds:.1f} s; best layer (dev AUROC) {res.best_layer}. Wrote {res.path}")
    return 0


def cmd_results_table(a: argparse.Namespace) -> int:
    """Print the detection goal tables and the steering evaluation table (README and About) from the committed files."""
    from .study.report import detection_results, steering_results, update_readme

    if a.readme is not None:
        update_readme(a.readme, a.out_dir)
        print(f"Updated the detection and steering tables in {a.readme}")
    else:
        print(detection_results(a.out_dir) + "\n\n" + steering_results(a.out_dir))
    return 0


def cmd_gpu_check(a: argparse.Namespace) -> int:
    from .gpu_check import main as gpu_check_main

    return gpu_check_main(a.json, a.sizes, a.dtypes, a.parts, a.models)


def cmd_validate_judges(a: argparse.Namespace) -> int:
    from .study.validation import run

    rep = run(a.out)
    t = rep["test"]
    print(f"judge validation on the held-out labels (n = {rep['n']['test']}): " + ", ".join(
        f"{k} precision {v['precision']} recall {v['recall']}" for k, v in t.items() if isinstance(v, dict) and "precision" in v))
    return 0


def cmd_precompute(a: argparse.Namespace) -> int:
    from .study.precompute import run_precompute
    from .study.sweep import SweepSettings

    if a.refresh:
        from .study.precompute import refresh_summaries

        refresh_summaries(a.model, a.out_dir)
        print(f"Refreshed the summaries of {a.model} from its stored generations.")
        return 0
    if a.from_stored and a.only != "steering":
        raise UserError("--from-stored re-decides the committed steering evaluation: use it with --only steering.")
    if a.only == "detection":
        from .study.precompute import run_detection_only

        timings = run_detection_only(a.model, progress=True, root=a.out_dir)
        print(f"precompute --only detection {a.model}: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        return 0
    from .core.models import generation_defaults
    from .study.sweep_eval import EvalSettings

    s = SweepSettings(**generation_defaults(a.model))
    e = EvalSettings()
    if a.quick:  # a small slice, for smoke tests
        s = SweepSettings(**generation_defaults(a.model), new_tokens=16)
        e = EvalSettings(alphas=(-0.3, 0.0, 0.3), choose_seeds=(100, 101), report_seeds=(0, 1), scenarios=("listener",))
    if a.only == "steering":
        from .study.precompute import run_steering_only

        timings = run_steering_only(a.model, s, progress=True, root=a.out_dir, eval_settings=e, from_stored=a.from_stored)
    else:
        timings = run_precompute(a.model, s, progress=True, root=a.out_dir, eval_settings=e)
    print(f"precompute {a.model}: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from .bench import bench

    res = bench(a.model, new_tokens=a.new_tokens, repeats=a.repeats, n_texts=a.n, parts=a.parts or BENCH_PARTS)
    for k, v in res.items():
        print(f"{k:40s} {v}")
    if a.json:
        write_json(Path(a.json), res)
    return 0


def cmd_bench_fit(a: argparse.Namespace) -> int:
    from .bench import bench_fit_app

    res = bench_fit_app(a.model, port=a.port)
    for k, v in res.items():
        print(f"{k:40s} {v}")
    if a.json:
        write_json(Path(a.json), res)
    return 0


def cmd_bench_app(a: argparse.Namespace) -> int:
    from .bench import bench_app

    res = bench_app(port=a.port, repeats=a.repeats)
    for k, v in res.items():
        print(f"{k:40s} {v}")
    if a.json:
        write_json(Path(a.json), res)
    return 0


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def bench_parts(text: str) -> tuple[str, ...]:
    """``--parts``: comma-separated names from ``bench.PARTS``."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in BENCH_PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown bench parts {unknown}; choose from {', '.join(BENCH_PARTS)}")
    return parts


def _add_fit_parsers(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("fit", help="fit the probe on any model (hub id or local directory) into the user cache")
    f.add_argument("--model", required=True, help="a registry key, a Hugging Face id or a local model directory")
    f.add_argument("--refresh", action="store_true", help="fit again even when a cached fit exists")
    f.set_defaults(func=cmd_fit)
    g = sub.add_parser("gpu-check", help="exactness checks on tiny models and timings at the study's sizes")
    g.add_argument("--json", required=True, help="where to write the results")
    g.add_argument("--sizes", default="tiny", choices=["tiny", "study"])
    g.add_argument("--dtypes", default="bf16,fp16", help="comma-separated: bf16, fp16, fp32")
    g.add_argument("--parts", default="exactness,generation,extraction,fit",
                   help="comma-separated subset of exactness, generation, extraction, fit")
    g.add_argument("--models", default="Qwen2.5-7B,Llama-3.1-8B,Phi-3-mini",
                   help="comma-separated subset of the timed configs: Qwen2.5-7B, Llama-3.1-8B, Phi-3-mini")
    g.set_defaults(func=cmd_gpu_check)
    bf = sub.add_parser("bench-fit", help="time fitting the probe in the app while another visitor's replays answer")
    bf.add_argument("--model", default="smollm2-135m")
    bf.add_argument("--port", type=positive_int, default=7898)
    bf.add_argument("--json", default=None)
    bf.set_defaults(func=cmd_bench_fit)


def _add_study_parsers(sub: argparse._SubParsersAction) -> None:
    """``results-table`` and ``precompute``."""
    rt = sub.add_parser("results-table", help="print the detection goal tables and the steering evaluation table from the committed files")
    rt.add_argument("--out-dir", type=Path, default=None, help="default: precomputed/")
    rt.add_argument("--readme", type=Path, default=None, help="rewrite the tables between this file's markers instead")
    rt.set_defaults(func=cmd_results_table)

    pc = sub.add_parser("precompute", help="detection, lexical ablation, steering sweep, judges: everything the app replays")
    pc.add_argument("--model", required=True)
    pc.add_argument("--quick", action="store_true", help="a small slice (smoke test), not the committed settings")
    pc.add_argument("--refresh", action="store_true",
                    help="recompute summaries (lexical ablation, success rates, cross-model, manifest) from stored results")
    pc.add_argument("--out-dir", type=Path, default=None, help="default: precomputed/")
    pc.add_argument("--only", choices=["detection", "steering"], default=None,
                    help="detection: probes, detection.json, lexical ablation, cross-model, manifest; the steering "
                         "sweep is kept (and the direction it used is copied to sweep_direction.safetensors first). "
                         "steering: the steering evaluation on the committed probe (judges.json, steering.json), "
                         "resuming from the judged cells an interrupted run kept")
    pc.add_argument("--from-stored", action="store_true",
                    help="with --only steering: take the judged cells from the committed steering.json, so that a new "
                         "judge validation re-decides the stored replies without generating (same settings and data)")
    pc.set_defaults(func=cmd_precompute)


def _add_validate_judges(sub: argparse._SubParsersAction) -> None:
    vj = sub.add_parser("validate-judges", help="fit the steering gates and judge cut-offs on the blind labels' train "
                        "part, report precision and recall on the held-out part (precomputed/judge_validation.json)")
    vj.add_argument("--out", type=Path, default=None, help="default: precomputed/judge_validation.json (and the manifest)")
    vj.set_defaults(func=cmd_validate_judges)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m empathy_core", description="Empathy probes: extract, score, steer.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("extract", help="fit probes on every layer and write detection metrics")
    e.add_argument("--model", required=True)
    e.add_argument("--method", default="mean_diff", choices=["mean_diff", "logistic", "pca"])
    e.add_argument("--pooling", default="mean", choices=["mean", "last", "chat"])
    e.add_argument("--n-boot", type=positive_int, default=1000)
    e.add_argument("--n-random", type=positive_int, default=200)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=positive_int, default=16)
    e.add_argument("--out-dir", type=Path, default=None, help="default: precomputed/")
    e.set_defaults(func=cmd_extract)

    _add_fit_parsers(sub)
    s = sub.add_parser("score", help="score texts from a JSONL file with a fitted probe")
    s.add_argument("--model", required=True)
    s.add_argument("--layer", default="best")
    s.add_argument("--in", dest="inp", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--out-dir", type=Path, default=None, help="where probes live; default: precomputed/")
    s.add_argument("--probe", default="default", choices=["default", "study"],
                   help="default: the dev-chosen detection probe with its can't-judge gate; study: the mean difference")
    s.set_defaults(func=cmd_score)

    x = sub.add_parser("export", help="export a direction as safetensors or a llama.cpp control vector (GGUF)")
    x.add_argument("--model", required=True)
    x.add_argument("--layer", default="best")
    x.add_argument("--alpha", type=float, default=None, help="bake alpha into the vector (default: the unit direction)")
    x.add_argument("--unit", default="relative", choices=["relative", "raw"])
    x.add_argument("--format", default="safetensors", choices=["safetensors", "gguf"])
    x.add_argument("--model-hint", default=None, help="GGUF controlvector.model_hint (default: the model's architecture)")
    x.add_argument("--out", required=True)
    x.add_argument("--out-dir", type=Path, default=None, help="where probes live; default: precomputed/")
    x.set_defaults(func=cmd_export)

    _add_study_parsers(sub)
    _add_validate_judges(sub)

    b = sub.add_parser("bench", help="benchmark generation, steering, scoring, extraction and loading in one run")
    b.add_argument("--model", default=DEFAULT_MODEL)
    b.add_argument("--new-tokens", type=positive_int, default=48)
    b.add_argument("--repeats", type=positive_int, default=3)
    b.add_argument("--n", type=positive_int, default=100, help="texts for the extraction benchmark")
    b.add_argument("--parts", type=bench_parts, default=None, help="comma-separated, from: " + ", ".join(BENCH_PARTS)
                   + " (default: all)")
    b.add_argument("--json", default=None)
    b.set_defaults(func=cmd_bench)

    ba = sub.add_parser("bench-app", help="time the app: first page, model ready, a 64-token side-by-side request")
    ba.add_argument("--port", type=positive_int, default=7899)
    ba.add_argument("--repeats", type=positive_int, default=3)
    ba.add_argument("--json", default=None)
    ba.set_defaults(func=cmd_bench_app)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; 0 on success, 2 with a one-line message on a user error."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:  # CLIError, StoreError, ModelUnavailable: what to fix, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # bad values in input files, unwritable paths
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # a malformed results file, or a bug: the traceback says which
        traceback.print_exc()
        print(f"error: missing field {exc} (the traceback above shows where it was read)", file=sys.stderr)
        return 2
