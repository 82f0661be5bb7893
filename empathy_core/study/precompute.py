"""Everything the app replays, from one resumable command.

    python -m empathy_core precompute --model smollm2-135m

Writes ``precomputed/KEY/``:
    probes.safetensors, detection.json   the detection experiment (as ``extract``)
    lexical_ablation.json                AUROC after cue words are paraphrased on both sides
    judges.json                          each judge's validity on the graded set
    steering.json                        every generation with judge, probe, coherence, gate and
                                         call results; the evaluation (``sweep_eval``: choose- and
                                         report-seeds, matched controls, cluster intervals), dose-response
and, across models, ``precomputed/cross_model.json``, ``precomputed/reference_study.json``
and ``precomputed/manifest.json`` (sha256 of every file, dataset sha256, package version,
git commit, settings, schema version).

The steering evaluation needs ``precomputed/judge_validation.json`` (``validate-judges``).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..core.models import BUNDLED, generation_defaults, load_model
from ..store import PRECOMPUTED, StoreError, has_probe, load_detection, load_probe, model_dir, probe_path, read_json, write_json

if TYPE_CHECKING:
    from ..core.models import ModelHandle
    from ..core.probes import Probe
    from .experiments import DetectionSettings
    from .sweep import SweepSettings
    from .sweep_eval import EvalSettings
from . import dataset, metrics

SCHEMA_VERSION = "empathy-precomputed/2"
SWEEP_DIRECTION = "sweep_direction.safetensors"

# Neutral stand-ins for the cue words, used on both sides of every pair.
PARAPHRASE = {
    "empath": "attention", "compassion": "attention", "care": "mind", "caring": "minding", "cared": "minded",
    "cares": "minds", "feel": "think", "feels": "thinks", "feeling": "thinking", "feelings": "thoughts", "felt": "thought",
    "sorry": "well", "support": "back", "supporting": "backing", "supported": "backed", "understand": "get",
    "understood": "got", "understanding": "getting", "strateg": "plan", "optim": "best", "efficien": "quick",
    "objective": "aim", "task": "job", "goal": "aim", "goals": "aims", "points": "tally", "point": "tally",
    "score": "tally", "scores": "tallies", "scoring": "tallying", "metric": "measure",
}


def paraphrase_cues(text: str) -> str:
    def sub(m: re.Match) -> str:
        w = m.group(0)
        low = w.lower()
        prefixes = sorted((k for k in PARAPHRASE if low.startswith(k)), key=len, reverse=True)
        rep = PARAPHRASE.get(low) or (PARAPHRASE[prefixes[0]] if prefixes else "it")
        return rep.capitalize() if w[0].isupper() else rep

    return dataset.CUE_RE.sub(sub, text)


def lexical_ablation(handle: ModelHandle, probe: Probe) -> dict:
    from ..core.activations import extract

    pairs = [p for p in dataset.load_pairs() if p.split == "test"]
    ts = dataset.pair_texts(pairs)
    ablated = [paraphrase_cues(t) for t in ts.texts]
    changed = sum(a != b for a, b in zip(ablated, ts.texts))
    y = np.asarray(ts.labels)
    pooling = probe.meta.get("pooling", "mean")
    S0 = probe.score(extract(handle, ts.texts, pooling=pooling, scenarios=ts.scenarios).pooled).numpy()
    S1 = probe.score(extract(handle, ablated, pooling=pooling, scenarios=ts.scenarios).pooled).numpy()
    rows = [{"layer": L, "auroc_original": metrics.auroc(S0[:, L], y), "auroc_ablated": metrics.auroc(S1[:, L], y)}
            for L in range(probe.n_layers)]
    remaining = sum(bool(dataset.cue_words(t)) for t in ablated)
    rec = {"n_texts": len(ts.texts), "texts_changed": changed, "texts_with_cues_after": remaining,
           "method": "each cue word (dataset.CUE_RE) replaced by a neutral stand-in on both sides (precompute.PARAPHRASE)",
           "probe": "the study's mean difference (directions)", "layers": rows}
    det = probe.detection
    if det is not None:
        D0 = det.score(extract(handle, ts.texts, pooling=det.pooling, scenarios=ts.scenarios).pooled).numpy()  # type: ignore[arg-type]
        D1 = det.score(extract(handle, ablated, pooling=det.pooling, scenarios=ts.scenarios).pooled).numpy()  # type: ignore[arg-type]
        rec["detection_probe"] = {"method": det.method, "pooling": det.pooling, "layer": det.layer,
                                  "layers": [{"layer": L, "auroc_original": metrics.auroc(D0[:, L], y),
                                              "auroc_ablated": metrics.auroc(D1[:, L], y)} for L in range(probe.n_layers)]}
    return rec


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git here: the manifest records no commit
        return ""


def other_model(key: str) -> str:
    others = [k for k in BUNDLED if k != key]
    return others[0]


def drop_sweep_direction(key: str, root: Path) -> None:
    """Once the steering evaluation has run on the current probe, the old sweep's direction has nothing left
    to replay: remove ``KEY/sweep_direction.safetensors``."""
    (model_dir(key, root) / SWEEP_DIRECTION).unlink(missing_ok=True)


def keep_sweep_direction(key: str, root: Path) -> Path | None:
    """Before a new probe file replaces the old one: copy the probe the committed steering sweep used into
    ``KEY/sweep_direction.safetensors`` (its directions and norms, with the old dataset sha256 and the sweep's
    layers), unless it is there already. The sweep is then replayable after the detection probe changes."""
    from ..core.probes import Probe

    out = model_dir(key, root)
    dst, st_path = out / SWEEP_DIRECTION, out / "steering.json"
    if dst.exists() or not st_path.exists() or not has_probe(key, root):
        return dst if dst.exists() else None
    old = Probe.load(probe_path(key, root))
    st = read_json(st_path)
    sweep_probe = Probe(directions=old.directions, mean_norms=old.mean_norms, thresholds=old.thresholds,
                        class_means=old.class_means, calib=old.calib,
                        meta={**{k: v for k, v in old.meta.items() if k not in ("schema", "layer_convention", "created")},
                              "purpose": "the direction the committed steering sweep (steering.json) used",
                              "sweep_layers": st["settings"]["layers"], "sweep_probe_layer": st["probe_layer"],
                              "copied_from": "probes.safetensors as committed before issue 10's data change"})
    sweep_probe.save(dst)
    return dst


def run_detection_only(key: str, progress: bool = True, root: Path | None = None) -> dict:
    """``precompute --only detection``: detection and lexical ablation, then cross-model and manifest.

    The steering sweep is left as it is; the direction it used is kept first (``keep_sweep_direction``).
    """
    from .experiments import DetectionSettings, run_detection

    root = root or PRECOMPUTED
    t0 = time.perf_counter()
    handle = load_model(key)
    out = model_dir(handle.key, root)
    keep_sweep_direction(handle.key, root)
    probe, record = run_detection(handle, DetectionSettings(cache_activations=True), progress=progress,
                                  log=lambda m: print(f"[{handle.key}] {m}", flush=True) if progress else None)
    timings = {"detection_s": round(time.perf_counter() - t0, 1)}
    record["seconds"]["precompute_detection_only"] = timings["detection_s"]
    probe.save(out / "probes.safetensors")
    write_json(out / "detection.json", record)
    t = time.perf_counter()
    write_json(out / "lexical_ablation.json", lexical_ablation(handle, probe))
    timings["lexical_ablation_s"] = round(time.perf_counter() - t, 1)
    write_cross_model(root)
    write_reference_study(root)
    write_manifest(root)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    return timings


def run_steering_only(key: str, settings: SweepSettings | None = None, progress: bool = True, root: Path | None = None,
                      eval_settings: EvalSettings | None = None, from_stored: bool = False) -> dict:
    """``precompute --only steering``: the steering evaluation on the committed probe and detection, then
    cross-model, reference and manifest. Resumes from the judged cells a previous run kept; with ``from_stored``
    the committed evaluation's cells are used (a new judge validation re-decides them without generating)."""
    from .precompute_eval import evaluate, validation_report
    from .sweep import SweepSettings
    from .sweep_eval import EvalSettings

    root = root or PRECOMPUTED
    t0 = time.perf_counter()
    other = other_model(key)
    for k in (key, other):
        if not has_probe(k, root):
            raise StoreError(f"The steering evaluation needs {k}'s probe at {probe_path(k, root)}. "
                             f"Run `python -m empathy_core precompute --only detection --model {k}` first.")
    validation_report(root)
    handle = load_model(key)
    probe = load_probe(handle.key, root)
    best = int(load_detection(handle.key, root)["best_layer"])
    models = {handle.key: handle}

    def load(k: str) -> ModelHandle:
        if k not in models:
            models[k] = load_model(k)
        return models[k]

    s = settings or SweepSettings(**generation_defaults(handle.key))
    timings = evaluate(handle, probe, best, s, eval_settings or EvalSettings(), other, root, load, progress,
                       from_stored=from_stored)
    drop_sweep_direction(handle.key, root)
    write_cross_model(root)
    write_reference_study(root)
    write_manifest(root)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    return timings


