"""Detection results as Markdown, rendered from the committed ``detection.json`` files (no hand-typed numbers).

The About tab and the README show these tables; ``python -m empathy_core results-table`` prints them, and a test
checks that the README carries the current ones.

    >>> print(goal_table(store.load_detection("smollm2-135m")))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import store
from ..core.models import BUNDLED

AXES = ("sentiment", "politeness", "length", "enthusiasm")
ABOUT_SLOTS = ("{{detection_results}}", "{{sweep_note}}", "{{steering_results}}")


def _fmt(v: float, ci: list[float] | None = None) -> str:
    return f"{v:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _mark(ok: bool) -> str:
    return " ✓" if ok else " ✗"


def _goals(tfidf: dict | None) -> list[tuple[str, str, Callable[[dict], tuple[float, list | None]], Callable[[dict], bool] | None]]:
    tf = tfidf["test_auroc"] if tfidf else None
    test_goal = "≥ 0.90" + (f" and ≥ TF-IDF + 0.03 = {tf + 0.03:.3f}" if tf is not None else "")
    rows: list = [
        ("test AUROC [95% CI]", test_goal, lambda r: (r["test_auroc"], r["test_auroc_ci"]),
         lambda r: r["test_auroc"] >= 0.90 and (tf is None or r["test_auroc"] >= tf + 0.03)),
        ("minimal-pair AUROC", "≥ 0.85", lambda r: (r["minimal_test_auroc"], r["minimal_test_auroc_ci"]),
         lambda r: r["minimal_test_auroc"] >= 0.85),
        ("leave-one-scenario-out AUROC (mean)", "≥ 0.80", lambda r: (r["loso_test_auroc_mean"], None),
         lambda r: r["loso_test_auroc_mean"] >= 0.80)]
    for a in AXES:
        rows.append((f"confound AUROC, {a} (held-back part)", "point in [0.40, 0.60], CI in [0.35, 0.65]",
                     lambda r, a=a: (r["confound_heldout"][a]["auroc"], r["confound_heldout"][a]["ci"]),
                     lambda r, a=a: (0.40 <= r["confound_heldout"][a]["auroc"] <= 0.60
                                     and 0.35 <= r["confound_heldout"][a]["ci"][0] and r["confound_heldout"][a]["ci"][1] <= 0.65)))
    rows += [("graded Spearman ρ", "≥ 0.70", lambda r: (r["graded_spearman"], r["graded_spearman_ci"]),
              lambda r: r["graded_spearman"] >= 0.70),
             ("long-form test AUROC, fitted on short pairs", "≥ 0.85",
              lambda r: (r["longform_test_auroc_short_fit"], r["longform_test_auroc_short_fit_ci"]),
              lambda r: r["longform_test_auroc_short_fit"] >= 0.85),
             ("short test AUROC, fitted on long-form pairs", "(reported)",
              lambda r: (r["short_test_auroc_longform_fit"], r["short_test_auroc_longform_fit_ci"]), None)]
    return rows


def goal_table(det: dict) -> str:
    """Issue 10's goals for one model: the default, the study's mean difference, TF-IDF and MiniLM, with ✓/✗ for
    the two probes (the baselines are references, not candidates)."""
    rep, base = det["reports"], det.get("baselines") or {}
    d, st = det["default"], rep["study_mean_diff"]
    cols = [("default: " + f"{d['method']}, {d['pooling']}, layer {d['layer']}", rep["default"], True),
            (f"study: mean_diff, mean, layer {st['layer']}", st, True)]
    cols += [(name, base[k], False) for k, name in (("tfidf_logreg", "TF-IDF logreg"), ("minilm_logreg", "MiniLM logreg"))
             if k in base]
    out = ["| goal (test side) | target | " + " | ".join(c[0] for c in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for name, target, get, ok in _goals(base.get("tfidf_logreg")):
        cells = []
        for _, r, judged in cols:
            v, ci = get(r)
            cells.append(_fmt(v, ci) + (_mark(ok(r)) if judged and ok is not None else ""))
        out.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def sanity_line(det: dict) -> str:
    s = det["reports"]["default"]["sanity"]
    m, g = s["summary"], s["gate_false_cannot_judge"]
    return (f"Sanity set ({det['counts_v2']['sanity']} texts, never fitted on), default probe: the can't-judge gate catches "
            f"{m['cannot_judge_items_caught']:.0%} of the {m['n_cannot_judge_items']} punctuation / number / single-word "
            f"texts; hostile and dismissive replies land on the task side {m['hostile_dismissive_task_side']:.0%} of the "
            f"time ({m['hostile_dismissive_task_side_or_cannot_judge']:.0%} task side or can't judge); warm replies on "
            f"the empathic side {m['warm_empathic_side']:.0%}; off-topic texts task side or can't judge "
            f"{m['off_topic_cannot_judge_or_task']:.0%}. The gate (at least {det['gate']['min_tokens']} tokens, Mahalanobis "
            f"distance ≤ {det['gate']['max_distance']:.1f}) wrongly says \"can't judge\" on {g['short_test']:.0%} of the "
            f"short test texts, {g['longform_test']:.0%} of the long-form test texts and {g['confounds']:.0%} of the "
            f"confound controls.")


def detection_results(root: Path | None = None) -> str:
    """Every bundled model's goal table and sanity line (models without the new results are skipped)."""
    parts = []
    for key in BUNDLED:
        try:
            det = store.load_detection(key, root)
        except store.StoreError:
            continue
        if "reports" not in det:
            continue
        d = det["default"]
        if "n_tone_eligible" in d:  # RULE.md amendment 2: the dev hostile set as well
            passed = (f"{d['n_tone_eligible']} of {d['n_candidates']} candidates passed the tone filter, {d['n_eligible']} "
                      f"of them also the dev hostile set's; the default puts {d['hostile_dev']:.0%} of the dev hostile "
                      "texts on the task side")
        else:
            passed = f"{d['n_eligible']} of {d['n_candidates']} candidates passed the tone filter"
        parts.append(f"**{key}** ({det['n_layers']} layers). Default chosen on dev only: {d['method']}, {d['pooling']} "
                     f"pooling, layer {d['layer']} ({d['rule_branch']}; {passed}).\n\n{goal_table(det)}\n\n{sanity_line(det)}")
    return "\n\n".join(parts)


