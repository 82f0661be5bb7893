"""Batch 8 (session 12): does steering turn task-choice baselines into empathic replies, **by blind labels alone**?

Written, with what it reports, before any reply below was generated or read, except the one cell generated to check
that the alpha = 0 row reproduces the batch7 baseline (noted below).

Why: the steering evaluation's "no effect" rests on the validated calls, and the empathic call finds none of the
sweep's own empathic replies (0 of 9 held out) and fires on only 4 report baselines, so "no effect" was partly "no
effect this call can see". Batch 8 asks the question of issue 11's first goal directly of blind labels, on the
baselines that labels (not a call) say are task choices, and checks the success call on real steered pairs.

- **Baselines:** every batch7 Qwen2.5-Coder-0.5B baseline labelled ``task_choice`` (seeds 600-699, the scenario's own
  prompt, the sweep's sampling settings; ``gen_pool7.py``), 57 of them, labelled blind in session 11.
- **Pushes, at the same scenario and seed** (``sweep_eval.run_eval_cell``: one batched call per cell, the sweep's
  settings, relative alpha, the committed probe file ``precomputed/qwen2.5-coder-0.5b/probes.safetensors``):
  1. ``chosen``: the committed steering choice (detection direction, layer 1, alpha 0.1: the app's default), and the
     matched random direction at the same added norm (``controls.matched_random_direction``, salt 1234).
  2. ``strongest``: the choose-seeds' (seeds 100-101) cell that moves the empathy judge (the stored ensemble) most
     above alpha = 0 among those whose replies pass the coherence gate >= 90% there: the study's mean difference, layer 12, alpha 0.3
     (judge +2.19, coherent 0.9; read from the committed choose-seed generations, no report seed involved), and its
     matched random direction. The committed rule broke a tie of zero successes towards the smallest push, so the
     chosen cell barely moves the judge (+0.21); this one is the strongest push the sweep's range allows.
  3. ``seed_only``: the batch7 pool's unsteered reply of the same scenario at the next seed (599 -> 600 wraps: seed
     699 takes 600).
  4. ``told_to_help``: the batch6 pool's reply told to help (``gen_pool6.py``) of the same scenario and seed: the
     prompting comparison with the strongest prompt, as a positive control that the labels can see a change.
  The alpha = 0 row of each batched call is kept to check it reproduces the batch7 baseline text (it did, on the
  one cell tried before this plan was committed). A steered reply whose text equals a labelled text keeps that label.
- **Labels:** every reply above not labelled already, shuffled into one blind file with the scenario only, two
  independent helper passes and a third read of disagreements (``LABEL_TASK.md``); replies labelled in earlier batches
  keep their labels. Batch8 is held out whole (``labels.FRESH_BATCHES``); nothing is fitted on it.
- **Reported** (per push): the share of the 57 task-choice baselines whose steered reply is labelled
  ``empathic_choice`` (the label excludes incoherent, off-topic, echo and unclear replies), with a Wilson interval
  and a bootstrap over scenarios; beside it each control's share; the label mix of each push; and the success call
  (the frozen session-8 rule) on each (baseline, steered) pair: how often it fires, how often it is right.
  Issue 11's goals read on labels: push >= 30%, controls <= 10%, push's lower bound above matched random's upper.

    python staging/labels/gen_pool8.py staging/labels/pools/pool8_qwen_a.jsonl 0 2
    python staging/labels/gen_pool8.py staging/labels/pools/pool8_qwen_b.jsonl 1 2

(baselines taken round-robin: part ``i`` of ``n``). Resumable (one JSON record per line).

Changed after the labels were in, on a reviewer's read (session 12): the plan's "bootstrap over scenarios" had not been
implemented (the report gave a bootstrap over (scenario, seed) baselines widened to Wilson); it was added
(``ci_scenarios``). "Coherent" in the strongest push's rule means the coherence gate (repetition and perplexity), not
every gate (none of that cell's 10 choose-seed replies passed every gate), so the push is now named "the strongest push
passing the coherence gate", and the report adds its readable share by the labels and a test of whether it moves
choices at all (task choices left against its matched random direction's, Fisher's exact test). No label, pairing or
reply changed.
"""
import json
import sys
from pathlib import Path

from empathy_core.core.models import generation_defaults, load_model
from empathy_core.store import load_probe
from empathy_core.study.labels import load_labels
from empathy_core.study.sweep import SweepSettings
from empathy_core.study.sweep_eval import run_eval_cell

MODEL = "qwen2.5-coder-0.5b"
PUSHES = {"chosen": ("detection", 1, 0.1), "strongest": ("mean_diff", 12, 0.3)}


def strongest_cell(path: str = "precomputed/qwen2.5-coder-0.5b/steering.json") -> tuple[str, int, float]:
    """The choose-seeds' (direction, layer, alpha > 0) with the largest mean empathy-judge rise over alpha = 0 among
    cells whose replies pass the coherence gates >= 90% (read from the committed choose-seed generations only)."""
    st = json.loads(Path(path).read_text())
    choose = set(st["evaluation"]["settings"]["choose_seeds"])
    cells: dict = {}
    for g in st["generations"]:
        if g["seed"] in choose and g["condition"] == "probe":
            cells.setdefault((g["direction"], g["layer"], g["alpha"]), []).append(g)

    def mean(xs):
        return sum(xs) / len(xs)
    best = None
    for (d, layer, a), gs in cells.items():
        if a <= 0 or mean([bool(g["gates"]["coherent"]) for g in gs]) < 0.9:
            continue
        rise = mean([g["judges"]["ensemble"] for g in gs]) - mean([g["judges"]["ensemble"] for g in cells[(d, layer, 0.0)]])
        if best is None or rise > best[0]:
            best = (rise, (d, layer, a))
    return best[1]


def task_baselines() -> list[tuple[str, int]]:
    """Batch7's baselines labelled task_choice, as (scenario, seed), sorted."""
    return sorted({(r.scenario, r.seed) for r in load_labels()
                   if r.batch == "batch7" and r.condition == "baseline" and r.label == "task_choice"})


def main(out: str, part: int = 0, parts: int = 1) -> None:
    path = Path(out)
    done = {(r["push"], r["scenario"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())} \
        if path.exists() else set()
    assert strongest_cell() == PUSHES["strongest"], strongest_cell()
    h = load_model(MODEL)
    probe = load_probe(MODEL)
    dirs = {"mean_diff": probe.directions, "detection": probe.detection.directions}
    s = SweepSettings(**generation_defaults(MODEL))
    todo = task_baselines()[part::parts]
    with path.open("a") as f:
        for scen, seed in todo:
            for push, (name, layer, alpha) in PUSHES.items():
                if (push, scen, seed) in done:
                    continue
                recs = run_eval_cell(h, dirs[name], probe.mean_norms, scen, layer, seed, (0.0, alpha), s,
                                     matched_random=True, salt=1234, tag=name)
                for r in recs:
                    f.write(json.dumps({"push": push, "model": MODEL, **r.to_dict()}) + "\n")
                f.flush()
                print(push, scen, seed, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:4]))
