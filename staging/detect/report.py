"""Render REPORT.md from results_<model>.json files.

    PYTHONPATH=.:staging python -m detect.report smollm2-135m qwen2.5-coder-0.5b
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
AXES = ("sentiment", "politeness", "length", "enthusiasm")


def _f(x, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _ci(v, ci) -> str:
    return f"{_f(v)} [{_f(ci[0], 2)}, {_f(ci[1], 2)}]"


def _goal(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def model_section(rec: dict) -> str:
    R, B = rec["reports"], rec["baselines"]
    dflt, study = R["default"], R["study_mean_diff"]
    tf = B["tfidf_logreg"]
    cols = [("dev-chosen default", dflt), ("study: mean diff", study), ("TF-IDF logreg", tf), ("MiniLM logreg", B["minilm_logreg"])]
    head = "| metric (split) | goal | " + " | ".join(c[0] for c in cols) + " |\n|---|---|" + "---|" * len(cols) + "\n"
    cfg = (f"| config | | {dflt['method']}, {dflt['pooling']} pooling, layer {dflt['layer']}"
           f"{', hyper ' + str(dflt['hyper']) if dflt['hyper'] is not None else ''} | mean_diff, mean pooling, layer {study['layer']} "
           f"| C={tf['C']} | C={B['minilm_logreg']['C']} |\n")
    rows = []

    def row(label, goal, key, fmt=lambda r, k: _ci(r[k], r[k + "_ci"]) if k + "_ci" in r else _f(r.get(k)), check=None):
        cells = []
        for name, r in cols:
            v = fmt(r, key) if key in r or callable(key) else "—"
            if check and name.startswith(("dev-chosen", "study")):
                v += _goal(check(r))
            cells.append(v)
        rows.append(f"| {label} | {goal} | " + " | ".join(cells) + " |")

    tf_test = tf["test_auroc"]
    row("AUROC (short dev)", "", "dev_auroc")
    row("AUROC (short test) [95% pair-bootstrap CI]", f"≥ 0.90 and ≥ TF-IDF+0.03 = {tf_test + 0.03:.3f}", "test_auroc",
        check=lambda r: r["test_auroc"] >= 0.90 and r["test_auroc"] >= tf_test + 0.03)
    row("AUROC (short test, minimal pairs)", "≥ 0.85", "minimal_test_auroc", check=lambda r: r["minimal_test_auroc"] >= 0.85)
    row("AUROC (short test, lexically controlled)", "", "lexical_test_auroc")
    row("LOSO mean AUROC (4 scenarios' train → 5th's test)", "≥ 0.80", "loso_test_auroc_mean",
        check=lambda r: r["loso_test_auroc_mean"] >= 0.80)
    for a in AXES + ("all_axes",):
        def fmt(r, k, a=a):
            c = r["confound_heldout"][a]
            return _ci(c["auroc"], c["ci"])
        chk = (lambda r, a=a: 0.40 <= r["confound_heldout"][a]["auroc"] <= 0.60 and r["confound_heldout"][a]["ci"][0] >= 0.35
               and r["confound_heldout"][a]["ci"][1] <= 0.65) if a != "all_axes" else None
        row(f"confound AUROC, {a} (held-back confound part)", "point in [0.40, 0.60], CI in [0.35, 0.65]" if chk else "",
            "confound_heldout", fmt=fmt, check=chk)
    row("graded Spearman ρ (graded set, all)", "≥ 0.70", "graded_spearman", check=lambda r: r["graded_spearman"] >= 0.70)
    row("long-form test AUROC, fitted on short train", "≥ 0.85", "longform_test_auroc_short_fit",
        check=lambda r: r["longform_test_auroc_short_fit"] >= 0.85)
    row("short test AUROC, fitted on long-form train", "", "short_test_auroc_longform_fit")
    out = f"## {rec['model_key']}\n\n" + head + cfg + "\n".join(rows) + "\n"
    d = rec["default"]
    out += (f"\nDefault chosen by RULE.md ({d['rule_branch']}; {d['n_eligible']} of {len(rec['candidates_dev'])} candidates eligible): "
            f"dev_short {d['dev_short']:.3f}, dev_long {d['dev_long']:.3f}, confound-train part per axis "
            + ", ".join(f"{a} {d['conf_in'][a]:.2f}" for a in AXES) + ".\n")
    loso = dflt["loso_test_auroc"]
    out += "LOSO per scenario (default): " + ", ".join(f"{k} {v:.2f}" for k, v in loso.items()) + ".\n"
    out += "\n" + sanity_section(rec) + "\n" + best_per_method(rec) + "\n"
    return out


def sanity_section(rec: dict) -> str:
    lines = ["Sanity set (65 texts, never fitted on). Gate and threshold fitted on train/dev only.\n",
             "| | default | study mean diff | TF-IDF | MiniLM |", "|---|---|---|---|---|"]
    sd, ss = rec["reports"]["default"]["sanity"], rec["reports"]["study_mean_diff"]["sanity"]
    B = rec["baselines"]
    lines.append(f"| `cannot_judge` items caught by the gate | {sd['summary']['cannot_judge_items_caught']:.2f} "
                 f"(n={sd['summary']['n_cannot_judge_items']}) | {ss['summary']['cannot_judge_items_caught']:.2f} | — | — |")
    lines.append(f"| hostile + dismissive scored on the task side | {sd['summary']['hostile_dismissive_task_side']:.2f} "
                 f"(n={sd['summary']['n_hostile_dismissive']}) | {ss['summary']['hostile_dismissive_task_side']:.2f} | "
                 f"{B['tfidf_logreg']['sanity']['hostile_dismissive_task_side']:.2f} | {B['minilm_logreg']['sanity']['hostile_dismissive_task_side']:.2f} |")
    lines.append(f"| hostile + dismissive: task side or cannot-judge | {sd['summary']['hostile_dismissive_task_side_or_cannot_judge']:.2f} "
                 f"| {ss['summary']['hostile_dismissive_task_side_or_cannot_judge']:.2f} | — | — |")
    lines.append(f"| warm replies (expected empathic) on the empathic side | {sd['summary']['warm_empathic_side']:.2f} | "
                 f"{ss['summary']['warm_empathic_side']:.2f} | {B['tfidf_logreg']['sanity']['warm_empathic_side']:.2f} | "
                 f"{B['minilm_logreg']['sanity']['warm_empathic_side']:.2f} |")
    lines.append(f"| off-topic: task side or cannot-judge | {sd['summary']['off_topic_cannot_judge_or_task']:.2f} | "
                 f"{ss['summary']['off_topic_cannot_judge_or_task']:.2f} | — | — |")
    fa = sd["gate_false_alarm"]
    lines.append(f"\nGate (default): min tokens {sd['gate']['min_tokens']}, Mahalanobis ≤ {sd['gate']['max_distance']:.1f} "
                 f"(99th pct of short+long dev). False 'cannot judge' on in-distribution texts: short test {fa['short_test']:.2f}, "
                 f"long-form test {fa['longform_test']:.2f}, graded {fa['graded']:.2f}, confounds {fa['confounds']:.2f}.\n")
    lines.append("Per category (default): " + "; ".join(
        f"{c} n={v['n']}: cannot-judge {v['cannot_judge']:.2f}, task side {v['task_side']:.2f}"
        for c, v in sd["per_category"].items()) + ".\n")
    return "\n".join(lines)


def best_per_method(rec: dict) -> str:
    lines = ["Each method at its dev-best layer (by dev_score), test side:\n",
             "| method / pooling | layer | dev short | test [CI] | minimal | LOSO | conf held-out (sent/pol/len/enth) | graded ρ | short→long | long→short |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in rec["reports"].items():
        if not k.startswith("best_dev/"):
            continue
        c = r["confound_heldout"]
        lines.append(f"| {k[9:]} | {r['layer']} | {r['dev_auroc']:.3f} | {_ci(r['test_auroc'], r['test_auroc_ci'])} | "
                     f"{r['minimal_test_auroc']:.3f} | {r['loso_test_auroc_mean']:.3f} | "
                     + "/".join(f"{c[a]['auroc']:.2f}" for a in AXES)
                     + f" | {r['graded_spearman']:.3f} | {r['longform_test_auroc_short_fit']:.3f} | {r['short_test_auroc_longform_fit']:.3f} |")
    return "\n".join(lines) + "\n"


PREAMBLE = """Where each number comes from (all fits on train only; hyperparameters and the default on dev only):
* **short dev / short test**: the short contrastive pairs' own `split` field (200 / 65 / 65 pairs). Test AUROC CIs are
  95% percentile intervals over 1000 pair-bootstrap resamples (both texts of a pair together).