def sweep_note(root: Path | None = None) -> str:
    """Which dataset version each model's committed steering sweep was computed on (from its sweep direction file)."""
    from ..core.probes import read_safetensors
    from .dataset import dataset_sha256

    now = dataset_sha256()
    old: dict[str, list[str]] = {}
    for key in BUNDLED:
        path = store.model_dir(key, root) / store.SWEEP_DIRECTION
        if not path.exists():
            continue
        sha = read_safetensors(path)[1].get("dataset_sha256", "")
        if sha and sha != now:
            old.setdefault(sha, []).append(key)
    if not old:
        return ""
    versions = "; ".join(f"dataset sha256 {sha[:12]}… for {', '.join(keys)}" for sha, keys in old.items())
    return (f"**The steering sweep was computed on the previous dataset version** ({versions}; the current data is "
            f"{now[:12]}…), with the mean-difference probe of that data (kept in `sweep_direction.safetensors`). "
            "Its numbers are not comparable with the detection results, which use the current data; it will be recomputed on the "
            "current data when the steering evaluation is redesigned (issue 11).")


# ---------------------------------------------------------------------- steering (issue 11's evaluation)
STEERING_GOALS = {"probe_pos": 0.30, "control_max": 0.10, "coherent_min": 0.90}


def _rate(ev: dict, cond: str, sign: str) -> dict | None:
    a = ev["chosen"]["alpha"]
    return next((r for r in ev["rates"] if r["condition"] == cond and r["sign"] == sign
                 and (r["alpha"] == "all" or abs(r["alpha"]) == a)), None)


MIN_ELIGIBLE = 10  # fewer eligible baselines than this and a verdict carries a warning


