"""Fit every probe method at every layer and pooling, choose the default on dev (RULE.md), then measure.

Order of work, so that no test number can steer a choice:

1. dev side, for every candidate (method, pooling, layer): fit on short train (hyperparameters on short
   dev), dev AUROC, long-form dev AUROC (transfer), per-axis confound AUROC on the confound TRAIN part
   (cross-fitted for erased methods);
2. the default is chosen by :func:`choose_default` and written into the record;
3. only then: test AUROC (+ pair-bootstrap CI), minimal-pair and lexically controlled test AUROC,
   leave-one-scenario-out, held-back confound AUROC per axis (+ CI), graded Spearman (+ CI), long-form
   transfer both ways, the can't-judge rule and the sanity set; and the text-only baselines on the same splits.

    PYTHONPATH=.:staging python -m detect.evaluate smollm2-135m --poolings mean last
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from empathy_core.study import metrics

from . import methods as M
from .cache import fill
from .data import AXES, SCENARIO_IDS, Table, data_sha256, load_all
from .ood import CantJudge

OUT_DIR = Path(__file__).resolve().parent
TIE = 0.005
FALLBACK_MARGIN = 0.03
CONF_BAND = (0.40, 0.60)


# ---------------------------------------------------------------------------- metrics


def pair_bootstrap_ci(scores, labels, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> list[float]:
    """Percentile CI of AUROC resampling groups (pairs); vectorised when every group has one text of each class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    counts = np.bincount(inv)
    if not (counts == 2).all() or y.sum() != len(uniq):
        lo, hi = metrics.bootstrap_auroc_ci(s, y, g, n_boot=n_boot, seed=seed, alpha=alpha)
        return [lo, hi]
    pos = np.empty(len(uniq), int)
    neg = np.empty(len(uniq), int)
    pos[inv[y]] = np.flatnonzero(y)
    neg[inv[~y]] = np.flatnonzero(~y)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(uniq), (n_boot, len(uniq)))
    S = np.concatenate([s[pos[pick]], s[neg[pick]]], axis=1)  # (B, 2G): first G positives
    R = stats.rankdata(S, axis=1)
    G = len(uniq)
    a = (R[:, :G].sum(1) - G * (G + 1) / 2) / (G * G)
    return [float(np.quantile(a, alpha / 2)), float(np.quantile(a, 1 - alpha / 2))]


def auc(scores, labels) -> float:
    return metrics.auroc(scores, labels)


# ------------------------------------------------------------------------------ views


@dataclass
class View:
    """One kind's activations at one pooling, with the table they belong to."""

    tab: Table
    A: np.ndarray  # (N, L, H) float32
    ntok: np.ndarray  # (N,)

    def X(self, layer: int, mask=None) -> np.ndarray:
        X = self.A[:, layer].astype(np.float64)
        return X if mask is None else X[mask]


def masks(d: dict[str, Table]) -> dict[str, np.ndarray]:
    p, lf, c = d["pairs"], d["longform"], d["confounds"]
    sp, sl, sc = p.arr("splits"), lf.arr("splits"), c.arr("splits")
    m = {f"s_{s}": sp == s for s in ("train", "dev", "test")}
    m.update({f"l_{s}": sl == s for s in ("train", "dev", "test")})
    m["s_test_minimal"] = m["s_test"] & p.arr("minimal")
    m["s_test_lexical"] = m["s_test"] & p.arr("lexical")
    m["c_train"], m["c_held"] = sc == "conf_train", sc == "conf_heldout"
    return m


def conf_folds(tab: Table, part_mask: np.ndarray) -> np.ndarray:
    """Two folds inside a confound part, stratified by axis (sha256 order, alternating): 0/1, or -1 outside."""
    f = np.full(len(tab), -1)
    g, ax = tab.arr("groups"), tab.arr("axis")
    for a in AXES:
        ids = sorted({i for i, m, x in zip(g, part_mask, ax) if m and x == a},
                     key=lambda i: hashlib.sha256(f"fold:{i}".encode()).hexdigest())
        for j, i in enumerate(ids):
            f[g == i] = j % 2
    return f


# ------------------------------------------------------------------------ fitting


