"""The dev-only default choice (``RULE.md``) and every test-side number of the detection experiment.

Order of work, so that no test number can steer a choice:

1. dev side, for every candidate (method, pooling, layer): fit on short train (hyperparameters on short
   dev), short-dev AUROC, long-form dev AUROC (transfer), per-axis confound AUROC on the confound TRAIN
   part (cross-fitted for erased methods);
2. the default is chosen by :func:`choose_default`;
3. only then: test AUROC (+ pair-bootstrap CI), minimal-pair and lexically controlled test AUROC,
   leave-one-scenario-out, held-back confound AUROC per axis (+ CI), graded Spearman (+ CI), long-form
   transfer both ways, the can't-judge gate and the sanity set; and the text-only baselines on the same splits.

Activations come in as :class:`View` objects (one per kind and pooling); nothing here loads a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ..core import directions as M
from ..core.ood import CantJudge
from . import data_rules, dataset, metrics
from .tables import AXES, Table

RULE_PATH = Path(__file__).resolve().parent / "RULE.md"
RULE_VERSION = "2026-11-27 13:30 UTC + amendment 13:41 UTC + amendment 2, 2026-12-07"
TIE = 0.005
FALLBACK_MARGIN = 0.03
CONF_BAND = (0.40, 0.60)
HOSTILE_MIN = 0.90  # amendment 2: share of the dev hostile set on the task side a candidate needs
HOSTILE = ("hostile", "dismissive_polite")


def rule_text() -> str:
    """The pre-registered default-choice rule, verbatim."""
    return RULE_PATH.read_text()


def rule_sha256() -> str:
    return hashlib.sha256(RULE_PATH.read_bytes()).hexdigest()


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return metrics.auroc(scores, labels)


@dataclass
class View:
    """One kind's activations at one pooling, with the table they belong to."""

    tab: Table
    A: np.ndarray  # (N, L, H) float32
    ntok: np.ndarray  # (N,)

    def X(self, layer: int, mask: np.ndarray | None = None) -> np.ndarray:
        X = self.A[:, layer].astype(np.float64)
        return X if mask is None else X[mask]


Views = dict[str, dict[str, View]]  # pooling -> kind -> view


def masks(d: dict[str, Table]) -> dict[str, np.ndarray]:
    sp, sl, sc = d["pairs"].arr("splits"), d["longform"].arr("splits"), d["confounds"].arr("splits")
    m = {f"s_{s}": sp == s for s in ("train", "dev", "test")}
    m.update({f"l_{s}": sl == s for s in ("train", "dev", "test")})
    m["s_test_minimal"] = m["s_test"] & d["pairs"].arr("minimal")
    m["s_test_lexical"] = m["s_test"] & d["pairs"].arr("lexical")
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


def conf_axis_aurocs(scores: np.ndarray, tab: Table, mask: np.ndarray) -> dict[str, float]:
    y, ax = tab.arr("labels"), tab.arr("axis")
    return {a: auc(scores[mask & (ax == a)], y[mask & (ax == a)]) for a in AXES}


def candidate_layers(n_layers: int) -> list[int]:
    """Even layers plus the last one (RULE.md amendment)."""
    return sorted(set(range(0, n_layers, 2)) | {n_layers - 1})