def _rate_cell(r: dict | None, ok: Callable[[dict], bool] | None = None) -> str:
    if r is None or not r["n"]:
        return "— (n = 0)"
    lo, hi = r["ci"]
    cell = f"{r['rate']:.2f} [{lo:.2f}, {hi:.2f}] ({r['successes']}/{r['n']})"
    if ok is None:
        return cell
    return cell + _mark(ok(r)) + ("" if r["n"] >= MIN_ELIGIBLE else f" (only {r['n']} eligible: a weak verdict)")


def steering_goal_rows(ev: dict) -> list[tuple[str, str, str]]:
    """(measure, goal, cell) rows of one model's evaluation, with ✓/✗ where issue 11 sets a goal."""
    g = STEERING_GOALS
    probe, rand, seed = (_rate(ev, c, "pos") for c in ("probe", "matched_random", "seed_only"))
    enough = probe is not None and rand is not None and min(probe["n"], rand["n"]) >= MIN_ELIGIBLE
    sep = bool(probe and rand and probe["n"] and rand["n"] and probe["ci"][0] > rand["ci"][1])
    coh = ev.get("coherent_rate_at_chosen_alpha", {})
    c_probe, c_rand = coh.get("probe"), coh.get("matched_random")
    ch = ev["chosen"]
    fmt = (lambda v: "—" if v is None else f"{v:.2f}")
    return [
        ("chosen on the choose-seeds (direction, layer, α)", "",
         f"{ch['direction']}, layer {ch['layer']}, ±{ch['alpha']:g}" + ("" if ch.get("coherent_enough", True)
                                                                         else " (no candidate coherent enough)")),
        ("report baselines (scenario × seed)", "≥ 30", f"{ev['n_baselines']}" + _mark(ev["n_baselines"] >= 30)),
        ("probe direction, α > 0: success [95% cluster CI]", f"≥ {g['probe_pos']:.2f}",
         _rate_cell(probe, lambda r: r["rate"] >= g["probe_pos"])),
        ("matched random, α > 0", f"≤ {g['control_max']:.2f}", _rate_cell(rand, lambda r: r["rate"] <= g["control_max"])),
        ("seed only (α = 0, next seed), toward empathic", f"≤ {g['control_max']:.2f}",
         _rate_cell(seed, lambda r: r["rate"] <= g["control_max"])),
        ("probe CI above matched random CI (α > 0)", "yes",
         ("yes" if sep else "no") + _mark(sep) + ("" if enough else f" (fewer than {MIN_ELIGIBLE} eligible)")),
        ("probe direction, α < 0", "", _rate_cell(_rate(ev, "probe", "neg"))),
        ("matched random, α < 0", "", _rate_cell(_rate(ev, "matched_random", "neg"))),
        ("seed only, toward task", "", _rate_cell(_rate(ev, "seed_only", "neg"))),
        ("prompting: asked to be empathic", "", _rate_cell(_rate(ev, "prompt_empathic", "pos"))),
        ("prompting: asked to focus on the task", "", _rate_cell(_rate(ev, "prompt_task", "neg"))),
        ("coherent at the chosen α: probe / matched random", f"probe ≥ {g['coherent_min']:.2f}",
         f"{fmt(c_probe)} / {fmt(c_rand)}" + ("" if c_probe is None else _mark(c_probe >= g["coherent_min"]))),
        ("seed-noise band (95th pct. of the judge's move between two seeds)", "", f"{ev['noise_band']:.2f}")]