class Fitter:
    """Fits one candidate's direction at one layer, optionally on erased activations."""

    def __init__(self, V: dict[str, View], m: dict[str, np.ndarray]):
        self.V, self.m = V, m
        self.y_s = V["pairs"].tab.arr("labels").astype(bool)
        self.g_s = V["pairs"].tab.arr("groups")
        self.sc_s = V["pairs"].tab.arr("scenarios")
        self.y_l = V["longform"].tab.arr("labels").astype(bool)
        self.g_l = V["longform"].tab.arr("groups")
        self.sc_l = V["longform"].tab.arr("scenarios")
        self.ct = V["confounds"].tab
        self.y_c = self.ct.arr("labels").astype(bool)

    def eraser(self, layer: int, k: int, conf_mask) -> M.ProjectionEraser:
        Xc = self.V["confounds"].X(layer)
        return M.ProjectionEraser.fit(Xc[conf_mask], self.y_c[conf_mask], self.ct.arr("groups")[conf_mask], k,
                                      axes=self.ct.arr("axis")[conf_mask])

    def fit(self, method: str, layer: int, tr, dv, src: str = "pairs", hyper=None, conf_mask=None):
        """Direction for ``method`` fitted on rows ``tr`` of ``src`` (hyper chosen on rows ``dv`` unless given)."""
        base, k = M.method_parts(method)
        X = self.V[src].X(layer)
        y = self.y_s if src == "pairs" else self.y_l
        g = self.g_s if src == "pairs" else self.g_l
        Xtr, Xdv = X[tr], X[dv]
        if k is not None:
            er = self.eraser(layer, k, self.m["c_train"] if conf_mask is None else conf_mask)
            Xtr, Xdv = er.apply(Xtr), er.apply(Xdv)
        d, h = M.fit_method(base, Xtr, y[tr], g[tr], Xdv, y[dv], hyper)
        return d, h


def conf_axis_aurocs(scores, tab: Table, mask) -> dict[str, float]:
    y, ax = tab.arr("labels"), tab.arr("axis")
    return {a: auc(scores[mask & (ax == a)], y[mask & (ax == a)]) for a in AXES}


def candidate_layers(n_layers: int) -> list[int]:
    """Even layers plus the last one (RULE.md amendment: halves the compute on a 2-core machine)."""
    return sorted(set(range(0, n_layers, 2)) | {n_layers - 1})


# ------------------------------------------------------------------------ the rule


def choose_default(cands: list[dict]) -> dict:
    """RULE.md, applied to dev-side fields only (dev_score, conf_in)."""
    lo, hi = CONF_BAND

    def key(c):  # tie-break: fewer parameters, earlier layer, mean before last
        return (M.COMPLEXITY[c["method"]], c["layer"], 0 if c["pooling"] == "mean" else 1)

    eligible = [c for c in cands if all(lo <= c["conf_in"][a] <= hi for a in AXES)]
    if eligible:
        best = max(c["dev_score"] for c in eligible)
        pool = [c for c in eligible if c["dev_score"] >= best - TIE]
        pick, branch = min(pool, key=key), "eligible: max dev_score, ties by fewer parameters"
    else:
        best = max(c["dev_score"] for c in cands)
        pool = [c for c in cands if c["dev_score"] >= best - FALLBACK_MARGIN]
        pick = min(pool, key=lambda c: (round(max(abs(c["conf_in"][a] - 0.5) for a in AXES), 6), key(c)))
        branch = "fallback: none eligible; min max-axis |conf_in - 0.5| within 0.03 of best dev_score"
    return {**{k: pick[k] for k in ("method", "pooling", "layer", "hyper", "dev_short", "dev_long", "dev_score", "conf_in")},
            "rule_branch": branch, "n_eligible": len(eligible)}


# ---------------------------------------------------------------------------- main


def tone_marker_check(d: dict[str, Table]) -> dict:
    """AUROC of each tone-marker category count (tone.py's lists) as a predictor of the label."""
    spec = importlib.util.spec_from_file_location("tone", str(Path(__file__).resolve().parent.parent / "data-v2" / "tone.py"))
    tone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tone)
    out = {}
    for kind in ("pairs", "longform"):
        t = d[kind]
        y = t.arr("labels")
        out[kind] = {cat: auc([tone.count(x, cat) for x in t.texts], y) for cat in tone.MARKERS}
        out[kind]["length_chars"] = auc([len(x) for x in t.texts], y)
    return out


