"""The steering pipeline checked against the blind labels: gates, empathy judgment, success call.

    python -m empathy_core validate-judges          # writes precomputed/judge_validation.json

Everything is fitted on the labels' ``train`` part only (thresholds of the gates, thresholds of
the empathy judgment); the ``test`` part is read once, at the end, to report precision and recall
(``validate``). ``tests/test_validation_real.py`` recomputes the committed file.

The empathy judgment is the existing MiniLM embedding judge (``judges.EmbeddingJudge``: logistic
regression on the contrastive pairs' train split); only its two cut-offs are fitted here. The
*call* on one reply:

    empathic call   passes every gate and the judge's score >= ``t_empathic``
    task call       passes every gate and the judge's score <= ``t_task``

The sweep's success call (``sweep``) is an empathic call on the steered reply where the same
(scenario, seed) baseline got a task call (the reverse for alpha < 0), and the judge moved beyond
the seed-noise band.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import gates
from .gates import GateThresholds
from .labels import LabelledReply, load_labels

GOOD = ("empathic_choice", "task_choice", "unclear")  # coherent, on topic, not echo


@dataclass
class Row:
    """One labelled reply with every score the pipeline needs."""

    item: LabelledReply
    features: dict[str, float]
    perplexity: float
    topic: float
    empathy: float  # the embedding judge's log-odds of "empathic"


def compute_rows(items: Sequence[LabelledReply], load: Callable[[str], Any] | None = None,
                 embedder: gates.MiniLM | None = None, judge: Any = None) -> list[Row]:
    """Score every labelled reply: text features, reference perplexity, topic similarity, empathy judge."""
    from .judges import EmbeddingJudge

    if load is None:
        from ..core.models import load_model

        load = load_model
    emb = embedder or gates.MiniLM()
    judge = judge or EmbeddingJudge()
    replies, scens = [x.reply for x in items], [x.scenario for x in items]
    ppl = [float("inf")] * len(items)
    for ref in sorted({gates.reference_model(x.model) for x in items}):
        idx = [i for i, x in enumerate(items) if gates.reference_model(x.model) == ref]
        handle = load(ref)
        for i, p in zip(idx, gates.reference_perplexities(handle, [replies[i] for i in idx], [scens[i] for i in idx])):
            ppl[i] = p
    topic = emb.topic_similarity(replies, scens)
    emp = judge.score(replies)
    return [Row(x, gates.text_features(x.reply, x.scenario), ppl[i], float(topic[i]), float(emp[i]))
            for i, x in enumerate(items)]


def _best_cut(values: np.ndarray, bad: np.ndarray, upper: bool = True) -> float:
    """The cut-off that best separates ``bad`` rows (Youden's J): flag ``values > cut`` if ``upper``, else ``< cut``."""
    v = values[np.isfinite(values)]
    if not bad.any() or bad.all() or v.size == 0:
        return float(np.max(v)) if upper and v.size else (float(np.min(v)) if v.size else 0.0)
    best, best_j = 0.0, -2.0
    cands = np.unique(v)
    for c in cands:
        flag = values > c if upper else values < c
        j = flag[bad].mean() - flag[~bad].mean()
        if j > best_j + 1e-12:
            best, best_j = float(c), float(j)
    return best


def fit_thresholds(train: Sequence[Row]) -> GateThresholds:
    """Fit every gate's thresholds on train rows only (each gate on the labels it is meant to catch).

    Repetition and perplexity cut-offs separate ``incoherent`` from the rest; the echo cut-offs
    separate ``echo_or_meta`` from the coherent, readable rest; the topicality cut-off is the 5th
    percentile of the similarity of the train baselines (alpha = 0) labelled as on-topic choices.
    """
    lab = np.array([r.item.label for r in train])
    f = {k: np.array([r.features[k] for r in train]) for k in train[0].features}
    incoh = lab == "incoherent"
    readable = ~incoh
    echo = lab[readable] == "echo_or_meta"
    log_ppl = np.array([np.log(r.perplexity) if np.isfinite(r.perplexity) else np.inf for r in train])
    base_topic = [r.topic for r in train if r.item.condition == "probe" and r.item.alpha == 0 and r.item.label in GOOD]
    return GateThresholds(
        max_echo_overlap=_best_cut(f["echo_overlap"][readable], echo),
        max_second_person_share=_best_cut(f["second_person_share"][readable], echo),
        max_repetition=_best_cut(f["repetition"], incoh),
        min_distinct2=_best_cut(f["distinct2"], incoh, upper=False),
        max_junk_share=_best_cut(f["junk_share"], incoh),
        max_log_perplexity=_best_cut(np.where(np.isfinite(log_ppl), log_ppl, 1e9), incoh),
        min_topic_similarity=float(np.percentile(base_topic, 5)) if base_topic else 0.0)


def verdicts_of(rows: Sequence[Row], t: GateThresholds) -> list[gates.GateVerdicts]:
    return [gates.verdicts(r.features, r.perplexity, r.topic, t) for r in rows]


def fit_call(train: Sequence[Row], t: GateThresholds, beta: float = 0.5) -> dict[str, float]:
    """The empathy judge's two cut-offs, each maximising F-beta (beta 0.5 weighs precision) on the train rows
    that pass every gate; with no labelled positive passing the gates the cut-off is the largest (smallest) score."""
    v = verdicts_of(train, t)
    rows = [r for r, g in zip(train, v) if g.passes]
    s = np.array([r.empathy for r in rows])
    lab = np.array([r.item.label for r in rows])
    out = {}
    for name, target, upper in (("t_empathic", "empathic_choice", True), ("t_task", "task_choice", False)):
        pos = lab == target
        best, best_f = (float(s.max()) + 1e-6 if upper else float(s.min()) - 1e-6) if s.size else 0.0, -1.0
        for c in np.unique(s):
            pred = s >= c if upper else s <= c
            tp = float((pred & pos).sum())
            if tp == 0:
                continue
            p, rc = tp / pred.sum(), tp / pos.sum()
            fb = (1 + beta**2) * p * rc / (beta**2 * p + rc)
            if fb > best_f + 1e-12:
                best, best_f = float(c), fb
        out[name] = best
    return out


def calls(rows: Sequence[Row], t: GateThresholds, cut: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(empathic call, task call) per row."""
    v = verdicts_of(rows, t)
    ok = np.array([g.passes for g in v], dtype=bool)
    s = np.array([r.empathy for r in rows])
    return ok & (s >= cut["t_empathic"]), ok & (s <= cut["t_task"])


def _pr(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    tp = int((pred & truth).sum())
    return {"n": int(pred.size), "predicted": int(pred.sum()), "actual": int(truth.sum()), "true_positives": tp,
            "precision": tp / int(pred.sum()) if pred.sum() else None,
            "recall": tp / int(truth.sum()) if truth.sum() else None}


def gate_table(rows: Sequence[Row], t: GateThresholds, cut: dict[str, float]) -> dict[str, dict]:
    """Precision and recall of each gate (as a detector of the label it is meant to catch), of passing every
    gate (as a detector of a readable, on-topic reply), and of the two calls."""
    v = verdicts_of(rows, t)
    lab = np.array([r.item.label for r in rows])
    flag = {"repetition": np.array([not g.not_repetitive for g in v]), "perplexity": np.array([not g.fluent for g in v]),
            "echo_meta": np.array([not g.not_echo for g in v]), "topicality": np.array([not g.on_topic for g in v])}
    emp, task = calls(rows, t, cut)
    bad = ~np.isin(lab, GOOD)
    # a flag can also be right for another failure (an echo that is also incoherent)
    any_failure = {k: _pr(f, bad)["precision"] for k, f in flag.items()}
    return {
        "repetition": {"flags": "incoherent", **_pr(flag["repetition"], lab == "incoherent")},
        "perplexity": {"flags": "incoherent", **_pr(flag["perplexity"], lab == "incoherent")},
        "coherence": {"flags": "incoherent", **_pr(flag["repetition"] | flag["perplexity"], lab == "incoherent")},
        "echo_meta": {"flags": "echo_or_meta", **_pr(flag["echo_meta"], lab == "echo_or_meta")},
        "topicality": {"flags": "off_topic", **_pr(flag["topicality"], lab == "off_topic")},
        "flag_precision_any_failure": any_failure,
        "all_gates_pass": {"flags": "readable choice (empathic, task or unclear)",
                           **_pr(np.array([g.passes for g in v]), np.isin(lab, GOOD))},
        "empathic_call": {"flags": "empathic_choice", **_pr(emp, lab == "empathic_choice")},
        "task_call": {"flags": "task_choice", **_pr(task, lab == "task_choice")},
    }


def pair_calls(rows: Sequence[Row], t: GateThresholds, cut: dict[str, float]) -> dict[str, dict]:
    """The success call itself on labelled (steered, baseline) pairs: same model, scenario, layer and seed,
    both labelled (only batch 2 was drawn by cell). Truth: the labels say empathic after task (alpha > 0),
    task after empathic (alpha < 0)."""
    emp, task = calls(rows, t, cut)
    base = {(r.item.model, r.item.scenario, r.item.layer, r.item.seed): i for i, r in enumerate(rows)
            if r.item.condition == "probe" and r.item.alpha == 0}
    out = {}
    for sign, name in ((1, "alpha_pos"), (-1, "alpha_neg")):
        pred, truth = [], []
        for i, r in enumerate(rows):
            b = base.get((r.item.model, r.item.scenario, r.item.layer, r.item.seed))
            if b is None or r.item.condition != "probe" or np.sign(r.item.alpha) != sign:
                continue
            want, before = ("empathic_choice", "task_choice") if sign > 0 else ("task_choice", "empathic_choice")
            call_now, call_before = (emp, task) if sign > 0 else (task, emp)
            pred.append(bool(call_now[i] and call_before[b]))
            truth.append(rows[i].item.label == want and rows[b].item.label == before)
        out[name] = _pr(np.array(pred, dtype=bool), np.array(truth, dtype=bool))
    return out


def validate(rows: Sequence[Row]) -> dict[str, Any]:
    """Fit on the train rows, report on the test rows (overall and per model)."""
    train = [r for r in rows if r.item.split == "train"]
    test = [r for r in rows if r.item.split == "test"]
    t = fit_thresholds(train)
    cut = fit_call(train, t)
    models = sorted({r.item.model for r in rows})
    report: dict[str, Any] = {
        "thresholds": t.to_dict(), "cutoffs": cut,
        "n": {"train": len(train), "test": len(test)},
        "test": gate_table(test, t, cut),
        "test_by_model": {m: gate_table([r for r in test if r.item.model == m], t, cut) for m in models},
        "test_pairs": pair_calls(test, t, cut),
        "train": gate_table(train, t, cut),
    }
    p = report["test"]["empathic_call"]["precision"]
    report["goal"] = {"rule": "precision of the empathic call >= 0.80 on the held-out test part",
                      "precision": p, "met": bool(p is not None and p >= 0.8)}
    return report


def run(out: Path | None = None, load: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Score the labels, fit on train, validate on test, write ``judge_validation.json``; returns the report."""
    from .. import store
    from .dataset import file_sha256
    from .labels import LABELS_PATH, label_rates
    from .precompute import write_manifest

    rows = compute_rows(load_labels(), load=load)
    report = {"schema": "empathy-judge-validation/1",
              "label_rates": label_rates(load_labels()),
              "labels": {"file": "empathy_core/data/labels/generations.jsonl", "sha256": file_sha256(LABELS_PATH)},
              "reference_models": gates.REFERENCE_MODEL,
              "empathy_judge": "embedding: all-MiniLM-L6-v2 + logistic regression on the contrastive pairs' train split "
                               "(judges.EmbeddingJudge); its cut-offs fitted on the label train part (F0.5)",
              "fitted_on": "label train part only; the test part is read only for this report",
              **validate(rows)}
    root = store.PRECOMPUTED if out is None else out.parent
    path = out or root / "judge_validation.json"
    store.write_json(path, report)
    if out is None:
        write_manifest(root)
    return report


def load_validation(root: Path | None = None) -> dict | None:
    """The committed validation report, or None before it exists."""
    from .. import store

    return store.load_shared("judge_validation.json", root)
