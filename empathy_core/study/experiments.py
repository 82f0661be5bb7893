"""Detection experiment: fit a probe per layer on the train split and measure it honestly.

For every layer it reports, on the test split unless said otherwise:
AUROC with a pair-bootstrap 95% CI, accuracy at the train midpoint threshold, Cohen's d,
the 95th percentile AUROC of random unit directions, leave-one-scenario-out AUROC,
AUROC on the lexically controlled subset and on the confound controls, and Spearman and
Pearson correlations with the graded set's rubric labels. The best layer is chosen on
the *dev* split, never on test.

    python -m empathy_core extract --model smollm2-135m
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from .. import __version__
from ..core import directions as M
from ..core.activations import LAYER_CONVENTION, Activations, Pooling, extract_multi
from ..core.models import ModelHandle
from ..core.probes import DetectionProbe, Method, Probe, fit_direction
from . import dataset, metrics
from . import detection as D
from .tables import Table, load_tables

DETECTION_SCHEMA = "empathy-detection/2"
# ``report(fraction, description)``: how far the experiment is, 0..1 (activations up to ACTS_SHARE, then metrics).
Report = Callable[[float, str], None]
ACTS_SHARE = 0.6


@dataclass
class DetectionSettings:
    method: Method = "mean_diff"
    pooling: Pooling = "mean"
    n_boot: int = 1000
    n_random: int = 200
    seed: int = 0
    batch_size: int = 16
    # the dev-only default choice (study/RULE.md): candidates, and the text-only baselines beside it
    poolings: tuple[str, ...] = ("mean", "last")
    methods: tuple[str, ...] = M.METHODS
    layers: tuple[int, ...] | None = None  # None: RULE.md's grid (even layers and the last)
    baselines: tuple[str, ...] = ("tfidf_logreg", "minilm_logreg")
    cache_activations: bool = False  # precompute keeps the forward passes in the user cache
    fixed_default: tuple | None = None  # (method, pooling, layer): skip the choice (reproduction tests only)
    # the forward passes' matrix products under torch.autocast in this dtype (None: as loaded). The live fit on a
    # CPU with bfloat16 matrix units uses "bfloat16" (fit.fit_matmul_dtype); precompute never does.
    matmul_dtype: str | None = None

    @property
    def autocast(self) -> torch.dtype | None:
        return None if self.matmul_dtype is None else getattr(torch, self.matmul_dtype)

    @classmethod
    def from_stored(cls, d: dict) -> DetectionSettings:
        """Settings as stored in detection.json (lists back to tuples; unknown keys refused)."""
        fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fixed)


def gather(handle: ModelHandle, s: DetectionSettings, progress: bool = False, report: Report | None = None) -> dict:
    """Activations of every table (pairs, long-form, confound controls, graded set, sanity set) at every pooling
    of ``s`` (and mean, the study's), one forward pass per batch over all texts."""
    tabs = load_tables()
    poolings = cast(tuple[Pooling, ...], tuple(dict.fromkeys((*s.poolings, *([s.pooling] if s.pooling != "chat" else [])))))
    texts = [t for tab in tabs.values() for t in tab.texts]
    on_batch = None
    if report is not None:
        def on_batch(done: int, n: int) -> None:
            report(ACTS_SHARE * done / n, "activations")
    acts = cached_extract(handle, texts, poolings, s, progress, on_batch)
    if s.pooling == "chat":  # the study's probe on chat pooling: its own pass (the rule's grid never uses it)
        acts["chat"] = extract_multi(handle, texts, ("chat",), [sc for tab in tabs.values() for sc in tab.scenarios],
                                     batch_size=s.batch_size, autocast=s.autocast)["chat"]
    views: D.Views = {p: {} for p in s.poolings}
    start = 0
    for kind, tab in tabs.items():
        sl = slice(start, start + len(tab))
        for p in s.poolings:
            views[p][kind] = D.View(tab, acts[p].pooled[sl].numpy(), acts[p].n_tokens[sl].numpy())
        start += len(tab)
    pairs = dataset.load_pairs()
    lex = {p.id for p in pairs if dataset.is_lexically_controlled(p)}
    n_p, n_c = len(tabs["pairs"]), len(tabs["confounds"])
    mean = acts[s.pooling]
    part = slice(0, n_p)

    def sub(a: Activations, sl: slice) -> Activations:
        return Activations(a.pooled[sl], a.token_norm[sl], a.pooling, a.n_tokens[sl])

    return {
        "tables": tabs, "views": views,
        "pairs": dataset.pair_texts(pairs),
        "pair_split": np.array(tabs["pairs"].splits),
        "pair_lexical": np.array([i in lex for i in tabs["pairs"].groups]),
        "X_pairs": sub(mean, part),
        "confounds": dataset.confound_texts(dataset.load_confounds()),
        "X_conf": sub(mean, slice(n_p + len(tabs["longform"]), n_p + len(tabs["longform"]) + n_c)),
        "graded": dataset.load_graded(),
        "X_graded": sub(mean, slice(n_p + len(tabs["longform"]) + n_c, n_p + len(tabs["longform"]) + n_c + len(tabs["graded"]))),
    }


def cached_extract(handle: ModelHandle, texts: list[str], poolings: tuple[Pooling, ...], s: DetectionSettings,
                   progress: bool, on_batch: Callable[[int, int], None] | None) -> dict[str, Activations]:
    """``extract_multi``, kept in ``$EMPATHY_CACHE/activations/`` when ``s.cache_activations`` (precompute), keyed by
    model, revision, poolings, batch size and the texts themselves, so a rerun of the rule skips the forward passes."""
    if not s.cache_activations:
        return extract_multi(handle, texts, poolings, batch_size=s.batch_size, progress=progress, desc="activations",
                             on_batch=on_batch, autocast=s.autocast)
    from safetensors.torch import load_file, save_file

    from ..core.models import cache_root

    key = hashlib.sha256(json.dumps([handle.key, handle.revision, list(poolings), s.batch_size, texts]
                                    + ([s.matmul_dtype] if s.matmul_dtype else [])).encode()).hexdigest()
    path = cache_root() / "activations" / f"{handle.key.replace('/', '__')}-{key[:20]}.safetensors"
    if path.exists():
        t = load_file(str(path))
        return {p: Activations(t[f"pooled_{p}"], t["token_norm"], p, t["n_tokens"]) for p in poolings}
    acts = extract_multi(handle, texts, poolings, batch_size=s.batch_size, progress=progress, desc="activations",
                         on_batch=on_batch, autocast=s.autocast)
    first = acts[poolings[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({**{f"pooled_{p}": a.pooled.contiguous() for p, a in acts.items()}, "token_norm": first.token_norm.contiguous(),
               "n_tokens": first.n_tokens.float()}, str(tmp))
    tmp.replace(path)
    return acts


def fit_probe(data: dict, s: DetectionSettings, meta: dict) -> Probe:
    """Fit every layer's direction on train, its threshold on train and its calibration on dev."""
    pt, split = data["pairs"], data["pair_split"]
    y = np.asarray(pt.labels)
    pooled = data["X_pairs"].pooled  # (N, L, H)
    tr, dv = split == "train", split == "dev"
    ids_tr = [i for i, m in zip(pt.pair_ids, tr) if m]
    L = pooled.shape[1]
    dirs, thr, cm, cal = [], [], [], []
    for layer in range(L):
        X = pooled[:, layer].double()
        d = fit_direction(X[tr], y[tr], s.method, pair_ids=ids_tr)
        proj = (X @ d.double()).numpy()
        dirs.append(d)
        thr.append(metrics.midpoint_threshold(proj[tr], y[tr]))
        cm.append([proj[tr][y[tr] == 0].mean(), proj[tr][y[tr] == 1].mean()])
        cal.append(metrics.platt(proj[dv], y[dv]))
    norms = data["X_pairs"].token_norm[tr].mean(0)
    return Probe(directions=torch.stack(dirs), mean_norms=norms.float(), thresholds=torch.tensor(thr).float(),
                 class_means=torch.tensor(cm).float(), calib=torch.tensor(cal).float(), meta=meta)


def detection_metrics(data: dict, probe: Probe, s: DetectionSettings, progress: bool = False,
                      report: Report | None = None) -> list[dict]:
    pt, split, lex = data["pairs"], data["pair_split"], data["pair_lexical"]
    y = np.asarray(pt.labels)
    groups = np.asarray(pt.pair_ids)
    scen = np.asarray(pt.scenarios)
    tr, dv, te = split == "train", split == "dev", split == "test"
    S_pairs = probe.score(data["X_pairs"].pooled).numpy()  # (N, L)
    S_conf = probe.score(data["X_conf"].pooled).numpy()
    S_graded = probe.score(data["X_graded"].pooled).numpy()
    y_conf = np.asarray(data["confounds"].labels)
    g_labels = np.array([g.label for g in data["graded"]])
    pooled = data["X_pairs"].pooled
    rows = []
    layers = range(probe.n_layers)
    if progress:
        from tqdm.auto import tqdm

        layers = tqdm(layers, desc="metrics", unit="layer")
    for layer in layers:
        sc = S_pairs[:, layer]
        thr = float(probe.thresholds[layer])
        lo, hi = metrics.bootstrap_auroc_ci(sc[te], y[te], groups[te], n_boot=s.n_boot, seed=s.seed + layer)
        X = pooled[:, layer].double().numpy()
        rand = metrics.random_direction_aurocs(X[tr], y[tr], X[te], y[te], n_dirs=s.n_random, seed=s.seed + 1000 + layer)
        loso = {}
        for held in dataset.SCENARIO_IDS:
            fit_mask = (scen != held) & (tr | dv)
            d = fit_direction(torch.as_tensor(X[fit_mask]), y[fit_mask], s.method,
                              pair_ids=list(groups[fit_mask])).double().numpy()
            loso[held] = metrics.auroc(X[scen == held] @ d, y[scen == held])
        lex_te = te & lex
        sp = metrics.correlation_ci(S_graded[:, layer], g_labels, "spearman", n_boot=s.n_boot, seed=s.seed)
        pe = metrics.correlation_ci(S_graded[:, layer], g_labels, "pearson", n_boot=s.n_boot, seed=s.seed)
        if report is not None:
            report(ACTS_SHARE + (1 - ACTS_SHARE) * (layer + 1) / probe.n_layers, f"metrics: layer {layer}")
        rows.append({
            "layer": layer,
            "relative_depth": (layer + 1) / probe.n_layers,
            "auroc_test": metrics.auroc(sc[te], y[te]),
            "auroc_test_ci": [lo, hi],
            "auroc_dev": metrics.auroc(sc[dv], y[dv]),
            "auroc_train": metrics.auroc(sc[tr], y[tr]),
            "accuracy_test": metrics.accuracy(sc[te], y[te], thr),
            "threshold": thr,
            "cohens_d_test": metrics.cohens_d(sc[te], y[te]),
            "random_auroc_mean": float(rand.mean()),
            "random_auroc_sd": float(rand.std()),
            "random_auroc_p95": float(np.quantile(rand, 0.95)),
            "loso_auroc": loso,
            "loso_auroc_mean": float(np.mean(list(loso.values()))),
            "lexical_auroc_test": metrics.auroc(sc[lex_te], y[lex_te]),
            "lexical_n_pairs_test": int(lex_te.sum() // 2),
            "confound_auroc": metrics.auroc(S_conf[:, layer], y_conf),
            "graded_spearman": sp[0], "graded_spearman_ci": [sp[1], sp[2]],
            "graded_pearson": pe[0], "graded_pearson_ci": [pe[1], pe[2]],
            "mean_residual_norm": float(probe.mean_norms[layer]),
        })
    return rows


def best_layer(rows: list[dict]) -> int:
    """Highest dev AUROC; ties broken by the larger dev-independent train AUROC, then the earlier layer."""
    return max(rows, key=lambda r: (round(r["auroc_dev"], 6), round(r["auroc_train"], 6), -r["layer"]))["layer"]


def fit_detection_probe(data: dict, s: DetectionSettings, default: dict, n_layers: int) -> tuple[DetectionProbe, list[dict]]:
    """The chosen method at every layer (its per-layer curve), the probe tensors, and the gate at the chosen layer."""
    views, m = data["views"], D.masks(data["tables"])
    rows, dirs, hypers = D.per_layer_curve(default["method"], default["pooling"], views, m, n_layers, s.n_boot)
    V = views[default["pooling"]]
    y = V["pairs"].tab.arr("labels")
    thr, cm, cal = [], [], []
    for layer in range(n_layers):
        proj = V["pairs"].X(layer) @ dirs[layer]
        tr, dv = proj[m["s_train"]], proj[m["s_dev"]]
        thr.append(metrics.midpoint_threshold(tr, y[m["s_train"]]))
        cm.append([tr[y[m["s_train"]] == 0].mean(), tr[y[m["s_train"]] == 1].mean()])
        cal.append(metrics.platt(dv, y[m["s_dev"]]))
    gate = D.fit_gate(V, m, default["layer"])
    meta = {"method": default["method"], "pooling": default["pooling"], "layer": default["layer"],
            "hyper_per_layer": hypers, "gate": gate.as_dict(), "rule_version": D.RULE_VERSION,
            "rule_sha256": D.rule_sha256(), "rule_text": D.rule_text(), "chosen_on": "dev only (study/RULE.md)"}
    probe = DetectionProbe(directions=torch.as_tensor(dirs).float(), thresholds=torch.tensor(thr).float(),
                           class_means=torch.tensor(cm).float(), calib=torch.tensor(cal).float(),
                           gate_mean=torch.as_tensor(gate.mean).float(), gate_precision=torch.as_tensor(gate.precision).float(),
                           meta=meta)
    return probe, rows


def run_rule(data: dict, s: DetectionSettings, n_layers: int, study_layer: int,
             log: Callable[[str], None] = lambda _: None) -> tuple[DetectionProbe, dict]:
    """Dev side -> the default (RULE.md) -> the test side for the default and the study's mean difference."""
    views, tabs = data["views"], data["tables"]
    m = D.masks(tabs)
    layers = list(s.layers) if s.layers is not None else D.candidate_layers(n_layers)
    cands, dirs = D.dev_side(views, m, s.methods, layers, log)
    default = D.choose_default(cands)  # before any test number
    if s.fixed_default is not None:  # a replay of a committed choice on a reduced grid: the choice is not redone
        fixed = next(c for c in cands if (c["method"], c["pooling"], c["layer"]) == tuple(s.fixed_default))
        default = {**default, **{k: fixed[k] for k in ("method", "pooling", "layer", "hyper", "dev_short", "dev_long",
                                                         "dev_score", "conf_in")}, "rule_branch": "fixed (replay)"}
    log(f"default: {default['method']} {default['pooling']} layer {default['layer']}")
    det_probe, curve = fit_detection_probe(data, s, default, n_layers)
    study = {"method": "mean_diff", "pooling": s.pooling, "layer": study_layer, "hyper": None,
             "rule": "highest short-dev AUROC over all layers (best_layer)"}
    study_dir = M.mean_diff(views[s.pooling]["pairs"].X(study_layer, m["s_train"]),
                            views[s.pooling]["pairs"].tab.arr("labels")[m["s_train"]]) if s.pooling in views else None
    reports = {"default": D.full_report(default, views, m, det_probe.directions[default["layer"]].double().numpy(), s.n_boot)}
    reports["default"]["sanity"] = D.sanity_report(default, views, m, det_probe.directions[default["layer"]].double().numpy(),
                                                   det_probe.gate())
    if study_dir is not None:
        reports["study_mean_diff"] = D.full_report(study, views, m, study_dir, s.n_boot)
        reports["study_mean_diff"]["sanity"] = D.sanity_report(study, views, m, study_dir,
                                                               D.fit_gate(views[s.pooling], m, study_layer))
    log("reports done")
    per_layer_test = []
    for c in cands:  # point estimates of every candidate, for the curves of other methods (after the choice)
        V, d_ = views[c["pooling"]], dirs[(c["method"], c["pooling"], c["layer"])][0]
        te = m["s_test"]
        per_layer_test.append({"method": c["method"], "pooling": c["pooling"], "layer": c["layer"],
                               "test_auroc": D.auc(V["pairs"].X(c["layer"], te) @ d_, V["pairs"].tab.arr("labels")[te])})
    from .baselines import baseline_reports

    rec = {"rule": {"text": D.rule_text(), "version": D.RULE_VERSION, "sha256": D.rule_sha256(), "file": "empathy_core/study/RULE.md",
                    "candidate_layers": layers, "poolings": list(s.poolings), "methods": list(s.methods)},
           "default": default, "study": study, "default_curve": curve, "candidates_dev": cands,
           "candidates_test": per_layer_test, "reports": reports,
           "gate": {**det_probe.gate().as_dict(), "layer": default["layer"], "pooling": default["pooling"]},
           "baselines": baseline_reports(tabs, m, s.n_boot, s.baselines) if s.baselines else {},
           "tone_markers_auroc": D.tone_marker_check(tabs),
           "counts_v2": _counts(tabs, m)}
    return det_probe, rec


def _counts(tabs: dict[str, Table], m: dict[str, np.ndarray]) -> dict:
    return {"short_pairs": {k: int(m[f"s_{k}"].sum() // 2) for k in ("train", "dev", "test")},
            "short_test_minimal_pairs": int(m["s_test_minimal"].sum() // 2),
            "short_test_lexical_pairs": int(m["s_test_lexical"].sum() // 2),
            "longform_pairs": {k: int(m[f"l_{k}"].sum() // 2) for k in ("train", "dev", "test")},
            "confound_items": {"train_part": int(m["c_train"].sum() // 2), "heldout_part": int(m["c_held"].sum() // 2)},
            "graded": len(tabs["graded"]), "sanity": len(tabs["sanity"])}


def run_detection(handle: ModelHandle, s: DetectionSettings | None = None, progress: bool = False,
                  report: Report | None = None, log: Callable[[str], None] | None = None) -> tuple[Probe, dict]:
    """Activations -> the study's probe and per-layer metrics -> the dev-only default (RULE.md) and its report.

    Returns the probe (the study's mean difference per layer, plus the detection probe) and the detection record.
    ``progress`` shows tqdm bars; ``report(fraction, description)`` is called as the work advances.
    """
    s = s or DetectionSettings()
    say = log or (lambda _: None)
    t0 = time.perf_counter()
    data = gather(handle, s, progress, report)
    t_acts = time.perf_counter() - t0
    say(f"activations: {t_acts:.0f} s")
    meta = {"model_key": handle.key, "revision": handle.revision, "pooling": s.pooling, "method": s.method,
            "dataset_sha256": dataset.dataset_sha256(), "n_layers": handle.n_layers, "hidden_size": handle.hidden_size,
            "empathy_core_version": __version__, "steering_direction": "directions (the study's mean difference)"}
    probe = fit_probe(data, s, meta)
    rows = detection_metrics(data, probe, s, progress, report)
    split = data["pair_split"]
    best = best_layer(rows)
    t_rule = time.perf_counter()
    probe.detection, rule_rec = run_rule(data, s, handle.n_layers, best, say)
    probe.meta["detection_summary"] = {k: rule_rec["default"][k] for k in ("method", "pooling", "layer")}
    record = {
        "schema": DETECTION_SCHEMA,
        "model_key": handle.key,
        "revision": handle.revision,
        "layer_convention": LAYER_CONVENTION,
        "n_layers": handle.n_layers,
        "hidden_size": handle.hidden_size,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.__dict__.items()},
        "dataset_sha256": meta["dataset_sha256"],
        "counts": {"pairs_train": int((split == "train").sum() // 2), "pairs_dev": int((split == "dev").sum() // 2),
                   "pairs_test": int((split == "test").sum() // 2), "confound_controls": len(data["confounds"]) // 2,
                   "graded": len(data["graded"])},
        "best_layer": best,
        "best_layer_rule": "highest dev-split AUROC (the study's mean difference; the steering layer)",
        "layers": rows,
        **rule_rec,
        "seconds": {"activations": round(t_acts, 2), "rule": round(time.perf_counter() - t_rule, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
    return probe, record
