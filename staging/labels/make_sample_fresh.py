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

Run for real in session 10, with the rule as committed in session 8 (``precomputed/judge_validation.json``: gate rule
``joint_f1``, fitted on the train part of batches 1-5, ``t_empathic`` 1.257, ``t_task`` -1.667; the script stops if
its refit differs), unchanged from here on. The pool: the stored sweep generations as above (now those of the
probes fitted on the third data round), session 7's 220 fresh Qwen sweep generations (seeds 300-303, on the probe of
that time), and 500 fresh Qwen replies told to help (``gen_pool6.py``, seeds 600-699), since the sweep's own replies almost never get an empathic call; the labels' README reports the
call's precision on the sweep's own replies and on the replies told to help separately. The sample: every empathic
call in the pool (at most ``MAX_POS``), then a random draw from the rest, stratified by model, up to ``N`` items.

    python staging/labels/make_sample_fresh.py staging/labels/batch6 staging/labels/pools/pool5_qwen.jsonl \
        staging/labels/pools/pool6_qwen*.jsonl --rows /work/staging/s10/rows.json

(the generated pools are kept in ``staging/labels/pools/``; ``--rows`` reuses the labelled rows' scores dumped by
``validation.compute_rows``, only to save their perplexities). The key was kept outside the repository until the
labels were in, then copied to ``batch6_key.jsonl``; its ``called`` field is the frozen call's verdict.
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


def pool(extras):
    known = {x.reply for x in load_labels()}
    out, seen = [], set(known)
    recs = []
    for p in sorted(Path("precomputed").glob("*/steering.json")):
        st = json.loads(p.read_text())
        recs += [{**r, "model": st["model_key"]} for r in st["generations"]]
    for extra in extras:
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


def cached_rows(path):
    """The labelled rows as scored before (``validation.compute_rows``, dumped to JSON), to save their perplexities."""
    return [validation.Row(LabelledReply(**r["item"]), r["features"], r["perplexity"], r["topic"], r["empathy"],
                           r["empathy_pairs"]) for r in json.loads(Path(path).read_text())]


def pool_rows(items, load, emb, judge, t, cut):
    """``validation.compute_rows`` for the pool, minus what cannot change a call: the reference perplexity is
    computed only for replies that pass every other gate and whose judge score reaches a call's cut-off (the rest
    get an infinite one, which no call passes), and the contrastive-pair judge is not scored."""
    replies, scens = [x.reply for x in items], [x.scenario for x in items]
    feats = [gates.text_features(r, s) for r, s in zip(replies, scens)]
    topic = emb.topic_similarity(replies, scens)
    score = judge.score(replies)
    cand = [i for i in range(len(items)) if gates.verdicts(feats[i], 1.0, float(topic[i]), t).passes
            and (score[i] >= cut["t_empathic"] or score[i] <= cut["t_task"])]
    ppl = [float("inf")] * len(items)
    for ref in sorted({gates.reference_model(items[i].model) for i in cand}):
        idx = [i for i in cand if gates.reference_model(items[i].model) == ref]
        for i, p in zip(idx, gates.reference_perplexities(load(ref), [replies[i] for i in idx],
                                                           [scens[i] for i in idx])):
            ppl[i] = p
    print("pool", len(items), "perplexity computed for", len(cand), flush=True)
    return [validation.Row(x, feats[i], ppl[i], float(topic[i]), float(score[i])) for i, x in enumerate(items)]


def main(out_prefix, extras, rows_json=None, seed=23):
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
    train = [r for r in rows if r.item.split == "train"]
    rule = validation.choose_gate_rule(validation.cross_validate_rules(train))
    t = validation.fit_thresholds(train, rule)
    cut = validation.fit_call(train, t)
    print("rule", rule, "cut", cut, flush=True)
    committed = json.loads(Path("precomputed/judge_validation.json").read_text())
    assert rule == committed["gate_rule"] and cut == committed["cutoffs"] and t.to_dict() == committed["thresholds"], \
        "the refit rule differs from the committed one"
    recs = pool(extras)
    items = [LabelledReply(id=bid(r), batch="pool", model=r["model"], scenario=r["scenario"], layer=r["layer"],
                           seed=r["seed"], alpha=r["alpha"], condition=r["condition"], reply=r["text"],
                           label_a="unclear", label_b="unclear", label_c=None, label="unclear", split="pool")
             for r in recs]
    prow = pool_rows(items, load, emb, judge, t, cut)
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
    args = sys.argv[1:]
    rows_json = None
    if "--rows" in args:
        k = args.index("--rows")
        rows_json = args[k + 1]
        del args[k: k + 2]
    main(args[0], args[1:], rows_json)