def run_precompute(key: str, settings: SweepSettings | None = None, progress: bool = True, root: Path | None = None,
                   work_dir: Path | None = None, detection: DetectionSettings | None = None,
                   eval_settings: EvalSettings | None = None) -> dict:
    """Detection, lexical ablation and the steering evaluation (``sweep_eval``) for one model; returns the timings.

    ``detection`` replaces the detection settings (smoke tests use a reduced grid; the committed files use the
    default). ``settings`` gives the generation settings (tokens, sampling, repetition guard); ``eval_settings``
    the choose/report design. ``work_dir`` is unused (the old resumable sweep's cache), kept for callers.
    """
    from .experiments import DetectionSettings, run_detection
    from .judges import embedding_model_dir
    from .precompute_eval import evaluate, validation_report
    from .sweep import SweepSettings
    from .sweep_eval import EvalSettings

    root = root or PRECOMPUTED
    t0 = time.perf_counter()
    timings = {}
    other = other_model(key)
    if not has_probe(other, root):  # the cross-model judge needs it; fail before hours of work
        raise StoreError(f"The cross-model judge needs {other}'s probe at {probe_path(other, root)}. "
                         f"Run `python -m empathy_core extract --model {other}` first.")
    validation_report(root)  # the validated gates and cut-offs, likewise
    embedding_model_dir()  # the embedding judge's package must be installed
    handle = load_model(key)
    out = model_dir(handle.key, root)

    # 1. detection
    probe, record = run_detection(handle, detection or DetectionSettings(cache_activations=True), progress=progress)
    probe.save(out / "probes.safetensors")
    write_json(out / "detection.json", record)
    timings["detection_s"] = round(time.perf_counter() - t0, 1)

    # 2. lexical ablation
    t = time.perf_counter()
    write_json(out / "lexical_ablation.json", lexical_ablation(handle, probe))
    timings["lexical_ablation_s"] = round(time.perf_counter() - t, 1)

    # 3. steering evaluation: choose-seeds, report-seeds, matched controls, validated calls
    s = settings or SweepSettings(**generation_defaults(handle.key))
    models = {handle.key: handle}

    def load(k: str) -> ModelHandle:
        if k not in models:
            models[k] = load_model(k)
        return models[k]

    timings.update(evaluate(handle, probe, record["best_layer"], s, eval_settings or EvalSettings(), other, root, load,
                            progress))
    drop_sweep_direction(handle.key, root)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    write_cross_model(root)
    write_reference_study(root)
    write_manifest(root)
    return timings