* **minimal / lexically controlled**: the short-test pairs with `minimal: true` / with no cue word (empathy_core.dataset.CUE_RE) on either side.
* **LOSO**: fitted on the short train pairs of 4 scenarios (hyperparameters on their dev pairs; erasers on their
  confound-train items), AUROC on the 5th scenario's short test pairs (13 pairs each); mean of the 5.
* **confound (held-back part)**: the confound controls are split 50/50 by sha256(id), stratified by axis; erasers and the
  default choice only ever see the train part (32 items); the numbers here are on the held-back part (28 items, 7 per
  axis), AUROC of high (1) vs low (0) with a 1000-resample pair-bootstrap CI. 0.5 = tone-blind.
* **graded**: Spearman ρ of the score with the 0/1/2 label over all 120 graded replies (item-bootstrap CI).
* **long-form**: short-train fit scored on the long-form test split (25 pairs); the reverse fits on long-form train
  (60 pairs; hyperparameters on long-form dev) and scores the short test split.
* **baselines**: TF-IDF word 1-2-gram logistic regression and MiniLM (all-MiniLM-L6-v2, the judge's embedding code;
  256-token truncation) logistic regression, C in {0.01..100} on short dev; same splits.
* **sanity**: 65 texts never used in fitting. Threshold = train class-mean midpoint of the probe's projection
  (baselines: log-odds 0). The can't-judge gate is in RULE.md.
"""


def render(models: list[str]) -> str:
    recs = [json.loads((OUT_DIR / f"results_{m}.json").read_text()) for m in models
            if (OUT_DIR / f"results_{m}.json").exists()]
    out = ["# Detection methods and baselines, measured offline (issue 10)\n"]
    notes = OUT_DIR / "NOTES.md"  # hand-written conclusions, kept apart so a rerun does not lose them
    if notes.exists():
        out.append(notes.read_text())
    out.append(PREAMBLE)
    if recs:
        r0 = recs[0]
        out.append(f"Data: staging/data-v2, sha256 {r0['data_sha256'][:16]}…; counts {json.dumps(r0['counts'])}.\n")
        tm = r0["tone_markers_auroc"]
        out.append("Bag-of-words data check (all short pairs; AUROC of each marker-category count as a label predictor, "
                   "0.5 = uninformative): " + ", ".join(f"{k} {v:.3f}" for k, v in tm["pairs"].items())
                   + ". Long-form: " + ", ".join(f"{k} {v:.3f}" for k, v in tm["longform"].items()) + ".\n")
    for r in recs:
        out.append(model_section(r))
    return "\n".join(out)


if __name__ == "__main__":
    (OUT_DIR / "REPORT.md").write_text(render(sys.argv[1:]))
