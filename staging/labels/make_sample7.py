"""Batch 7 (session 11): a fresh blind test of the **success call** itself, on (baseline, reply told to help) pairs.

Written, with the rule it tests, before any baseline of the pool was read (``gen_pool7.py`` was running):
- The rule: the one committed in session 8 and tested by batch6 (``precomputed/judge_validation.json``: gate rule
  ``joint_f1``, thresholds and the label judge fitted on batches 1-5's train part, ``t_empathic`` 1.257, ``t_task``
  -1.667). The script refits it and stops if anything differs. Nothing is refitted after the labels come in.
- The success call (``controls.success``, alpha > 0): a task call on the baseline, an empathic call on the other
  reply of the same (model, scenario, seed), and a judge move above the model's seed-noise band. Both calls at once
  mean a move of at least ``t_empathic - t_task`` = 2.92, above every bundled model's band (Qwen 1.73), so on these
  pairs the call is the two calls together (``tests/test_validation_real.py`` checks that against the stored bands).
- The pairs: the 451 distinct Qwen2.5-Coder-0.5B replies told to help of the batch6 pool (``gen_pool6.py``, seeds
  600-699; their 31 empathic calls are all in batch6, labelled blind), each with the unsteered baseline of the same
  scenario and seed (``gen_pool7.py``: the scenario's own prompt, the sweep's sampling settings).
- The sample (one shuffled blind file, at most ``N`` items): every baseline that gets a task call (at most
  ``MAX_TASK``, drawn at random beyond that), every baseline paired with one of batch6's empathic calls (so the
  pairs the call could have made are labelled whole, for its recall), then a random draw from the other baselines.
  Baselines whose text repeats an earlier baseline or a labelled reply are left out (one copy of each text).
- What is reported (``validation.prompted_pairs``, batches 6 and 7 only): precision and recall of the success call on
  the same-seed pairs whose two replies are labelled; truth is a ``task_choice`` label on the baseline and an
  ``empathic_choice`` label on the reply told to help. Beside it, the same call on every (baseline, reply told to
  help) pair of the same scenario whatever the seeds (different prompts make the two replies of one seed independent
  draws, so the pairing by seed carries no information), with a two-way bootstrap over both replies.
- Batch7 is held out whole (``labels.FRESH_BATCHES``).

    python staging/labels/make_sample7.py staging/labels/batch7 staging/labels/pools/pool7_qwen_base_*.jsonl \
        [--rows ROWS.json]

Changed after the plan above, before any label: the refit on this machine differed from the committed numbers by
float noise (1e-6 on two thresholds and the cut-offs), so the script checks the refit to 1e-4 and calls with the
committed numbers. Corrected after the labels (a reviewer's read): the remark that one seed's two replies are
independent draws is wrong (the same random numbers make them share their opening words), and the any-seed figure is
the two calls' precisions multiplied within scenario, so it is reported as that, not as independent evidence.
"""
import json
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_sample_fresh import bid, cached_rows, pool_rows  # noqa: E402

from empathy_core.core.models import load_model  # noqa: E402
from empathy_core.study import gates, validation  # noqa: E402
from empathy_core.study.judges import LabelJudge  # noqa: E402
from empathy_core.study.labels import LabelledReply, load_labels  # noqa: E402

N, MAX_TASK = 150, 100


def main(out_prefix, pools, rows_json=None, seed=29):
    rng = random.Random(seed)
    labels = load_labels()
    emb = gates.MiniLM()
    judge = LabelJudge(labels)
    models = {}

    def load(k):
        if k not in models:
            models[k] = load_model(k)
        return models[k]

    rows = cached_rows(rows_json) if rows_json else validation.compute_rows(labels, load=load, embedder=emb,
                                                                              judge=judge)
    if not rows_json:
        Path("/work/staging/s11/rows.json").write_text(json.dumps([
            {"item": r.item.__dict__, "features": r.features, "perplexity": r.perplexity, "topic": r.topic,
             "empathy": r.empathy, "empathy_pairs": r.empathy_pairs} for r in rows]))
    train = [r for r in rows if r.item.split == "train"]
    rule = validation.choose_gate_rule(validation.cross_validate_rules(train))
    t = validation.fit_thresholds(train, rule)
    cut = validation.fit_call(train, t)
    committed = json.loads(Path("precomputed/judge_validation.json").read_text())
    close = all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in
                [(cut[k], committed["cutoffs"][k]) for k in cut] + [(v, committed["thresholds"][k])
                                                                     for k, v in t.to_dict().items()])
    assert rule == committed["gate_rule"] and close, "the refit rule differs from the committed one"
    # the refit agrees up to float noise of another machine (1e-6); the calls use the committed numbers themselves
    t, cut = validation.GateThresholds.from_dict(committed["thresholds"]), committed["cutoffs"]
    known = {x.reply for x in labels}
    recs, seen = [], set(known)
    for p in pools:
        for r in map(json.loads, Path(p).read_text().splitlines()):
            if r["text"].strip() and r["text"] not in seen:
                seen.add(r["text"])
                recs.append(r)
    items = [LabelledReply(id=bid(r), batch="pool", model=r["model"], scenario=r["scenario"], layer=r["layer"],
                           seed=r["seed"], alpha=r["alpha"], condition=r["condition"], reply=r["text"],
                           label_a="unclear", label_b="unclear", label_c=None, label="unclear", split="pool")
             for r in recs]
    prow = pool_rows(items, load, emb, judge, t, cut)
    emp, task = validation.calls(prow, t, cut)
    b6 = [json.loads(x) for x in Path("staging/labels/batch6_key.jsonl").read_text().splitlines()]
    partners = {(k["scenario"], k["seed"]) for k in b6 if k["condition"] == "instructed_empathic"
                and k["called"] == "empathic"}
    print("pool", len(items), "of", sum(1 for p in pools for _ in Path(p).read_text().splitlines()),
          "task calls", int(task.sum()), "empathic calls", int(emp.sum()), "batch6 empathic calls", len(partners),
          flush=True)
    tasks = list(np.flatnonzero(task))
    rng.shuffle(tasks)
    picked = tasks[:MAX_TASK]
    picked += [i for i, x in enumerate(items) if (x.scenario, x.seed) in partners and i not in set(picked)]
    rest = [i for i in range(len(items)) if i not in set(picked)]
    rng.shuffle(rest)
    picked += rest[: max(0, N - len(picked))]
    blind, key = [], []
    for i in picked:
        x = items[i]
        pair = (x.scenario, x.seed) in partners
        blind.append({"id": x.id, "scenario": x.scenario, "reply": x.reply})
        key.append({"id": x.id, "model": x.model, "scenario": x.scenario, "layer": x.layer, "seed": x.seed,
                    "alpha": x.alpha, "condition": x.condition, "direction": "",
                    "called": "empathic" if emp[i] else "task" if task[i] else "none",
                    "success_called": bool(pair and task[i])})
    order = list(range(len(blind)))
    rng.shuffle(order)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in order))
    Path("/work/staging/.keys").mkdir(parents=True, exist_ok=True)
    Path("/work/staging/.keys/" + Path(out_prefix).name + "_key.jsonl").write_text(
        "".join(json.dumps(key[i]) + "\n" for i in order))
    print(len(blind), "items;", Counter(k["called"] for k in key), "same-seed success calls",
          sum(k["success_called"] for k in key))


if __name__ == "__main__":
    args = sys.argv[1:]
    rows_json = None
    if "--rows" in args:
        k = args.index("--rows")
        rows_json = args[k + 1]
        del args[k: k + 2]
    main(args[0], args[1:], rows_json)