def steering_verdict(ev: dict) -> str:
    """The plain answer of one model's evaluation: does the push along the direction turn task choices into empathic
    ones, clear of its controls (issue 11's goals: rate >= 0.30, lower CI bound above matched random's upper bound)?"""
    probe, rand, seed, prompt = (_rate(ev, c, "pos") for c in ("probe", "matched_random", "seed_only", "prompt_empathic"))

    def frac(r: dict | None) -> str:
        return "n = 0" if r is None or not r["n"] else f"{r['successes']} of {r['n']}"
    ch = ev["chosen"]
    where = (f"({ch['direction']} direction, layer {ch['layer']}, α = +{ch['alpha']:g}; {ev['n_baselines']} report "
             "baselines)")
    counts = (f"probe {frac(probe)}, matched random {frac(rand)}, seed only {frac(seed)}, prompt asking for empathy "
              f"{frac(prompt)}")
    if probe is None or not probe["n"]:
        return (f"**No steering effect can be measured on this model** {where}: no report baseline got a validated task "
                f"call for the push to move ({counts}). The blind labels say how often its replies are empathic choices.")
    works = bool(rand and rand["n"] and probe["rate"] >= STEERING_GOALS["probe_pos"] and probe["ci"][0] > rand["ci"][1])
    weak = "" if probe["n"] >= MIN_ELIGIBLE else f" Only {probe['n']} baselines were eligible, so this is a weak test."
    if works:
        return (f"**Steering works on this model by this test** {where}: the push turned {frac(probe)} eligible "
                f"task-choice baselines into empathic choices, clear of the matched random direction ({counts}).{weak}")
    return (f"**The validated call saw no steering effect on this model's choices** "
            f"{where}: the push turned {frac(probe)} eligible task-choice baselines into empathic choices, not clear of "
            f"its controls ({counts}).{weak}")


def steering_results(root: Path | None = None) -> str:
    """Every bundled model's steering evaluation side by side (models without one are left out); the goals are
    issue 11's, set for the default model and marked for each."""
    evs = {}
    for key in BUNDLED:
        st = store.load_optional(key, "steering.json", root)
        if st and "evaluation" in st:
            evs[key] = st["evaluation"]
    if not evs:
        return "No steering evaluation yet (`python -m empathy_core precompute --only steering --model KEY`)."
    rows = {k: steering_goal_rows(ev) for k, ev in evs.items()}
    first = next(iter(rows.values()))
    out = ["| measure | goal | " + " | ".join(evs) + " |", "|---|---|" + "---|" * len(evs)]
    for i, (name, goal, _) in enumerate(first):
        out.append(f"| {name} | {goal} | " + " | ".join(rows[k][i][2] for k in evs) + " |")
    out.append("")
    labelled = store.load_shared("judge_validation.json", root)
    out += [f"- {k}: " + (f"{labels_verdict(labelled, k)} " if labels_verdict(labelled, k) else "")
            + steering_verdict(ev) for k, ev in evs.items()]
    if any(labels_verdict(labelled, k) for k in evs):
        rest = [k for k in evs if not labels_verdict(labelled, k)]
        if rest:
            out.append(f"- The test by the blind labels alone covers {', '.join(k for k in evs if k not in rest)} only; "
                       f"{', '.join(rest)} have the validated call's verdict only.")
    return "\n".join(out)


STRATA = {"sweep": "the sweep's conditions (steered, α = 0, random and prompted rows; batch8's pushes among them)",
          "told_the_choice": "replies told in the prompt which choice to make",
          "fresh_baselines": "unsteered baselines at fresh seeds (batch7, and batch8's seed-only replies)"}


def _pr_cell(r: dict, counts: bool = True) -> str:
    """'precision / recall' of one stage, with its counts."""
    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.2f}"
    tail = f" ({r['true_positives']} of {r['predicted']} predicted, {r['actual']} actual)" if counts else ""
    return f"{f(r['precision'])} / {f(r['recall'])}{tail}"


def _fresh_lines(v: dict) -> list[str]:
    """The fresh batch's lines of the validation table (none before a fresh batch is labelled)."""
    out: list[str] = []
    fr = v.get("test_fresh")
    if fr:
        out.append(f"\n**Fresh test** ({', '.join(fr['batches'])}: replies nobody had read, labelled blind after the "
                   "call's rule was fixed, held out whole; n = " + f"{fr['empathic_call']['n']}, precision / recall): "
                   + "; ".join(f"{name.replace('_', ' ')} {_pr_cell(fr[name])}"
                               for name in ("all_gates_pass", "empathic_call", "task_call")) + ". Batches 6 and 7 "
                   "hold every reply their pool got a call for (the empathic calls, or the task calls) but only a random "
                   "part of the rest, so their recall overstates the pool's (the labels' README estimates that); batch8 "
                   "holds every reply of its design (six per task-choice baseline).")
        fby = v.get("test_fresh_by_stratum", {})
        if len(fby) > 1:
            out.append("The fresh test's empathic call by how the replies were made: " + "; ".join(
                f"{STRATA.get(k, k)}: {_pr_cell(t['empathic_call'])}" for k, t in fby.items()) + ".")
    return out


