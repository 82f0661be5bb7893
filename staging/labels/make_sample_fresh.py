"""The fresh batch (planned as batch5 in session 7, now batch6): a test of the empathic call on sweep generations
nobody has read.

Written, with the rule it tests, before any of these replies was labelled or read:
- The rule: the session-6 pipeline (gate rule chosen by CV inside the label train part, gates fitted there, the
  label judge) with one change, ``t_empathic`` fitted for out-of-fold train precision >= 0.80
  (``validation.fit_call``). Everything is fitted on the train part of batches 1-4 only.
- The pool: every stored sweep generation of the three bundled models whose text is not labelled yet
  (``precomputed/*/steering.json``), plus fresh Qwen generations at seeds 300-303 (``gen_pool5.py``), one copy
  of each text.
- The sample: every pool reply that gets an empathic call (at most 60, drawn at random beyond that), then a random
  draw from the rest of the pool, stratified by model, up to 150 items. Precision is measured on the first group;
  the rest keeps the labellers blind to why an item is there and gives the call's miss rate on the pool.
- The batch is held out whole (``labels.FRESH_BATCHES``) and reported on its own by ``validate-judges``.

    python staging/labels/make_sample_fresh.py /work/staging/s7/pool5_qwen.jsonl staging/labels/batch6

Run once as a dry run (session 7, before labelling): with the rule above the pool of 939 texts (SmolLM2 391, Gemma
397, Qwen 151, the Qwen seeds partly generated) got 1 empathic call (a SmolLM2 reply) and 36 task calls, so a
precision could not be measured on it and the batch was not labelled.
"""
import hashlib
import json
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from empathy_core.core.models import load_model
from empathy_core.study import gates, validation
from empathy_core.study.judges import LabelJudge
from empathy_core.study.labels import LabelledReply, load_labels

N, MAX_POS = 150, 60


def pool(extra):
    known = {x.reply for x in load_labels()}
    out, seen = [], set(known)
    recs = []
    for p in sorted(Path("precomputed").glob("*/steering.json")):
        st = json.loads(p.read_text())
        recs += [{**r, "model": st["model_key"]} for r in st["generations"]]
    recs += [json.loads(x) for x in Path(extra).read_text().splitlines() if x.strip()]
    for r in recs:
        t = r["text"].strip()
        if t and r["text"] not in seen:
            seen.add(r["text"])
            out.append(r)
    return out


def bid(r):
    return hashlib.sha256(f"{r['model']}|{r['scenario']}|{r['layer']}|{r['seed']}|{r['alpha']}|{r['condition']}|"
                          f"{r.get('direction', '')}|{r['text']}".encode()).hexdigest()[:10]


def main(extra, out_prefix, seed=23):
    rng = random.Random(seed)
    labels = load_labels()
    emb = gates.MiniLM()
    judge = LabelJudge(labels)
    models = {}

    def load(k):
        if k not in models:
            models[k] = load_model(k)
        return models[k]

    rows = validation.compute_rows(labels, load=load, embedder=emb, judge=judge)
    train = [r for r in rows if r.item.split == "train"]
    rule = validation.choose_gate_rule(validation.cross_validate_rules(train))
    t = validation.fit_thresholds(train, rule)
    cut = validation.fit_call(train, t)
    print("rule", rule, "cut", cut, flush=True)
    recs = pool(extra)
    items = [LabelledReply(id=bid(r), batch="pool", model=r["model"], scenario=r["scenario"], layer=r["layer"],
                           seed=r["seed"], alpha=r["alpha"], condition=r["condition"], reply=r["text"],
                           label_a="unclear", label_b="unclear", label_c=None, label="unclear", split="pool")
             for r in recs]
    prow = validation.compute_rows(items, load=load, embedder=emb, judge=judge)
    emp, task = validation.calls(prow, t, cut)
    print("pool", len(items), Counter(x.model for x in items), "empathic calls", int(emp.sum()),
          Counter(items[i].model for i in np.flatnonzero(emp)), "task calls", int(task.sum()), flush=True)
    pos = list(np.flatnonzero(emp))
    rng.shuffle(pos)
    pos = pos[:MAX_POS]
    rest = [i for i in range(len(items)) if i not in set(pos)]
    rng.shuffle(rest)
    by_model = {}
    for i in rest:
        by_model.setdefault(items[i].model, []).append(i)
    picked = list(pos)
    while len(picked) < N and any(by_model.values()):
        for m in sorted(by_model):
            if by_model[m] and len(picked) < N:
                picked.append(by_model[m].pop())
    blind, key = [], []
    for i in picked:
        r, x = recs[i], items[i]
        blind.append({"id": x.id, "scenario": x.scenario, "reply": x.reply})
        key.append({"id": x.id, "model": x.model, "scenario": x.scenario, "layer": x.layer, "seed": x.seed,
                    "alpha": x.alpha, "condition": x.condition, "direction": r.get("direction", ""),
                    "called": "empathic" if emp[i] else "task" if task[i] else "none"})
    order = list(range(len(blind)))
    rng.shuffle(order)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in order))
    Path("/work/staging/.keys/" + Path(out_prefix).name + "_key.jsonl").write_text(
        "".join(json.dumps(key[i]) + "\n" for i in order))
    print(len(blind), "items;", Counter(k["called"] for k in key), Counter(k["model"] for k in key))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
