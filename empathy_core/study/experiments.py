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

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import __version__
from ..core.activations import LAYER_CONVENTION, Activations, Pooling, extract
from ..core.models import ModelHandle
from ..core.probes import Method, Probe, fit_direction
from . import dataset, metrics

DETECTION_SCHEMA = "empathy-detection/1"
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


def _acts(handle: ModelHandle, texts: list[str], scenarios: list[str], s: DetectionSettings, progress: bool,
          desc: str, report: Report | None = None, offset: int = 0, total: int = 1) -> Activations:
    on_batch = None
    if report is not None:
        def on_batch(done: int, _n: int) -> None:
            report(ACTS_SHARE * (offset + done) / total, f"activations: {desc}")
    return extract(handle, texts, pooling=s.pooling, scenarios=scenarios, batch_size=s.batch_size,
                   progress=progress, desc=desc, on_batch=on_batch)


def gather(handle: ModelHandle, s: DetectionSettings, progress: bool = False, report: Report | None = None) -> dict:
    """Activations for the pairs, confound controls and graded set, in one pass over each."""
    pairs = dataset.load_pairs()
    pt = dataset.pair_texts(pairs)
    conf = dataset.confound_texts(dataset.load_confounds())
    graded = dataset.load_graded()
    n = len(pt.texts) + len(conf.texts) + len(graded)
    split_of = {p.id: p.split for p in pairs}
    lex = {p.id for p in pairs if dataset.is_lexically_controlled(p)}
    return {
        "pairs": pt,
        "pair_split": np.array([split_of[i] for i in pt.pair_ids]),
        "pair_lexical": np.array([i in lex for i in pt.pair_ids]),
        "X_pairs": _acts(handle, pt.texts, pt.scenarios, s, progress, "pairs", report, 0, n),
        "confounds": conf,
        "X_conf": _acts(handle, conf.texts, conf.scenarios, s, progress, "confound controls", report, len(pt.texts), n),
        "graded": graded,
        "X_graded": _acts(handle, [g.text for g in graded], [g.scenario for g in graded], s, progress, "graded set",
                          report, len(pt.texts) + len(conf.texts), n),
    }


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


def run_detection(handle: ModelHandle, s: DetectionSettings | None = None, progress: bool = False,
                  report: Report | None = None) -> tuple[Probe, dict]:
    """Activations -> probe -> per-layer metrics. Returns the probe and the detection record.

    ``progress`` shows tqdm bars; ``report(fraction, description)`` is called as the work advances.
    """
    s = s or DetectionSettings()
    t0 = time.perf_counter()
    data = gather(handle, s, progress, report)
    t_acts = time.perf_counter() - t0
    meta = {"model_key": handle.key, "revision": handle.revision, "pooling": s.pooling, "method": s.method,
            "dataset_sha256": dataset.dataset_sha256(), "n_layers": handle.n_layers, "hidden_size": handle.hidden_size,
            "empathy_core_version": __version__}
    probe = fit_probe(data, s, meta)
    rows = detection_metrics(data, probe, s, progress, report)
    split = data["pair_split"]
    record = {
        "schema": DETECTION_SCHEMA,
        "model_key": handle.key,
        "revision": handle.revision,
        "layer_convention": LAYER_CONVENTION,
        "n_layers": handle.n_layers,
        "hidden_size": handle.hidden_size,
        "settings": s.__dict__,
        "dataset_sha256": meta["dataset_sha256"],
        "counts": {"pairs_train": int((split == "train").sum() // 2), "pairs_dev": int((split == "dev").sum() // 2),
                   "pairs_test": int((split == "test").sum() // 2), "confound_controls": len(data["confounds"]) // 2,
                   "graded": len(data["graded"])},
        "best_layer": best_layer(rows),
        "best_layer_rule": "highest dev-split AUROC",
        "layers": rows,
        "seconds": {"activations": round(t_acts, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    return probe, record
