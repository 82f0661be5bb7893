"""The steering pipeline checked against the blind labels: gates, empathy judgment, success call.

    python -m empathy_core validate-judges          # writes precomputed/judge_validation.json

Everything is fitted on the labels' ``train`` part only (thresholds of the gates, thresholds of
the empathy judgment); the ``test`` part is read once, at the end, to report precision and recall
(``validate``). ``tests/test_validation_real.py`` recomputes the committed file.

The empathy judgment is the label judge (``judges.LabelJudge``: logistic regression on MiniLM
embeddings, trained on the label train part's readable choices and the graded set); its two
cut-offs are fitted here on its out-of-fold train scores. The contrastive-pair judge
(``judges.EmbeddingJudge``) is scored beside it for comparison (``judge_auroc``). The gate rule is
chosen inside the train part (``choose_gate_rule``). The *call* on one reply:

    empathic call   passes every gate and the judge's score >= ``t_empathic``
    task call       passes every gate and the judge's score <= ``t_task``

The sweep's success call (``sweep``) is an empathic call on the steered reply where the same
(scenario, seed) baseline got a task call (the reverse for alpha < 0), and the judge moved beyond
the seed-noise band. It is checked on labelled (steered, baseline) pairs (``pair_calls``) and, since it
never fired there, on fresh (baseline, reply told to help) pairs, where it can (``prompted_pairs``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import gates
from .gates import GateThresholds
from .labels import FRESH_BATCHES, LabelledReply, load_labels, load_pushes

GOOD = ("empathic_choice", "task_choice", "unclear")  # coherent, on topic, not echo


@dataclass
class Row:
    """One labelled reply with every score the pipeline needs."""

    item: LabelledReply
    features: dict[str, float]
    perplexity: float
    topic: float
    empathy: float  # the label judge's log-odds of "empathic" (out of fold for the items it was trained on)
    empathy_pairs: float = float("nan")  # the contrastive-pair judge's, for comparison


def compute_rows(items: Sequence[LabelledReply], load: Callable[[str], Any] | None = None,
                 embedder: gates.MiniLM | None = None, judge: Any = None, pairs_judge: Any = None) -> list[Row]:
    """Score every labelled reply: text features, reference perplexity, topic similarity, the empathy judgments.

    ``judge`` (default: ``LabelJudge`` on ``items``) gives the call's empathy score; a train item that the judge
    was fitted on gets its out-of-fold score. ``pairs_judge`` (default: the contrastive-pair ``EmbeddingJudge``)
    is scored beside it for comparison."""
    from .judges import EmbeddingJudge, LabelJudge

    if load is None:
        from ..core.models import load_model

        load = load_model
    emb = embedder or gates.MiniLM()
    judge = judge or LabelJudge(items)
    pairs_judge = pairs_judge or EmbeddingJudge()
    replies, scens = [x.reply for x in items], [x.scenario for x in items]
    ppl = [float("inf")] * len(items)
    for ref in sorted({gates.reference_model(x.model) for x in items}):
        idx = [i for i, x in enumerate(items) if gates.reference_model(x.model) == ref]
        handle = load(ref)
        for i, p in zip(idx, gates.reference_perplexities(handle, [replies[i] for i in idx], [scens[i] for i in idx])):
            ppl[i] = p
    topic = emb.topic_similarity(replies, scens)
    oof = judge.out_of_fold() if hasattr(judge, "out_of_fold") else {}
    emp = judge.score(replies)
    pairs = pairs_judge.score(replies)
    return [Row(x, gates.text_features(x.reply, x.scenario), ppl[i], float(topic[i]), float(oof.get(x.id, emp[i])),
                float(pairs[i])) for i, x in enumerate(items)]


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


GATE_RULES = ("joint_f1", "youden")
GATE_RULE = "joint_f1"  # what ``fit_thresholds`` uses when not told; ``validate`` uses ``choose_gate_rule``


def _f1(flag: np.ndarray, target: np.ndarray) -> float:
    tp = float((flag & target).sum())
    return 0.0 if tp == 0 else 2 * tp / (float(flag.sum()) + float(target.sum()))


def _joint_cuts(cols: dict[str, tuple[np.ndarray, bool]], always: np.ndarray, target: np.ndarray,
                rounds: int = 6) -> dict[str, float]:
    """One gate's cut-offs fitted together: the gate flags a row when ``always`` or any column passes its cut
    (``value > cut`` for an upper cut, ``< cut`` for a lower one). Coordinate ascent, from no cut at all, on the F1
    of the combined flag for ``target``; each step tries every observed value of one column (and "no cut")."""
    off = {k: (np.inf if up else -np.inf) for k, (_, up) in cols.items()}

    def flag(cut: dict[str, float]) -> np.ndarray:
        out = always.copy()
        for k, (v, up) in cols.items():
            out |= (v > cut[k]) if up else (v < cut[k])
        return out

    cut, best = dict(off), _f1(flag(off), target)
    for _ in range(rounds):
        changed = False
        for k, (v, _) in cols.items():
            for c in (*np.unique(v[np.isfinite(v)]), off[k]):
                trial = {**cut, k: float(c)}
                score = _f1(flag(trial), target)
                if score > best + 1e-12:
                    cut, best, changed = trial, score, True
        if not changed:
            break
    return cut


def fit_thresholds(train: Sequence[Row], rule: str = GATE_RULE) -> GateThresholds:
    """Fit every gate's thresholds on train rows only, each gate on the labels it is meant to catch.

    The coherence gate (repetition, distinct-2, junk share, reference perplexity) catches ``incoherent``; the
    echo/meta gate (prompt overlap, second-person share) catches ``echo_or_meta`` among readable rows; the
    topicality gate catches ``off_topic`` among readable, non-echo rows.

    ``rule="joint_f1"`` (the default) fits each gate's cut-offs together for the F1 of the gate's combined flag
    (``_joint_cuts``). ``rule="youden"`` is the first version: each feature alone by Youden's J, and the topicality
    cut at the 5th percentile of the train baselines labelled as on-topic choices. With few positives Youden's J
    flags far too much, and the flags of a gate add up; ``cross_validate_rules`` compares the two inside train.
    """
    if rule not in GATE_RULES:
        raise ValueError(f"unknown gate rule {rule!r}; one of {GATE_RULES}")
    lab = np.array([r.item.label for r in train])
    f = {k: np.array([r.features[k] for r in train]) for k in train[0].features}
    incoh = lab == "incoherent"
    readable = ~incoh
    echo = lab[readable] == "echo_or_meta"
    log_ppl = np.array([np.log(r.perplexity) if np.isfinite(r.perplexity) else np.inf for r in train])
    log_ppl = np.where(np.isfinite(log_ppl), log_ppl, 1e9)
    topic = np.array([r.topic for r in train])
    if rule == "joint_f1":
        clean = ~np.isin(lab, ("incoherent", "echo_or_meta"))
        cuts = {
            **_joint_cuts({"max_repetition": (f["repetition"], True), "min_distinct2": (f["distinct2"], False),
                           "max_junk_share": (f["junk_share"], True), "max_log_perplexity": (log_ppl, True)},
                          (f["n_words"] < GateThresholds.min_words) | (f["fused_words"] > 0), incoh),
            **_joint_cuts({"max_echo_overlap": (f["echo_overlap"][readable], True),
                           "max_second_person_share": (f["second_person_share"][readable], True)},
                          ((f["meta_phrases"] > 0) | (f["opens_with_you"] > 0))[readable], echo),
            **_joint_cuts({"min_topic_similarity": (topic[clean], False)}, np.zeros(int(clean.sum()), bool),
                          lab[clean] == "off_topic"),
        }
        return GateThresholds.from_dict({k: float(min(max(v, -1e9), 1e9)) for k, v in cuts.items()})
    base_topic = [r.topic for r in train if r.item.condition == "probe" and r.item.alpha == 0 and r.item.label in GOOD]
    return GateThresholds(
        max_echo_overlap=_best_cut(f["echo_overlap"][readable], echo),
        max_second_person_share=_best_cut(f["second_person_share"][readable], echo),
        max_repetition=_best_cut(f["repetition"], incoh),
        min_distinct2=_best_cut(f["distinct2"], incoh, upper=False),
        max_junk_share=_best_cut(f["junk_share"], incoh),
        max_log_perplexity=_best_cut(log_ppl, incoh),
        min_topic_similarity=float(np.percentile(base_topic, 5)) if base_topic else 0.0)


def cross_validate_rules(train: Sequence[Row], folds: int = 5, seed: int = 0) -> dict[str, dict]:
    """Each gate rule fitted on 4/5 of the train rows and read on the other fifth, pooled over the folds: precision
    and recall of passing every gate (a readable choice) and of the two calls. Only train rows are used, so this
    can choose the rule without touching the test part."""
    order = np.random.default_rng(seed).permutation(len(train))
    parts = np.array_split(order, folds)
    out: dict[str, dict] = {}
    for rule in GATE_RULES:
        pas, good, emp, tsk = [], [], [], []
        for k in range(folds):
            held = set(parts[k].tolist())
            fit = [train[i] for i in range(len(train)) if i not in held]
            ev = [train[i] for i in parts[k]]
            t = fit_thresholds(fit, rule)
            e, tc = calls(ev, t, fit_call(fit, t))
            lab = np.array([r.item.label for r in ev])
            pas.append(np.array([g.passes for g in verdicts_of(ev, t)]))
            good.append(lab)
            emp.append(e)
            tsk.append(tc)
        lab = np.concatenate(good)
        out[rule] = {"all_gates_pass": _pr(np.concatenate(pas), np.isin(lab, GOOD)),
                     "empathic_call": _pr(np.concatenate(emp), lab == "empathic_choice"),
                     "task_call": _pr(np.concatenate(tsk), lab == "task_choice")}
    return out


def verdicts_of(rows: Sequence[Row], t: GateThresholds) -> list[gates.GateVerdicts]:
    return [gates.verdicts(r.features, r.perplexity, r.topic, t) for r in rows]


EMPATHIC_PRECISION = 0.80  # the goal; t_empathic is fitted to reach it on out-of-fold train scores


def _precision_cut(s: np.ndarray, pos: np.ndarray, target: float = EMPATHIC_PRECISION) -> float:
    """The cut at which ``s >= cut`` is most credibly precise: the highest lower bound of the 95% Wilson interval
    of its precision (so 9 of 10 beats 2 of 2), among cuts whose precision reaches ``target``; ties keep the higher
    cut. Above every score (the call never fires) where no cut reaches ``target``; 0.0 when ``s`` is empty."""
    from .metrics import wilson_ci

    best, best_lb = (float(s.max()) + 1e-6 if s.size else 0.0), -1.0
    for c in np.unique(s)[::-1]:
        pred = s >= c
        tp, n = int((pred & pos).sum()), int(pred.sum())
        if tp and tp / n >= target - 1e-12:
            lb = wilson_ci(tp, n)[0]
            if lb > best_lb + 1e-12:
                best, best_lb = float(c), lb
    return best


def _fbeta_cut(s: np.ndarray, pos: np.ndarray, upper: bool, beta: float) -> float:
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
    return best


CUTOFF_RULES = {"t_empathic": "the cut-off with the highest lower 95% Wilson bound of out-of-fold train precision, "
                              f"among those whose precision is >= {EMPATHIC_PRECISION:.2f} (fixed before batch5 was "
                              "labelled)",
                "t_task": "the cut-off with the best out-of-fold train F0.5"}


def fit_call(train: Sequence[Row], t: GateThresholds, beta: float = 0.5) -> dict[str, float]:
    """The empathy judge's two cut-offs, fitted on the train rows that pass every gate (``CUTOFF_RULES``):
    ``t_empathic`` for precision (the goal's 0.80), ``t_task`` for F-beta (beta 0.5 weighs precision). With no
    labelled positive passing the gates the cut-off lies beyond every train score (0.0 if no train row passes)."""
    v = verdicts_of(train, t)
    rows = [r for r, g in zip(train, v) if g.passes]
    s = np.array([r.empathy for r in rows])
    lab = np.array([r.item.label for r in rows])
    return {"t_empathic": _precision_cut(s, lab == "empathic_choice"),
            "t_task": _fbeta_cut(s, lab == "task_choice", False, beta)}


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


BASELINE, TOLD_TO_HELP = "baseline", "instructed_empathic"  # labels batch7's baselines, batches 4-6's replies told to help


def prompted_pairs(rows: Sequence[Row], t: GateThresholds, cut: dict[str, float], n_boot: int = 2000,
                   seed: int = 0) -> dict[str, Any]:
    """The success call (alpha > 0 form) on (unsteered baseline, reply told to help) pairs: the one place where it
    fires. A task call on the baseline and an empathic call on the other reply; truth is a ``task_choice`` label on
    the baseline and an ``empathic_choice`` label on the other. (The call also needs a judge move above the model's
    seed-noise band; two calls at once move it by at least ``t_empathic - t_task``, which is above every bundled
    model's band, as ``tests/test_validation_real.py`` checks.)

    ``same_seed``: the pairs of one (model, scenario, seed) whose two replies are labelled (one seed means the same
    random numbers, so the two replies often share their opening words). ``any_seed``: every called pair of one
    (model, scenario), whatever the seeds, precision only, with a bootstrap that resamples baselines and replies told
    to help apart within each scenario (scenarios are not resampled). It is the two calls' precisions multiplied
    within each scenario, so it adds pairs, not independent evidence."""
    from .metrics import wilson_ci

    emp, task = calls(rows, t, cut)
    lab = np.array([r.item.label for r in rows])
    by: dict[str, dict[tuple, int]] = {BASELINE: {}, TOLD_TO_HELP: {}}
    for i, r in enumerate(rows):
        if r.item.condition in by and r.item.alpha == 0:
            by[r.item.condition][(r.item.model, r.item.scenario, r.item.seed)] = i
    both = sorted(set(by[BASELINE]) & set(by[TOLD_TO_HELP]))
    b_idx, e_idx = [by[BASELINE][k] for k in both], [by[TOLD_TO_HELP][k] for k in both]
    pred = task[b_idx] & emp[e_idx] if both else np.zeros(0, dtype=bool)
    truth = (lab[b_idx] == "task_choice") & (lab[e_idx] == "empathic_choice") if both else np.zeros(0, dtype=bool)
    same = _pr(pred, truth)
    k, n = same["true_positives"], same["predicted"]
    same["precision_ci"] = list(wilson_ci(k, n)) if n else None
    groups: dict[tuple, tuple[list[bool], list[bool]]] = {}
    for i, r in enumerate(rows):
        g = groups.setdefault((r.item.model, r.item.scenario), ([], []))
        if r.item.condition == BASELINE and task[i]:
            g[0].append(lab[i] == "task_choice")
        elif r.item.condition == TOLD_TO_HELP and emp[i]:
            g[1].append(lab[i] == "empathic_choice")
    cells = [(np.array(b, float), np.array(e, float)) for b, e in groups.values() if b and e]

    def precision(cs: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return float(sum(b.sum() * e.sum() for b, e in cs) / sum(b.size * e.size for b, e in cs))

    anyp: dict[str, Any] = {"pairs": int(sum(b.size * e.size for b, e in cells)),
                            "baselines": int(sum(b.size for b, _ in cells)), "replies": int(sum(e.size for _, e in cells)),
                            "precision": precision(cells) if cells else None, "precision_ci": None}
    if cells:
        rng = np.random.default_rng(seed)
        boots = [precision([(b[rng.integers(0, b.size, b.size)], e[rng.integers(0, e.size, e.size)]) for b, e in cells])
                 for _ in range(n_boot)]
        anyp["precision_ci"] = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]
    return {"same_seed": same, "any_seed": anyp}


def success_goal(pairs: dict[str, Any]) -> dict[str, Any]:
    """The issue's bar for the success call itself, judged on the same-seed pairs of the fresh batches."""
    s = pairs["same_seed"]
    return {"rule": f"precision of the success call >= {EMPATHIC_PRECISION:.2f} on the fresh batches' (baseline, "
                    "reply told to help) pairs of one seed, both labelled blind after the rule was fixed",
            "precision": s["precision"], "true_positives": s["true_positives"], "predicted": s["predicted"],
            "precision_ci": s["precision_ci"], "met": bool(s["precision"] is not None and s["precision"] >= EMPATHIC_PRECISION)}


def judge_auroc(train: Sequence[Row], test: Sequence[Row]) -> dict[str, dict]:
    """AUROC of each empathy judgment for ``empathic_choice`` among readable choices (empathic, task, unclear): on
    the train part (the label judge's out-of-fold scores) and on the held-out part."""
    from .metrics import auroc

    out: dict[str, dict] = {}
    for part, rows in (("train_out_of_fold", train), ("test", test)):
        good = [r for r in rows if r.item.label in GOOD]
        y = np.array([r.item.label == "empathic_choice" for r in good])
        out[part] = {"n": len(good), "positives": int(y.sum())}
        for name, key in (("label_judge", "empathy"), ("pair_judge", "empathy_pairs")):
            s = np.array([getattr(r, key) for r in good], dtype=float)
            out[part][name] = float(auroc(s, y)) if 0 < y.sum() < len(y) and np.isfinite(s).all() else None
    return out


INSTRUCTED = "instructed_"  # condition prefix of replies told in the prompt which choice to make (labels batch 4)


def strata(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The rows by how they were generated: the sweep's own conditions, replies told which choice to make (drawn to
    give the empathic call positives; their precision is not the sweep's) and the unsteered baselines generated for
    the success call's test (batch7). Empty strata are left out."""
    out = {"sweep": [r for r in rows if not r.item.condition.startswith(INSTRUCTED) and r.item.condition != BASELINE],
           "told_the_choice": [r for r in rows if r.item.condition.startswith(INSTRUCTED)],
           "fresh_baselines": [r for r in rows if r.item.condition == BASELINE]}
    return {k: v for k, v in out.items() if v}


def choose_gate_rule(cv: dict[str, dict]) -> str:
    """The gate rule whose gates, cross-validated inside train, best find readable choices: the highest F1 of
    "passes every gate" (ties: the first in ``GATE_RULES``)."""
    def f1(r: dict) -> float:
        p, rc = r["all_gates_pass"]["precision"] or 0.0, r["all_gates_pass"]["recall"] or 0.0
        return 2 * p * rc / (p + rc) if p + rc else 0.0
    return max(GATE_RULES, key=lambda k: (f1(cv[k]), -GATE_RULES.index(k)))


def validate(rows: Sequence[Row], pushes: Sequence[dict] | None = None) -> dict[str, Any]:
    """Fit on the train rows, report on the test rows (overall and per model); ``pushes`` (default: the committed
    pairing file, where it exists) adds steering judged by the labels alone."""
    train = [r for r in rows if r.item.split == "train"]
    test = [r for r in rows if r.item.split == "test"]
    cv = cross_validate_rules(train)
    rule = choose_gate_rule(cv)
    t = fit_thresholds(train, rule)
    cut = fit_call(train, t)
    models = sorted({r.item.model for r in rows})
    report: dict[str, Any] = {
        "gate_rule": rule, "gate_rule_cv": cv,
        "thresholds": t.to_dict(), "cutoffs": cut,
        "n": {"train": len(train), "test": len(test)},
        "test": gate_table(test, t, cut),
        "test_by_model": {m: gate_table([r for r in test if r.item.model == m], t, cut) for m in models},
        "test_by_stratum": {name: gate_table(part, t, cut) for name, part in strata(test).items()},
        "test_pairs": pair_calls(test, t, cut),
        "train": gate_table(train, t, cut),
    }
    report["judge_auroc"] = judge_auroc(train, test)
    fresh = [r for r in test if r.item.batch in FRESH_BATCHES]
    if fresh:  # labelled after the rules were fixed: the goal is judged here (on the rest the call was seen)
        report["test_fresh"] = {"batches": sorted({r.item.batch for r in fresh}), **gate_table(fresh, t, cut)}
        report["test_fresh_by_model"] = {m: gate_table([r for r in fresh if r.item.model == m], t, cut)
                                         for m in sorted({r.item.model for r in fresh})}
        report["test_fresh_by_stratum"] = {name: gate_table(part, t, cut) for name, part in strata(fresh).items()}
        pairs = prompted_pairs(fresh, t, cut)
        if pairs["same_seed"]["n"]:
            report["test_fresh_success"] = pairs
            report["success_goal"] = success_goal(pairs)
    committed, pushes = pushes is None, load_pushes() if pushes is None else pushes
    have = {r.item.id for r in rows}
    named = {i for p in pushes for i in (p["baseline_id"], p["reply_id"])}
    if named and not named <= have:
        if named & have or not committed:
            raise ValueError(f"the pairing names {len(named - have)} labelled replies these rows lack")
        pushes = ()  # rows of another label set (a toy, a subset): the committed pairing is not theirs
    if pushes:  # steering judged by the labels alone (batch8), with the call checked on those real steered pairs
        report["labelled_pushes"] = labelled_pushes(rows, pushes, t, cut)
        report["labelled_pushes_goals"] = pushes_goals(report["labelled_pushes"])
    report["goal"] = goal(report["test_fresh" if fresh else "test"]["empathic_call"],
                          "the fresh batch (labelled blind after the rule was fixed)" if fresh else "the held-out test part")
    return report


def goal(call: dict, where: str) -> dict[str, Any]:
    """The issue's goal for the empathic call, with the precision's 95% Wilson interval."""
    from .metrics import wilson_ci

    p, k, n = call["precision"], call["true_positives"], call["predicted"]
    return {"rule": f"precision of the empathic call >= {EMPATHIC_PRECISION:.2f} on {where}", "precision": p,
            "true_positives": k, "predicted": n, "precision_ci": list(wilson_ci(k, n)) if n else None,
            "met": bool(p is not None and p >= EMPATHIC_PRECISION)}


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
              "empathy_judge": "label judge: all-MiniLM-L6-v2 + logistic regression (C = 1, balanced) on the label train "
                               "part's readable choices and the graded set (judges.LabelJudge); its cut-offs fitted on "
                               "its out-of-fold train scores (CUTOFF_RULES)", "cutoff_rules": CUTOFF_RULES,
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


PUSH_ORDER = (("chosen", "probe"), ("chosen", "matched_random"), ("strongest", "probe"), ("strongest", "matched_random"),
              ("seed_only", BASELINE), ("told_to_help", TOLD_TO_HELP))


def labelled_pushes(rows: Sequence[Row], pushes: Sequence[dict], t: GateThresholds, cut: dict[str, float],
                    n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Steering judged by the blind labels alone (labels batch8, ``labels.PUSHES_PATH``): for each push and control,
    how many of the baselines labelled ``task_choice`` its reply of the same scenario turned into an
    ``empathic_choice`` (a label that already excludes incoherent, off-topic, echo and unclear replies), with a
    bootstrap interval over (scenario, seed) baselines widened to at least Wilson (``ci``) and one that resamples
    whole scenarios (``ci_scenarios``; few scenarios, so read it as a check), the replies' label mix and readable
    share (empathic, task or unclear), and the success call against those labels: a task call on the baseline and
    an empathic call on the reply (the call's third clause, a judge move beyond the seed-noise band, always holds
    when both calls do, since t_empathic - t_task is above every model's band; ``tests/test_validation_real.py``).

    No automatic judgment decides the rate; the call is checked on real steered pairs beside it."""
    from collections import Counter

    from .controls import cluster_bootstrap_rate
    from .metrics import wilson_ci

    emp, task = calls(rows, t, cut)
    at = {r.item.id: i for i, r in enumerate(rows)}
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in pushes:
        groups.setdefault((p["push"], p["condition"]), []).append(p)
    order = [k for k in PUSH_ORDER if k in groups] + sorted(k for k in groups if k not in PUSH_ORDER)
    out = []
    for push, cond in order:
        ps = [p for p in groups[(push, cond)] if rows[at[p["baseline_id"]]].item.label == "task_choice"]
        r_idx = np.array([at[p["reply_id"]] for p in ps], dtype=int)
        b_idx = np.array([at[p["baseline_id"]] for p in ps], dtype=int)
        labs = [rows[i].item.label for i in r_idx]
        truth = np.array([x == "empathic_choice" for x in labs], dtype=bool)
        rate = cluster_bootstrap_rate(truth.tolist(), [(p["scenario"], p["seed"]) for p in ps], n_boot, seed)
        by_scenario = cluster_bootstrap_rate(truth.tolist(), [p["scenario"] for p in ps], n_boot, seed)
        pred = task[b_idx] & emp[r_idx] if len(ps) else np.zeros(0, dtype=bool)
        call = _pr(pred, truth)
        call["precision_ci"] = list(wilson_ci(call["true_positives"], call["predicted"])) if call["predicted"] else None
        first = ps[0] if ps else {}
        k = int(truth.sum())
        out.append({"push": push, "condition": cond, "model": rows[b_idx[0]].item.model if len(ps) else None,
                    "direction": first.get("direction", ""), "layer": first.get("layer"), "alpha": first.get("alpha", 0.0),
                    **rate.to_dict(), "wilson_ci": list(wilson_ci(k, len(ps))) if ps else None,
                    "ci_scenarios": list(by_scenario.ci) if by_scenario.ci else None,
                    "scenarios": dict(sorted(Counter(p["scenario"] for p in ps).items())),
                    "unchanged": int(sum(rows[i].item.reply.strip() == rows[j].item.reply.strip()
                                         for i, j in zip(r_idx, b_idx))),
                    "labels": dict(sorted(Counter(labs).items())),
                    "readable_share": float(np.mean([x in GOOD for x in labs])) if labs else None,
                    "success_call": call})
    return out


READABLE_MIN = 0.90  # issue 11: at the chosen alpha at least 90% of replies coherent (here: readable by the labels)


def pushes_goals(pushes: Sequence[dict]) -> dict[str, Any] | None:
    """Issue 11's goals read on the blind labels alone, for each push beside its matched random direction and the
    seed-only control: push >= 0.30, each control <= 0.10, the push's lower bound above matched random's upper, and
    the push's replies readable (empathic, task or unclear by the labels) >= 0.90. A control that is missing is
    ``None`` (not measured), not failed. The task choices each push leaves are compared with its matched random
    direction's by Fisher's exact test (does the push move choices at all, whichever way?)."""
    from scipy.stats import fisher_exact

    by = {(p["push"], p["condition"]): p for p in pushes}
    seed = by.get(("seed_only", BASELINE))
    out = {}
    for push in ("chosen", "strongest"):
        pr, rd = by.get((push, "probe")), by.get((push, "matched_random"))
        if not pr or not pr["n"]:
            continue
        rd = rd if rd and rd["n"] else None
        has_rd = rd is not None
        tp, tr = pr["labels"].get("task_choice", 0), rd["labels"].get("task_choice", 0) if rd else 0
        out[push] = {"probe_rate": pr["rate"], "probe_ci": pr["ci"],
                     "random_rate": rd["rate"] if rd else None, "random_ci": rd["ci"] if rd else None,
                     "seed_only_rate": seed["rate"] if seed and seed["n"] else None,
                     "probe_met": pr["rate"] >= 0.30,
                     "random_met": rd["rate"] <= 0.10 if rd else None,
                     "seed_only_met": seed["rate"] <= 0.10 if seed and seed["n"] else None,
                     "separated": pr["ci"][0] > rd["ci"][1] if rd else None,
                     "readable_share": pr["readable_share"], "readable_met": pr["readable_share"] >= READABLE_MIN,
                     "task_left": tp, "random_task_left": tr if has_rd else None,
                     "task_left_p": float(fisher_exact([[tp, pr["n"] - tp], [tr, rd["n"] - tr]])[1]) if rd else None}
    return out or None