def refresh_summaries(key: str, root: Path | None = None) -> None:
    """Recompute what is derived from stored results (lexical ablation, success rates,
    dose-response, cross-model, manifest) without generating or judging again."""
    from .sweep import SweepRecord, SweepSettings, success_table

    root = root or PRECOMPUTED
    handle = load_model(key)
    out = model_dir(handle.key, root)
    probe = load_probe(handle.key, root)
    write_json(out / "lexical_ablation.json", lexical_ablation(handle, probe))
    f = out / "steering.json"
    if f.exists() and "evaluation" not in read_json(f):  # an issue-11 file's rates come from sweep_eval only
        st = read_json(f)
        s = SweepSettings.from_stored(st["settings"])
        records = [SweepRecord.from_dict(g) for g in st["generations"]]
        st.update(success_table(records, s, probe_layer=st["best_detection_layer"]))
        st["generations"] = [r.to_dict() for r in records]
        write_json(f, st)
    write_cross_model(root)
    write_reference_study(root)
    write_manifest(root)


def write_cross_model(root: Path) -> None:
    models = {}
    for key in BUNDLED:
        d = model_dir(key, root)
        if (d / "detection.json").exists():
            det = read_json(d / "detection.json")
            models[key] = {"n_layers": det["n_layers"], "best_layer": det["best_layer"],
                           "by_depth": [{"layer": r["layer"], "relative_depth": r["relative_depth"], "auroc_test": r["auroc_test"],
                                         "auroc_test_ci": r["auroc_test_ci"]} for r in det["layers"]]}
    agreement = []
    for key in BUNDLED:
        f = model_dir(key, root) / "steering.json"
        if f.exists():
            st = read_json(f)
            recs = st["generations"]
            agreement.append({"texts_from": key, "other_model": st["cross_model"]["other_model"], **st["cross_model"],
                              "points": [[round(r["self_probe"], 4), round(r["judges"]["cross_model"], 4), r["condition"], r["alpha"]]
                                         for r in recs]})
    write_json(root / "cross_model.json", {"schema": SCHEMA_VERSION, "auroc_by_relative_depth": models,
                                           "score_agreement": agreement})