class Fitter:
    """Fits one candidate's direction at one layer, on erased activations for erased methods."""

    def __init__(self, V: dict[str, View], m: dict[str, np.ndarray]):
        self.V, self.m = V, m
        self.ct = V["confounds"].tab
        self.y_c = self.ct.arr("labels").astype(bool)

    def eraser(self, layer: int, k: int, conf_mask: np.ndarray) -> M.ProjectionEraser:
        Xc = self.V["confounds"].X(layer)
        return M.ProjectionEraser.fit(Xc[conf_mask], self.y_c[conf_mask], self.ct.arr("groups")[conf_mask], k,
                                      axes=self.ct.arr("axis")[conf_mask])

    def fit(self, method: str, layer: int, tr: np.ndarray, dv: np.ndarray, src: str = "pairs",
            hyper: float | None = None, conf_mask: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
        """Direction for ``method`` fitted on rows ``tr`` of ``src`` (hyper chosen on rows ``dv`` unless given)."""
        base, k = M.method_parts(method)
        tab = self.V[src].tab
        X, y, g = self.V[src].X(layer), tab.arr("labels").astype(bool), tab.arr("groups")
        Xtr, Xdv = X[tr], X[dv]
        if k is not None:
            er = self.eraser(layer, k, self.m["c_train"] if conf_mask is None else conf_mask)
            Xtr, Xdv = er.apply(Xtr), er.apply(Xdv)
        return M.fit_method(base, Xtr, y[tr], g[tr], Xdv, y[dv], hyper)


# ------------------------------------------------------------------------------- 1. dev side and the rule


def dev_side(views: Views, m: dict[str, np.ndarray], methods: Sequence[str], layers: Sequence[int],
             log: Callable[[str], None] = lambda _: None) -> tuple[list[dict], dict]:
    """Every candidate's dev-side numbers (no test data, no held-back confound data), and its direction."""
    cands, dirs = [], {}
    for p, V in views.items():
        F = Fitter(V, m)
        ctab = V["confounds"].tab
        folds = conf_folds(ctab, m["c_train"])
        ys, yl = V["pairs"].tab.arr("labels"), V["longform"].tab.arr("labels")
        has_hostile = "hostile_dev" in V and len(V["hostile_dev"].tab) > 0
        for layer in layers:
            Xs_dv, Xl_dv, Xc = V["pairs"].X(layer, m["s_dev"]), V["longform"].X(layer, m["l_dev"]), V["confounds"].X(layer)
            for meth in methods:
                d_, h = F.fit(meth, layer, m["s_train"], m["s_dev"])
                dirs[(meth, p, layer)] = (d_, h)
                dev_short, dev_long = auc(Xs_dv @ d_, ys[m["s_dev"]]), auc(Xl_dv @ d_, yl[m["l_dev"]])
                if M.method_parts(meth)[1] is None:
                    conf_in = conf_axis_aurocs(Xc @ d_, ctab, m["c_train"])
                else:  # cross-fitted inside the confound train part: never an in-sample number
                    sc = np.zeros(len(ctab))
                    for f in (0, 1):
                        df, _ = F.fit(meth, layer, m["s_train"], m["s_dev"], conf_mask=folds == 1 - f)
                        sc[folds == f] = Xc[folds == f] @ df
                    conf_in = conf_axis_aurocs(sc, ctab, m["c_train"])
                cand = {"method": meth, "pooling": p, "layer": layer, "hyper": h, "dev_short": dev_short,
                        "dev_long": dev_long, "dev_score": (dev_short + dev_long) / 2, "conf_in": conf_in}
                if has_hostile:  # amendment 2: share of the dev hostile texts on the task side of the train midpoint
                    thr = metrics.midpoint_threshold(V["pairs"].X(layer, m["s_train"]) @ d_, ys[m["s_train"]])
                    cand["hostile_dev"] = float((V["hostile_dev"].X(layer) @ d_ < thr).mean())
                cands.append(cand)
            log(f"{p} layer {layer}: {len(methods)} candidates")
    return cands, dirs


def choose_default(cands: list[dict]) -> dict:
    """RULE.md, applied to dev-side fields only (dev_score, conf_in and, under amendment 2, hostile_dev)."""
    lo, hi = CONF_BAND

    def key(c: dict) -> tuple:  # tie-break: fewer parameters, earlier layer, mean before last
        return (M.COMPLEXITY[c["method"]], c["layer"], 0 if c["pooling"] == "mean" else 1)

    tone_ok = [c for c in cands if all(lo <= c["conf_in"][a] <= hi for a in AXES)]
    hostile = bool(cands) and all("hostile_dev" in c for c in cands)  # amendment 2 applies when the dev set exists
    eligible = [c for c in tone_ok if c["hostile_dev"] >= HOSTILE_MIN] if hostile else tone_ok
    if eligible:
        best = max(c["dev_score"] for c in eligible)
        pool = [c for c in eligible if c["dev_score"] >= best - TIE]
        pick, branch = min(pool, key=key), "eligible: max dev_score, ties by fewer parameters"
    elif hostile and tone_ok:
        best = max(c["dev_score"] for c in tone_ok)
        pool = [c for c in tone_ok if c["dev_score"] >= best - FALLBACK_MARGIN]
        top = max(c["hostile_dev"] for c in pool)
        pool = [c for c in pool if c["hostile_dev"] == top]
        best = max(c["dev_score"] for c in pool)
        pick = min((c for c in pool if c["dev_score"] >= best - TIE), key=key)
        branch = (f"fallback (amendment 2): none tone-eligible with hostile_dev >= {HOSTILE_MIN}; the highest hostile_dev "
                  "among tone-eligible candidates within 0.03 of their best dev_score")
    else:
        best = max(c["dev_score"] for c in cands)
        pool = [c for c in cands if c["dev_score"] >= best - FALLBACK_MARGIN]
        pick = min(pool, key=lambda c: (round(max(abs(c["conf_in"][a] - 0.5) for a in AXES), 6), key(c)))
        branch = "fallback: none eligible; min max-axis |conf_in - 0.5| within 0.03 of best dev_score"
    keys = ("method", "pooling", "layer", "hyper", "dev_short", "dev_long", "dev_score", "conf_in") + (("hostile_dev",) if hostile else ())
    return {**{k: pick[k] for k in keys}, "rule_branch": branch, "n_eligible": len(eligible), "n_candidates": len(cands),
            **({"n_tone_eligible": len(tone_ok)} if hostile else {})}


def study_choice(cands: list[dict]) -> dict:
    """The study's method beside the default: mean_diff, mean pooling, at the highest short-dev AUROC."""
    md = [c for c in cands if c["method"] == "mean_diff" and c["pooling"] == "mean"]
    layer = max(md, key=lambda c: (round(c["dev_short"], 6), -c["layer"]))["layer"]
    return {"method": "mean_diff", "pooling": "mean", "layer": layer, "hyper": None,
            "rule": "highest short-dev AUROC (the repo's best_layer rule)"}


# ------------------------------------------------------------------------------- 3. test side


def _ci(s: np.ndarray, y: np.ndarray, g: np.ndarray, n_boot: int) -> list[float]:
    return metrics.pair_bootstrap_ci(s, y, g, n_boot)


def confound_heldout(scf: np.ndarray, ctab: Table, m: dict[str, np.ndarray], n_boot: int) -> dict:
    """Per-axis (and all-axes) AUROC of high vs low on the held-back confound part, with pair-bootstrap CIs."""
    y, g, ax = ctab.arr("labels"), ctab.arr("groups"), ctab.arr("axis")
    out = {}
    for a in (*AXES, "all_axes"):
        mk = m["c_held"] & ((ax == a) if a != "all_axes" else True)
        out[a] = {"auroc": auc(scf[mk], y[mk]), "ci": _ci(scf[mk], y[mk], g[mk], n_boot), "n_items": int(mk.sum() // 2)}
    return out


def full_report(cfg: dict, views: Views, m: dict[str, np.ndarray], d_: np.ndarray, n_boot: int) -> dict:
    """Every test-side number for one (method, pooling, layer) whose short-train direction is ``d_``."""
    meth, p, layer = cfg["method"], cfg["pooling"], cfg["layer"]
    V = views[p]
    ys, gs = V["pairs"].tab.arr("labels"), V["pairs"].tab.arr("groups")
    yl, gl = V["longform"].tab.arr("labels"), V["longform"].tab.arr("groups")
    s, sl = V["pairs"].X(layer) @ d_, V["longform"].X(layer) @ d_
    te, mi, lx, lt = m["s_test"], m["s_test_minimal"], m["s_test_lexical"], m["l_test"]
    thr = metrics.midpoint_threshold(s[m["s_train"]], ys[m["s_train"]])
    r = {"method": meth, "pooling": p, "layer": layer, "hyper": cfg.get("hyper"), "threshold_train_midpoint": thr,
         "dev_auroc": auc(s[m["s_dev"]], ys[m["s_dev"]]),
         "test_auroc": auc(s[te], ys[te]), "test_auroc_ci": _ci(s[te], ys[te], gs[te], n_boot),
         "test_accuracy": metrics.accuracy(s[te], ys[te], thr),
         "minimal_test_auroc": auc(s[mi], ys[mi]), "minimal_test_auroc_ci": _ci(s[mi], ys[mi], gs[mi], n_boot),
         "lexical_test_auroc": auc(s[lx], ys[lx]), "lexical_test_auroc_ci": _ci(s[lx], ys[lx], gs[lx], n_boot),
         "longform_test_auroc_short_fit": auc(sl[lt], yl[lt]),
         "longform_test_auroc_short_fit_ci": _ci(sl[lt], yl[lt], gl[lt], n_boot)}
    scf = V["confounds"].X(layer) @ d_
    r["confound_heldout"] = confound_heldout(scf, V["confounds"].tab, m, n_boot)
    r["confound_train_part"] = conf_axis_aurocs(scf, V["confounds"].tab, m["c_train"])
    rho, lo, hi = metrics.correlation_ci(V["graded"].X(layer) @ d_, V["graded"].tab.arr("labels"), "spearman", n_boot=n_boot)
    r["graded_spearman"], r["graded_spearman_ci"] = rho, [lo, hi]
    F = Fitter(V, m)
    dl, _ = F.fit(meth, layer, m["l_train"], m["l_dev"], src="longform")  # long-form -> short
    s_l = V["pairs"].X(layer, te) @ dl
    r["short_test_auroc_longform_fit"] = auc(s_l, ys[te])
    r["short_test_auroc_longform_fit_ci"] = _ci(s_l, ys[te], gs[te], n_boot)
    r["longform_test_auroc_longform_fit"] = auc(V["longform"].X(layer, lt) @ dl, yl[lt])
    r["loso_test_auroc"] = loso(F, meth, layer, m)
    r["loso_test_auroc_mean"] = float(np.mean(list(r["loso_test_auroc"].values())))
    return r


def loso(F: Fitter, meth: str, layer: int, m: dict[str, np.ndarray]) -> dict[str, float]:
    """Fit on 4 scenarios' short train (hyper on their dev; eraser on their confound-train items), AUROC on
    the 5th scenario's short test pairs."""
    ptab = F.V["pairs"].tab
    sc_s, ys, sc_c = ptab.arr("scenarios"), ptab.arr("labels"), F.ct.arr("scenarios")
    out = {}
    for held in dataset.SCENARIO_IDS:
        tr, dv, tt = m["s_train"] & (sc_s != held), m["s_dev"] & (sc_s != held), m["s_test"] & (sc_s == held)
        if tt.sum() == 0:
            continue
        dd, _ = F.fit(meth, layer, tr, dv, conf_mask=m["c_train"] & (sc_c != held))
        out[held] = auc(F.V["pairs"].X(layer, tt) @ dd, ys[tt])
    return out


def fit_gate(V: dict[str, View], m: dict[str, np.ndarray], layer: int) -> CantJudge:
    """The can't-judge gate of RULE.md at one layer and pooling (short + long-form train; short + long-form dev)."""
    Xref = np.concatenate([V["pairs"].X(layer, m["s_train"]), V["longform"].X(layer, m["l_train"])])
    Xdev = np.concatenate([V["pairs"].X(layer, m["s_dev"]), V["longform"].X(layer, m["l_dev"])])
    return CantJudge.fit(Xref, V["pairs"].ntok[m["s_train"]], Xdev)


def sanity_summary(score: np.ndarray, thr: float, verdict: np.ndarray, tab: Table) -> dict:
    """The sanity set's floors: what the gate catches, which side of the threshold each group lands on."""
    cat, exp_ = tab.arr("category"), tab.arr("expected")
    ok = verdict == "ok"
    cj, hostile, warm, off = exp_ == "cannot_judge", np.isin(cat, HOSTILE), exp_ == "empathic", exp_ == "cannot_judge_or_task"
    return {
        "cannot_judge_items_caught": float((~ok[cj]).mean()), "n_cannot_judge_items": int(cj.sum()),
        "hostile_dismissive_task_side": float((score[hostile] < thr).mean()), "n_hostile_dismissive": int(hostile.sum()),
        "hostile_dismissive_flagged_cannot_judge": float((~ok[hostile]).mean()),
        "hostile_dismissive_task_side_or_cannot_judge": float(((score[hostile] < thr) | ~ok[hostile]).mean()),
        "warm_empathic_side": float((score[warm] >= thr).mean()), "n_warm": int(warm.sum()),
        "warm_flagged_cannot_judge": float((~ok[warm]).mean()),
        "off_topic_cannot_judge_or_task": float(((score[off] < thr) | ~ok[off]).mean()), "n_off_topic": int(off.sum()),
    }


def sanity_report(cfg: dict, views: Views, m: dict[str, np.ndarray], d_: np.ndarray, gate: CantJudge) -> dict:
    """The gate and the threshold side of each sanity text; the gate's false alarms on held-out texts."""
    V, layer = views[cfg["pooling"]], cfg["layer"]
    ys = V["pairs"].tab.arr("labels")
    thr = metrics.midpoint_threshold(V["pairs"].X(layer, m["s_train"]) @ d_, ys[m["s_train"]])
    a_, b_ = metrics.platt(V["pairs"].X(layer, m["s_dev"]) @ d_, ys[m["s_dev"]])
    st = V["sanity"].tab
    Xs = V["sanity"].X(layer)
    verdict, score = gate.verdict(Xs, V["sanity"].ntok), Xs @ d_
    prob = 1 / (1 + np.exp(-(a_ * score + b_)))
    cat = st.arr("category")
    out: dict = {"threshold": thr, "platt_dev": [a_, b_], "per_category": {}}
    for c in dict.fromkeys(cat.tolist()):
        k = cat == c
        judged = k & (verdict == "ok")
        out["per_category"][c] = {"n": int(k.sum()), "cannot_judge": float((verdict[k] != "ok").mean()),
                                  "task_side": float((score[k] < thr).mean()),
                                  "task_side_among_judged": float((score[judged] < thr).mean()) if judged.any() else None,
                                  "mean_p_empathic": float(prob[k].mean())}
    out["summary"] = sanity_summary(score, thr, verdict, st)

    def false_rate(kind: str, mask: np.ndarray | None = None) -> float:
        return float((gate.verdict(V[kind].X(layer, mask), V[kind].ntok if mask is None else V[kind].ntok[mask]) != "ok").mean())

    out["gate_false_cannot_judge"] = {"short_test": false_rate("pairs", m["s_test"]),
                                      "longform_test": false_rate("longform", m["l_test"]),
                                      "graded": false_rate("graded"), "confounds": false_rate("confounds")}
    out["items"] = [{"id": i, "category": c, "text": t, "verdict": str(v), "score_minus_threshold": float(sc - thr),
                     "p_empathic": float(pr)}
                    for i, c, t, v, sc, pr in zip(st.groups, cat, st.texts, verdict, score, prob)]
    return out


def per_layer_curve(method: str, pooling: str, views: Views, m: dict[str, np.ndarray], n_layers: int,
                    n_boot: int) -> tuple[list[dict], np.ndarray, list[float | None]]:
    """One method at every layer (short train; hyper on short dev): the chart's curve and the directions."""
    V = views[pooling]
    F = Fitter(V, m)
    ys, gs = V["pairs"].tab.arr("labels"), V["pairs"].tab.arr("groups")
    yl = V["longform"].tab.arr("labels")
    rows, dirs, hypers = [], [], []
    for layer in range(n_layers):
        d_, h = F.fit(method, layer, m["s_train"], m["s_dev"])
        s, sl = V["pairs"].X(layer) @ d_, V["longform"].X(layer) @ d_
        scf = V["confounds"].X(layer) @ d_
        te = m["s_test"]
        rows.append({"layer": layer, "relative_depth": (layer + 1) / n_layers, "hyper": h,
                     "auroc_dev": auc(s[m["s_dev"]], ys[m["s_dev"]]), "auroc_test": auc(s[te], ys[te]),
                     "auroc_test_ci": _ci(s[te], ys[te], gs[te], n_boot),
                     "longform_test_auroc": auc(sl[m["l_test"]], yl[m["l_test"]]),
                     "confound_heldout": conf_axis_aurocs(scf, V["confounds"].tab, m["c_held"]),
                     "graded_spearman": float(stats.spearmanr(V["graded"].X(layer) @ d_, V["graded"].tab.arr("labels")).statistic)})
        dirs.append(d_)
        hypers.append(h)
    return rows, np.stack(dirs), hypers


def tone_marker_check(d: dict[str, Table]) -> dict:
    """AUROC of each tone-marker category count (``data_rules.MARKERS``) and of length as a label predictor."""
    out = {}
    for kind in ("pairs", "longform"):
        t = d[kind]
        y = t.arr("labels")
        out[kind] = {cat: auc(np.array([data_rules.marker_count(x, cat) for x in t.texts]), y) for cat in data_rules.MARKERS}
        out[kind]["length_chars"] = auc(np.array([len(x) for x in t.texts]), y)
    return out