def _success_lines(v: dict) -> list[str]:
    """The success call's own test (fresh (baseline, reply told to help) pairs), beside its record on steered pairs."""
    sp, tp = v.get("test_fresh_success"), v.get("test_pairs", {})
    steered = "; ".join(f"{'α > 0' if k == 'alpha_pos' else 'α < 0'}: {r['predicted']} calls on {r['n']} labelled pairs"
                        for k, r in tp.items())
    made = sum(r["predicted"] for r in tp.values())
    if not sp:
        if not steered:
            return []
        return [f"The success call itself has no measured precision: on (steered, baseline) pairs it made no call "
                f"to check ({steered})."] if not made else ["The success call on labelled (steered, baseline) pairs: "
                                                            + "; ".join(f"{k}: {_pr_cell(r)}" for k, r in tp.items()) + "."]
    s, a = sp["same_seed"], sp["any_seed"]
    ci = s["precision_ci"]
    prec = "—" if s["precision"] is None else f"{s['precision']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] (Wilson)"
    line = (f"**The success call itself** (a task call on the unsteered baseline, an empathic call on the other reply "
            f"of the same scenario and seed), tested on the fresh batches' pairs of a baseline and a reply told in the "
            f"prompt to help, both labelled blind: precision {prec}, {s['true_positives']} of {s['predicted']} calls; "
            f"it finds {s['true_positives']} of the {s['actual']} labelled pairs that are a task choice, then an "
            f"empathic choice ({s['n']} labelled pairs, not a random sample).")
    if a["precision"] is not None:
        lo, hi = a["precision_ci"]
        line += (f" Over every called pair of one scenario whatever the seeds ({a['baselines']} baselines × "
                 f"{a['replies']} replies, {a['pairs']} pairs): {a['precision']:.2f} [{lo:.2f}, {hi:.2f}] (bootstrap "
                 "within scenario; the two calls' precisions multiplied, not independent evidence).")
    if steered:
        line += (f" These are the pairs where the call can fire; on labelled steered pairs it made "
                 f"{'none' if not made else made} ({steered}).")
    line += (" A stand-in, not a steered reply: replies told to help often restate the sentence added to their prompt "
             "(\"...stop and help the other player who is struggling\"), which the labellers did not see and the echo "
             "gate does not compare against.")
    g = v.get("success_goal")
    if g:
        line += f" Goal: {g['rule']}: {'met' if g['met'] else 'not met'}, on its point estimate."
    return [line]