def evaluate_model(model_key: str, poolings=("mean", "last"), methods=M.METHODS, n_boot: int = 1000,
                   log=print, layers=None) -> dict:
    """The whole measurement for one model (``layers`` restricts the layer grid, for smoke tests only)."""
    t0 = time.time()
    d = load_all()
    cache = fill(model_key, [x for t in d.values() for x in t.texts])
    meta = json.loads((cache.dir / "index.json").read_text())["meta"]
    m = masks(d)
    L = cache.tensors["pooled_mean"].shape[1]
    rec: dict = {"schema": "empathy-detect-offline/1", "model_key": model_key, "revision": meta.get("revision"),
                 "layer_convention": "block_output_0based", "n_layers": L,
                 "hidden_size": int(cache.tensors["pooled_mean"].shape[2]), "data_sha256": data_sha256(),
                 "counts": {"short_pairs": {s: int(m[f"s_{s}"].sum() // 2) for s in ("train", "dev", "test")},
                            "short_test_minimal_pairs": int(m["s_test_minimal"].sum() // 2),
                            "short_test_lexical_pairs": int(m["s_test_lexical"].sum() // 2),
                            "longform_pairs": {s: int(m[f"l_{s}"].sum() // 2) for s in ("train", "dev", "test")},
                            "confound_items": {"train_part": int(m["c_train"].sum() // 2),
                                               "heldout_part": int(m["c_held"].sum() // 2)},
                            "graded": len(d["graded"]), "sanity": len(d["sanity"])},
                 "poolings": list(poolings), "methods": list(methods), "rule_file": "RULE.md",
                 "rule_text": (OUT_DIR / "RULE.md").read_text()}
    rec["tone_markers_auroc"] = tone_marker_check(d)
    views = {p: {k: View(t, cache.get(t.texts, p), cache.n_tokens(t.texts)) for k, t in d.items()} for p in poolings}
    ctab = d["confounds"]
    folds = conf_folds(ctab, m["c_train"])

    # ---- 1. dev side
    cands, dirs = [], {}
    for p in poolings:
        F = Fitter(views[p], m)
        for layer in (candidate_layers(L) if layers is None else layers):
            Xs_dv = views[p]["pairs"].X(layer, m["s_dev"])
            Xl_dv = views[p]["longform"].X(layer, m["l_dev"])
            Xc = views[p]["confounds"].X(layer)
            for meth in methods:
                d_, h = F.fit(meth, layer, m["s_train"], m["s_dev"])
                dirs[(meth, p, layer)] = (d_, h)
                dev_short = auc(Xs_dv @ d_, F.y_s[m["s_dev"]])
                dev_long = auc(Xl_dv @ d_, F.y_l[m["l_dev"]])
                if M.method_parts(meth)[1] is None:
                    conf_in = conf_axis_aurocs(Xc @ d_, ctab, m["c_train"])
                else:  # cross-fitted inside the confound train part
                    sc = np.zeros(len(ctab))
                    for f in (0, 1):
                        df, _ = F.fit(meth, layer, m["s_train"], m["s_dev"], conf_mask=folds == 1 - f)
                        sc[folds == f] = Xc[folds == f] @ df
                    conf_in = conf_axis_aurocs(sc, ctab, m["c_train"])
                cands.append({"method": meth, "pooling": p, "layer": layer, "hyper": h, "dev_short": dev_short,
                              "dev_long": dev_long, "dev_score": (dev_short + dev_long) / 2, "conf_in": conf_in})
            log(f"  [{model_key}] {p} layer {layer} done ({time.time() - t0:.0f}s)")

    # ---- 2. choose, before any test number
    rec["candidates_dev"] = cands
    rec["default"] = choose_default(cands)
    study_layer = max((c for c in cands if c["method"] == "mean_diff" and c["pooling"] == "mean"),
                      key=lambda c: (round(c["dev_short"], 6), -c["layer"]))["layer"] if "mean" in poolings else None
    rec["study"] = {"method": "mean_diff", "pooling": "mean", "layer": study_layer,
                    "rule": "highest short-dev AUROC (repo's best_layer rule)"}
    best_per = {}
    for meth in methods:
        for p in poolings:
            cs = [c for c in cands if c["method"] == meth and c["pooling"] == p]
            b = max(cs, key=lambda c: (round(c["dev_score"], 6), -c["layer"]))
            best_per[f"{meth}/{p}"] = {"method": meth, "pooling": p, "layer": b["layer"]}
    (OUT_DIR / f"choice_{model_key}.json").write_text(json.dumps({"default": rec["default"], "study": rec["study"]},
                                                                 indent=1))
    log(f"  default: {rec['default']}")

    # ---- 3. test side, point estimates for every candidate (for per-layer curves)
    per_layer = []
    for c in cands:
        p, layer, meth = c["pooling"], c["layer"], c["method"]
        d_, _ = dirs[(meth, p, layer)]
        V = views[p]
        s = V["pairs"].X(layer) @ d_
        ys = V["pairs"].tab.arr("labels")
        sl = V["longform"].X(layer) @ d_
        yl = V["longform"].tab.arr("labels")
        scf = V["confounds"].X(layer) @ d_
        sg = V["graded"].X(layer) @ d_
        per_layer.append({"method": meth, "pooling": p, "layer": layer,
                          "test_auroc": auc(s[m["s_test"]], ys[m["s_test"]]),
                          "longform_test_auroc": auc(sl[m["l_test"]], yl[m["l_test"]]),
                          "conf_heldout": conf_axis_aurocs(scf, ctab, m["c_held"]),
                          "graded_spearman": float(stats.spearmanr(sg, d["graded"].arr("labels")).statistic)})
    rec["per_layer_test"] = per_layer

    # ---- full reports
    reported = {"default": rec["default"], "study_mean_diff": rec["study"]}
    reported.update({f"best_dev/{k}": v for k, v in best_per.items()})
    rec["reports"] = {}
    for name, cfg in reported.items():
        if cfg.get("layer") is None:
            continue
        rec["reports"][name] = full_report(cfg["method"], cfg["pooling"], cfg["layer"], views, m, d, dirs, n_boot)
        log(f"  report {name} done ({time.time() - t0:.0f}s)")
    rec["reports"]["default"]["sanity"] = sanity_report(rec["default"], views, m, d, dirs)
    rec["reports"]["study_mean_diff"]["sanity"] = sanity_report(rec["study"], views, m, d, dirs)
    rec["baselines"] = baseline_reports(d, m, n_boot)
    rec["seconds"] = round(time.time() - t0, 1)
    return rec


def full_report(meth: str, p: str, layer: int, views, m, d, dirs, n_boot: int) -> dict:
    """Every test-side number for one (method, pooling, layer); its direction comes from ``dirs`` (short train)."""
    V = views[p]
    F = Fitter(V, m)
    d_, h = dirs[(meth, p, layer)]
    ys, gs = V["pairs"].tab.arr("labels"), V["pairs"].tab.arr("groups")
    yl, gl = V["longform"].tab.arr("labels"), V["longform"].tab.arr("groups")
    ctab = d["confounds"]
    s = V["pairs"].X(layer) @ d_
    sl = V["longform"].X(layer) @ d_
    scf = V["confounds"].X(layer) @ d_
    sg = V["graded"].X(layer) @ d_
    te, mi, lx = m["s_test"], m["s_test_minimal"], m["s_test_lexical"]
    thr = metrics.midpoint_threshold(s[m["s_train"]], ys[m["s_train"]])
    r = {"method": meth, "pooling": p, "layer": layer, "hyper": h, "threshold_train_midpoint": thr,
         "dev_auroc": auc(s[m["s_dev"]], ys[m["s_dev"]]),
         "test_auroc": auc(s[te], ys[te]), "test_auroc_ci": pair_bootstrap_ci(s[te], ys[te], gs[te], n_boot),
         "test_accuracy": metrics.accuracy(s[te], ys[te], thr),
         "minimal_test_auroc": auc(s[mi], ys[mi]), "minimal_test_auroc_ci": pair_bootstrap_ci(s[mi], ys[mi], gs[mi], n_boot),
         "lexical_test_auroc": auc(s[lx], ys[lx]), "lexical_test_auroc_ci": pair_bootstrap_ci(s[lx], ys[lx], gs[lx], n_boot),
         "longform_test_auroc_short_fit": auc(sl[m["l_test"]], yl[m["l_test"]]),
         "longform_test_auroc_short_fit_ci": pair_bootstrap_ci(sl[m["l_test"]], yl[m["l_test"]], gl[m["l_test"]], n_boot)}
    conf = {}
    for a in AXES:
        mk = m["c_held"] & (ctab.arr("axis") == a)
        conf[a] = {"auroc": auc(scf[mk], ctab.arr("labels")[mk]),
                   "ci": pair_bootstrap_ci(scf[mk], ctab.arr("labels")[mk], ctab.arr("groups")[mk], n_boot),
                   "n_items": int(mk.sum() // 2)}
    mk = m["c_held"]
    conf["all_axes"] = {"auroc": auc(scf[mk], ctab.arr("labels")[mk]),
                        "ci": pair_bootstrap_ci(scf[mk], ctab.arr("labels")[mk], ctab.arr("groups")[mk], n_boot),
                        "n_items": int(mk.sum() // 2)}
    r["confound_heldout"] = conf
    r["confound_train_part"] = conf_axis_aurocs(scf, ctab, m["c_train"])
    rho, lo, hi = metrics.correlation_ci(sg, d["graded"].arr("labels"), "spearman", n_boot=n_boot)
    r["graded_spearman"], r["graded_spearman_ci"] = rho, [lo, hi]
    # long-form -> short: fit on long-form train (hyper on long-form dev)
    dl, hl = F.fit(meth, layer, m["l_train"], m["l_dev"], src="longform")
    r["short_test_auroc_longform_fit"] = auc(s_l := V["pairs"].X(layer, te) @ dl, ys[te])
    r["short_test_auroc_longform_fit_ci"] = pair_bootstrap_ci(s_l, ys[te], gs[te], n_boot)
    r["longform_test_auroc_longform_fit"] = auc(V["longform"].X(layer, m["l_test"]) @ dl, yl[m["l_test"]])
    # leave one scenario out: fit on 4 scenarios' train (hyper on their dev; eraser on their confound-train items)
    sc_s = V["pairs"].tab.arr("scenarios")
    sc_c = ctab.arr("scenarios")
    loso = {}
    for held in SCENARIO_IDS:
        tr = m["s_train"] & (sc_s != held)
        dv = m["s_dev"] & (sc_s != held)
        tt = te & (sc_s == held)
        if tt.sum() == 0:
            continue
        dd, _ = F.fit(meth, layer, tr, dv, conf_mask=m["c_train"] & (sc_c != held))
        loso[held] = auc(V["pairs"].X(layer, tt) @ dd, ys[tt])
    r["loso_test_auroc"] = loso
    r["loso_test_auroc_mean"] = float(np.mean(list(loso.values())))
    return r


def sanity_report(cfg: dict, views, m, d, dirs) -> dict:
    """Can't-judge gate (fitted on train/dev) and the threshold side of each sanity text."""
    meth, p, layer = cfg["method"], cfg["pooling"], cfg["layer"]
    V = views[p]
    d_, _ = dirs[(meth, p, layer)]
    ys = V["pairs"].tab.arr("labels")
    s_tr = V["pairs"].X(layer, m["s_train"]) @ d_
    thr = metrics.midpoint_threshold(s_tr, ys[m["s_train"]])
    dv_s = V["pairs"].X(layer, m["s_dev"]) @ d_
    a_, b_ = metrics.platt(dv_s, ys[m["s_dev"]])
    Xref = np.concatenate([V["pairs"].X(layer, m["s_train"]), V["longform"].X(layer, m["l_train"])])
    Xdev = np.concatenate([V["pairs"].X(layer, m["s_dev"]), V["longform"].X(layer, m["l_dev"])])
    gate = CantJudge.fit(Xref, V["pairs"].ntok[m["s_train"]], Xdev)
    st = d["sanity"]
    Xs = V["sanity"].X(layer)
    verdict = gate.verdict(Xs, V["sanity"].ntok)
    score = Xs @ d_
    prob = 1 / (1 + np.exp(-(a_ * score + b_)))
    cat, exp_ = st.arr("category"), st.arr("expected")
    out = {"gate": gate.as_dict(), "threshold": thr, "platt_dev": [a_, b_], "per_category": {}}
    for c in dict.fromkeys(cat):
        k = cat == c
        out["per_category"][c] = {"n": int(k.sum()), "cannot_judge": float((verdict[k] != "ok").mean()),
                                  "task_side": float((score[k] < thr).mean()),
                                  "task_side_among_judged": float((score[k & (verdict == "ok")] < thr).mean())
                                  if (k & (verdict == "ok")).any() else None,
                                  "mean_p_empathic": float(prob[k].mean())}
    cj = exp_ == "cannot_judge"
    hostile = np.isin(cat, ["hostile", "dismissive_polite"])
    warm = exp_ == "empathic"
    ok = verdict == "ok"
    out["summary"] = {
        "cannot_judge_items_caught": float((verdict[cj] != "ok").mean()), "n_cannot_judge_items": int(cj.sum()),
        "hostile_dismissive_task_side": float((score[hostile] < thr).mean()), "n_hostile_dismissive": int(hostile.sum()),
        "hostile_dismissive_flagged_cannot_judge": float((~ok[hostile]).mean()),
        "hostile_dismissive_task_side_or_cannot_judge": float(((score[hostile] < thr) | ~ok[hostile]).mean()),
        "warm_empathic_side": float((score[warm] >= thr).mean()), "warm_flagged_cannot_judge": float((~ok[warm]).mean()),
        "off_topic_cannot_judge_or_task": float(((score[exp_ == "cannot_judge_or_task"] < thr)
                                                 | ~ok[exp_ == "cannot_judge_or_task"]).mean()),
    }
    # false alarms of the gate on held-out in-distribution texts
    out["gate_false_alarm"] = {
        "short_test": float((gate.verdict(V["pairs"].X(layer, m["s_test"]), V["pairs"].ntok[m["s_test"]]) != "ok").mean()),
        "longform_test": float((gate.verdict(V["longform"].X(layer, m["l_test"]), V["longform"].ntok[m["l_test"]]) != "ok").mean()),
        "graded": float((gate.verdict(V["graded"].X(layer), V["graded"].ntok) != "ok").mean()),
        "confounds": float((gate.verdict(V["confounds"].X(layer), V["confounds"].ntok) != "ok").mean())}
    out["items"] = [{"id": i, "category": c, "text": t, "verdict": str(v), "score_minus_threshold": float(sc - thr),
                     "p_empathic": float(pr)}
                    for i, c, t, v, sc, pr in zip(st.groups, cat, st.texts, verdict, score, prob)]
    return out


def baseline_reports(d: dict[str, Table], m, n_boot: int) -> dict:
    """TF-IDF and MiniLM baselines on the same splits (model-independent; cached on disk per data hash)."""
    path = OUT_DIR / "cache" / f"baselines_{data_sha256()[:16]}_{n_boot}.json"
    if path.exists():
        return json.loads(path.read_text())
    from .baselines import EmbeddingBaseline, MiniLMEmbedder, TfidfBaseline

    P, LF, C, G, S = d["pairs"], d["longform"], d["confounds"], d["graded"], d["sanity"]
    T = np.asarray(P.texts, dtype=object)
    TL = np.asarray(LF.texts, dtype=object)
    ys, gs, yl, gl = P.arr("labels"), P.arr("groups"), LF.arr("labels"), LF.arr("groups")
    emb = MiniLMEmbedder()
    makers = {"tfidf_logreg": lambda tr_t, tr_y, dv_t, dv_y: TfidfBaseline.fit(tr_t, tr_y, dv_t, dv_y),
              "minilm_logreg": lambda tr_t, tr_y, dv_t, dv_y: EmbeddingBaseline.fit(emb, tr_t, tr_y, dv_t, dv_y)}
    out = {}
    te, mi, lx = m["s_test"], m["s_test_minimal"], m["s_test_lexical"]
    for name, make in makers.items():
        b = make(list(T[m["s_train"]]), ys[m["s_train"]], list(T[m["s_dev"]]), ys[m["s_dev"]])
        s, sl, sc, sg = b.score(P.texts), b.score(LF.texts), b.score(C.texts), b.score(G.texts)
        r = {"C": b.C, "dev_auroc": b.dev_auroc,
             "test_auroc": auc(s[te], ys[te]), "test_auroc_ci": pair_bootstrap_ci(s[te], ys[te], gs[te], n_boot),
             "minimal_test_auroc": auc(s[mi], ys[mi]), "minimal_test_auroc_ci": pair_bootstrap_ci(s[mi], ys[mi], gs[mi], n_boot),
             "lexical_test_auroc": auc(s[lx], ys[lx]), "lexical_test_auroc_ci": pair_bootstrap_ci(s[lx], ys[lx], gs[lx], n_boot),
             "longform_dev_auroc_short_fit": auc(sl[m["l_dev"]], yl[m["l_dev"]]),
             "longform_test_auroc_short_fit": auc(sl[m["l_test"]], yl[m["l_test"]]),
             "longform_test_auroc_short_fit_ci": pair_bootstrap_ci(sl[m["l_test"]], yl[m["l_test"]], gl[m["l_test"]], n_boot)}
        conf = {}
        for a in AXES:
            mk = m["c_held"] & (C.arr("axis") == a)
            conf[a] = {"auroc": auc(sc[mk], C.arr("labels")[mk]),
                       "ci": pair_bootstrap_ci(sc[mk], C.arr("labels")[mk], C.arr("groups")[mk], n_boot)}
        mk = m["c_held"]
        conf["all_axes"] = {"auroc": auc(sc[mk], C.arr("labels")[mk]),
                            "ci": pair_bootstrap_ci(sc[mk], C.arr("labels")[mk], C.arr("groups")[mk], n_boot)}
        r["confound_heldout"] = conf
        r["confound_train_part"] = conf_axis_aurocs(sc, C, m["c_train"])
        rho, lo, hi = metrics.correlation_ci(sg, G.arr("labels"), "spearman", n_boot=n_boot)
        r["graded_spearman"], r["graded_spearman_ci"] = rho, [lo, hi]
        bl = make(list(TL[m["l_train"]]), yl[m["l_train"]], list(TL[m["l_dev"]]), yl[m["l_dev"]])
        s2 = bl.score(list(T[te]))
        r["short_test_auroc_longform_fit"] = auc(s2, ys[te])
        r["short_test_auroc_longform_fit_ci"] = pair_bootstrap_ci(s2, ys[te], gs[te], n_boot)
        sc_s = P.arr("scenarios")
        loso = {}
        for held in SCENARIO_IDS:
            tr, dv, tt = m["s_train"] & (sc_s != held), m["s_dev"] & (sc_s != held), te & (sc_s == held)
            if tt.sum() == 0:
                continue
            bb = make(list(T[tr]), ys[tr], list(T[dv]), ys[dv])
            loso[held] = auc(bb.score(list(T[tt])), ys[tt])
        r["loso_test_auroc"] = loso
        r["loso_test_auroc_mean"] = float(np.mean(list(loso.values())))
        ss = b.score(S.texts)
        cat = S.arr("category")
        hostile = np.isin(cat, ["hostile", "dismissive_polite"])
        r["sanity"] = {"hostile_dismissive_task_side": float((ss[hostile] < 0).mean()),
                       "warm_empathic_side": float((ss[S.arr("expected") == "empathic"] >= 0).mean()),
                       "threshold": "log-odds 0"}
        out[name] = r
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, default=float))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--poolings", nargs="+", default=["mean", "last"])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=list(M.METHODS))
    a = ap.parse_args()
    for key in a.models:
        rec = evaluate_model(key, tuple(a.poolings), tuple(a.methods), a.n_boot, log=lambda *x: print(*x, flush=True))
        (OUT_DIR / f"results_{key}.json").write_text(json.dumps(rec, indent=1, default=float))
        print(f"wrote results_{key}.json in {rec['seconds']}s", flush=True)


if __name__ == "__main__":
    main()