REFERENCE = {
    "label": "reported by the original study, not reproduced here",
    "study": "Detecting vs Steering Empathy in LLMs (2024)",
    "test_auroc_by_layer": {
        "Phi-3-mini": {"n_layers": 32, "auroc": {"8": 0.991, "12": 1.000, "16": 0.996, "20": 0.973, "24": 0.960}},
        "Qwen2.5-7B": {"n_layers": 28, "auroc": {"8": 0.791, "12": 0.964, "16": 1.000, "20": 0.991, "24": 0.964}},
        "Dolphin-Llama-3.1-8B": {"n_layers": 32, "auroc": {"8": 0.996, "12": 0.996, "16": 0.982, "20": 0.969, "24": 0.969,
                                                           "28": 0.978}},
    },
    "steering_success_rate": {"Phi-3-mini": 0.617, "Qwen2.5-7B": 0.653, "Dolphin-Llama-3.1-8B": 0.944},
    "graded_correlation": {"Phi-3-mini": 0.71},
    "cross_model_correlation": {"Qwen2.5-7B": -0.06, "Dolphin-Llama-3.1-8B": 0.18},
    "random_direction_phi3_layer12": {"mean": 0.498, "sd": 0.240, "p95": 0.857},
    "notes": "Layer counts are the models' published configurations, used only to place the reported layers on a relative-depth axis.",
}


def write_reference_study(root: Path) -> None:
    write_json(root / "reference_study.json", REFERENCE)


def file_dataset_sha256(path: Path, root: Path) -> str | None:
    """The dataset sha256 a result file was computed on: its own record where it has one; an old-format
    steering or judge file follows the sweep's direction file (or, before one exists, the probe file)."""
    from ..core.probes import read_safetensors

    if path.suffix == ".safetensors":
        return read_safetensors(path)[1].get("dataset_sha256")
    if path.parent == root:
        return dataset.dataset_sha256() if path.name == "cross_model.json" else None
    if path.name in ("steering.json", "judges.json"):
        own = read_json(path).get("dataset_sha256")  # the steering evaluation records the probe's data
        if own:
            return own
        src = path.parent / SWEEP_DIRECTION
        src = src if src.exists() else path.parent / "probes.safetensors"
        return read_safetensors(src)[1].get("dataset_sha256") if src.exists() else None
    obj = read_json(path)
    return obj.get("dataset_sha256", dataset.dataset_sha256() if path.name == "lexical_ablation.json" else None)


def write_manifest(root: Path) -> None:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json" and not p.name.startswith("."):
            files[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    settings = {}
    for key in BUNDLED:
        f = model_dir(key, root) / "steering.json"
        if f.exists():
            settings[key] = read_json(f)["settings"]
    write_json(root / "manifest.json", {"schema": SCHEMA_VERSION, "empathy_core_version": __version__, "git_commit": _git_commit(),
                                        "dataset_sha256": dataset.dataset_sha256(), "settings": settings, "files": files,
                                        "dataset_sha256_per_file": {rel: file_dataset_sha256(root / rel, root) for rel in files},
                                        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