def validation_table(v: dict | None, key: str | None = None) -> str:
    """Precision and recall of each gate and call on the held-out blind labels, then what the labels of ``key``'s
    generations say by condition (every model's where ``key`` is None)."""
    if not v:
        return "No judge validation yet (`python -m empathy_core validate-judges` writes it)."
    out = [f"**Judge validation** against blind labels of stored generations (held-out part, n = {v['n']['test']}; "
           f"thresholds fitted on the train part, n = {v['n']['train']}):", "",
           "| stage | flags | precision | recall | flagged / actual |", "|---|---|---|---|---|"]
    for name, r in v["test"].items():
        if not isinstance(r, dict) or "precision" not in r:
            continue
        p = "—" if r["precision"] is None else f"{r['precision']:.2f}"
        rc = "—" if r["recall"] is None else f"{r['recall']:.2f}"
        out.append(f"| {name.replace('_', ' ')} | {r['flags']} | {p} | {rc} | {r['predicted']} / {r['actual']} |")
    out += _fresh_lines(v)
    out += _success_lines(v)
    pushes = labelled_pushes_table(v, key)
    if pushes:
        out += ["", pushes]
    g = v["goal"]
    ci = g.get("precision_ci")
    prec = "—" if g["precision"] is None else f"{g['precision']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}], "
                                                                         f"{g['true_positives']} of {g['predicted']}"
                                                                         if ci else "")
    out.append(f"\nGoal: {g['rule']}: {'met' if g['met'] else 'not met'} (precision {prec}). The labels were "
               "made by language-model labelling helpers working blind.")
    by = v.get("test_by_stratum", {})
    if len(by) > 1:
        out.append("The empathic call by how the replies were made: " + "; ".join(
            f"{STRATA.get(k, k)}: {_pr_cell(t['empathic_call'])}" for k, t in by.items()) + ".")
    ja = v.get("judge_auroc")
    if ja:
        def a(x: float | None) -> str:
            return "—" if x is None else f"{x:.2f}"
        out.append("Empathy judgment, AUROC for an empathic choice among readable choices: " + "; ".join(
            f"{'train, out of fold' if part.startswith('train') else 'held-out part'} (n = {r['n']}, {r['positives']} "
            f"empathic): label judge {a(r['label_judge'])}, contrastive-pair judge {a(r['pair_judge'])}"
            for part, r in ja.items()) + ".")
    cv = v.get("gate_rule_cv")
    if cv:
        out.append(f"Gate thresholds: rule `{v.get('gate_rule')}`, chosen by 5-fold cross-validation inside the train part "
                   "(the highest F1 of passing every gate; pooled held-out folds, precision / recall): " + "; ".join(
                       f"`{rule}` all gates pass {_pr_cell(r['all_gates_pass'], False)}, task call "
                       f"{_pr_cell(r['task_call'], False)}" for rule, r in cv.items()) + ".")
    rates = [r for r in v.get("label_rates", []) if key is None or r["model"] == key]
    if rates:
        lead = "" if key else "model | "
        out += ["", f"**What the blind labels say** about {key or 'the'} generations themselves (no pipeline; each batch "
                "is its own sample, see the labels' README):", "",
                f"| {lead}batch | condition | α | n | empathic choice [95% Wilson CI] | task choice | labels |",
                "|---" * (8 if lead else 7) + "|"]
        out += [f"| {'' if key else r['model'] + ' | '}{r['batch']} | {r['condition'].replace('_', ' ')} | "
                f"{r['alpha'].replace('alpha', '')} | {r['n']} | "
                f"{r['empathic_share']:.2f} [{r['empathic_ci'][0]:.2f}, {r['empathic_ci'][1]:.2f}] | {r['task_share']:.2f} | "
                + ", ".join(f"{k.replace('_', ' ')} {c}" for k, c in r["counts"].items()) + " |" for r in rates]
    return "\n".join(out)


README_MARKERS = ("<!-- detection-results: start (python -m empathy_core results-table --readme README.md) -->",
                  "<!-- detection-results: end -->")
README_STEERING_MARKERS = ("<!-- steering-results: start (python -m empathy_core results-table --readme README.md) -->",
                           "<!-- steering-results: end -->")


def _between(text: str, markers: tuple[str, str], body: str, path: Path) -> str:
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start!r} marker pair.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(path: Path, root: Path | None = None) -> None:
    """Replace the text between the README's detection-results and steering-results markers with the current tables
    (the steering table, then the judge validation with what the labels say for every model)."""
    text = _between(Path(path).read_text(), README_MARKERS, detection_results(root), path)
    body = steering_results(root) + "\n\n" + validation_table(store.load_shared("judge_validation.json", root))
    Path(path).write_text(_between(text, README_STEERING_MARKERS, body, path))


def render_about(template: str, root: Path | None = None) -> str:
    """The About text with its result slots filled from the committed files."""
    return (template.replace(ABOUT_SLOTS[0], detection_results(root)).replace(ABOUT_SLOTS[1], sweep_note(root))
            .replace(ABOUT_SLOTS[2], steering_results(root)))


PUSH_NAMES = {("chosen", "probe"): "the chosen push", ("chosen", "matched_random"): "its matched random direction",
              ("strongest", "probe"): "the strongest push passing the coherence gate",
              ("strongest", "matched_random"): "its matched random direction",
              ("seed_only", "baseline"): "seed only (unsteered, next seed)",
              ("told_to_help", "instructed_empathic"): "told in the prompt to help (positive control)"}


def _push_setting(p: dict) -> str:
    if p["layer"] is None:
        return "unsteered"
    d = "mean difference" if p["direction"] == "mean_diff" else p["direction"] or "probe"
    return f"{'random, same norm' if p['condition'] == 'matched_random' else d}, layer {p['layer']}, α = {p['alpha']:+g}"


def _frac(p: dict | None) -> str:
    if not p or not p["n"] or p.get("ci") is None:
        return "n = 0"
    return f"{p['successes']} of {p['n']}, {p['rate']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"


def _pushes_of(v: dict | None, key: str | None) -> list[dict]:
    return [p for p in (v or {}).get("labelled_pushes") or [] if key is None or p["model"] == key]


def labels_verdict(v: dict | None, key: str | None = None) -> str:
    """The plain answer of the blind labels alone (labels batch8), for ``key``'s model; "" where there is none.

    It says "turned task choices into empathic ones" only where a push meets every goal read on the labels (rate,
    controls, separation, readable replies); it names the pushes it rests on, so it claims nothing beyond them."""
    ps = _pushes_of(v, key)
    by = {(p["push"], p["condition"]): p for p in ps}
    ch = by.get(("chosen", "probe"))
    if not ch or not ch["n"]:
        return ""
    goals = (v or {}).get("labelled_pushes_goals") or {}
    works = [k for k, g in goals.items() if g.get("probe_met") and g.get("random_met") and g.get("separated")
             and g.get("seed_only_met") is not False and g.get("readable_met")]
    head = ("**By the blind labels alone, steering turned task choices into empathic ones**" if works else
            "**By the blind labels alone, steering did not turn task choices into empathic ones**")
    pushes = [p for p in ps if p["layer"] is not None]
    parts = [f"{PUSH_NAMES.get((p['push'], p['condition']), p['push'])} ({_push_setting(p)}): {_frac(p)}"
             + (f", {p['unchanged']} replies the baseline unchanged" if p["unchanged"] else "") for p in pushes]
    parts += [f"{PUSH_NAMES.get((p['push'], p['condition']), p['push'])}: {_frac(p)}" for p in ps if p["layer"] is None]
    moved = [(k, g) for k, g in goals.items() if g.get("task_left_p") is not None and g["task_left_p"] < 0.01]
    tail = "".join(
        f" The {'chosen' if k == 'chosen' else 'strongest'} push does move choices, but not toward help: it left "
        f"{g['task_left']} of {ch['n']} task choices against {g['random_task_left']} under its matched random direction "
        f"(Fisher p = {g['task_left_p']:.0e}), and {g['readable_share']:.0%} of its replies are readable choices."
        for k, g in moved if g["task_left"] < g["random_task_left"])
    return (f"{head} at the {len(pushes) // 2 or len(pushes)} settings tried, α > 0 only ({ch['n']} {ch['model']} "
            "baselines that the blind labels call task choices; the reply of each push at the same scenario and seed, "
            "labelled blind, counts when it is labelled an empathic choice): " + "; ".join(parts)
            + ". No automatic judgment decides these rates." + tail)


def labelled_pushes_table(v: dict | None, key: str | None = None) -> str:
    """Steering judged by the blind labels alone (labels batch8): each push and control's share of task-choice
    baselines turned empathic, its label mix, and the success call checked on those real steered pairs."""
    ps = _pushes_of(v, key)
    if not ps:
        return ""
    n = max(p["n"] for p in ps)
    steered = [p for p in ps if p["layer"] is not None]
    controls = [p for p in ps if p["layer"] is None]
    fired = sum(p["success_call"]["predicted"] for p in steered)
    right = sum(p["success_call"]["true_positives"] for p in steered)
    found = sum(p["successes"] for p in steered)
    changed = sum(p["n"] - p["unchanged"] for p in steered)
    out = [f"**Steering judged by the blind labels alone** (labels batch8: {n} unsteered {ps[0]['model']} baselines that "
           "the blind labels call task choices; each push's reply at the same scenario and seed, and the controls', "
           "labelled blind; a reply counts when it is labelled an empathic choice, which excludes incoherent, off-topic, "
           "echo and unclear replies):", "",
           "| reply | setting | empathic choice of n task-choice baselines [95% CI] | resampling scenarios | readable | "
           "labels | success call: fired, right |", "|---|---|---|---|---|---|---|"]
    for p in ps:
        c, sc = p["success_call"], p.get("ci_scenarios")
        out.append(f"| {PUSH_NAMES.get((p['push'], p['condition']), p['push'])} | {_push_setting(p)} | {_frac(p)} | "
                   + ("—" if not sc else f"[{sc[0]:.2f}, {sc[1]:.2f}]") + " | "
                   + ("—" if p.get("readable_share") is None else f"{p['readable_share']:.2f}") + " | "
                   + ", ".join(f"{k.replace('_', ' ')} {m}" for k, m in p["labels"].items())
                   + f" | {c['predicted']}, {c['true_positives']} |")
    line = (f"\nThe success call on these steered pairs ({len(steered)} pushes × {n} baselines, {changed} replies changed "
            f"from the baseline): fired {fired} time{'s' if fired != 1 else ''}, {right} right, where the labels find "
            f"{found} empathic choice{'s' if found != 1 else ''}")
    if controls:
        line += "; on the controls' pairs it fired " + "; ".join(
            f"{p['success_call']['predicted']} ({p['success_call']['true_positives']} right) for "
            f"{PUSH_NAMES.get((p['push'], p['condition']), p['push'])}" for p in controls)
    all_fired = sum(p["success_call"]["predicted"] for p in ps)
    all_right = sum(p["success_call"]["true_positives"] for p in ps)
    line += (f". Over all {sum(p['n'] for p in ps)} pairs of the batch: {all_right} of {all_fired} calls right"
             if all_fired else f". Over all {sum(p['n'] for p in ps)} pairs of the batch it made no call")
    out.append(line + (". Where it never fires, its precision cannot be measured; the verdict above rests on the labels, "
                       "not on it." if not fired else "."))
    scen = ps[0].get("scenarios")
    if scen:
        out.append("Baselines per scenario: " + ", ".join(f"{k} {m}" for k, m in scen.items()) + ".")

    def met(x: bool | None) -> str:
        return "not measured" if x is None else "met" if x else "not met"
    for push, r in ((v or {}).get("labelled_pushes_goals") or {}).items():
        share = r.get("readable_share")
        out.append(f"\nGoals on the labels, {'chosen' if push == 'chosen' else 'strongest'} push: push ≥ 0.30 "
                   f"{met(r.get('probe_met'))}; matched random ≤ 0.10 {met(r.get('random_met'))}; seed only ≤ 0.10 "
                   f"{met(r.get('seed_only_met'))}; push's lower bound above random's upper {met(r.get('separated'))}; "
                   f"readable replies ≥ 0.90 {met(r.get('readable_met'))}"
                   + ("" if share is None else f" ({share:.2f})") + ".")
    out.append("\nIntervals: bootstrap over (scenario, seed) baselines, widened to at least Wilson; beside it, whole "
               "scenarios resampled. Readable: labelled an empathic, task or unclear choice (not incoherent, echo or "
               "off topic).")
    if any(p["push"] == "strongest" for p in ps):
        out.append("The strongest push is the choose-seeds' cell (seeds 100-101) whose mean empathy-judge ensemble rose "
                   "most above α = 0 among those with ≥ 90% of replies passing the coherence gate (repetition and "
                   "perplexity only; none of its 10 choose-seed replies passed every gate).")
    return "\n".join(out)
