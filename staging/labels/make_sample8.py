"""Batch 8, step 2 (session 12): the blind file, its key and the pairing file, from ``gen_pool8.py``'s replies.

The plan is ``gen_pool8.py``'s docstring (committed before any reply was generated). For each of batch7's 57 Qwen
baselines labelled ``task_choice`` this pairs six replies of the same scenario: the chosen push and its matched random
direction, the strongest push and its matched random direction (all at the baseline's seed), the unsteered reply at
the next seed (seed-only; 699 takes 600) and the reply told to help at the baseline's seed (batch6's pool).

Every reply whose exact text is already labelled (same model and scenario) keeps that label; every other distinct
text becomes one blind item (a text used twice, for instance a push that left the baseline unchanged in both its
probe and random rows, is one item). The pairing file (``pushes.jsonl``: scenario, seed, push, condition, baseline
id, reply id) is what ``validation.labelled_pushes`` reads; it and the key stay outside the repository, with the
key, until the labels are in.

    python staging/labels/make_sample8.py /work/blind/batch8 staging/labels/pools/pool8_qwen_*.jsonl
"""
import json
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_pool8 import MODEL, task_baselines  # noqa: E402
from make_sample_fresh import bid  # noqa: E402

from empathy_core.study.labels import load_labels  # noqa: E402

POOL7 = ("staging/labels/pools/pool7_qwen_base_a.jsonl", "staging/labels/pools/pool7_qwen_base_b.jsonl")
POOL6 = tuple(f"staging/labels/pools/pool6_qwen{s}.jsonl" for s in ("", "_b", "_c", "_d"))


def _first_text(files, condition):
    out = {}
    for p in files:
        for r in map(json.loads, Path(p).read_text().splitlines()):
            if r["condition"] == condition:
                out.setdefault((r["scenario"], r["seed"]), r["text"].strip())
    return out


def main(out_prefix, pools, seed=31):
    labels = load_labels()
    known = {}
    for x in labels:
        known.setdefault((x.model, x.scenario, x.reply.strip()), x.id)
    base_id = {(x.scenario, x.seed): x.id for x in labels
               if x.batch == "batch7" and x.condition == "baseline" and x.label == "task_choice"}
    tb = task_baselines()
    assert len(tb) == len(base_id) == 57, (len(tb), len(base_id))
    p7, p6 = _first_text(POOL7, "baseline"), _first_text(POOL6, "instructed_empathic")
    p8 = {}
    for p in pools:
        for r in map(json.loads, Path(p).read_text().splitlines()):
            p8[(r["push"], r["condition"], r["alpha"] != 0, r["scenario"], r["seed"])] = r
    new, uses = {}, []
    for sc, sd in tb:
        recs = []
        for push in ("chosen", "strongest"):
            zero = p8[(push, "probe", False, sc, sd)]
            assert zero["text"].strip() == p7[(sc, sd)], f"alpha = 0 does not reproduce the baseline: {sc} {sd}"
            for cond in ("probe", "matched_random"):
                r = p8[(push, cond, True, sc, sd)]
                recs.append((push, {**r, "model": MODEL}))
        nxt = sd + 1 if sd < 699 else 600
        recs.append(("seed_only", {"model": MODEL, "scenario": sc, "layer": None, "seed": nxt, "alpha": 0.0,
                                   "condition": "baseline", "direction": "", "text": p7[(sc, nxt)]}))
        recs.append(("told_to_help", {"model": MODEL, "scenario": sc, "layer": None, "seed": sd, "alpha": 0.0,
                                      "condition": "instructed_empathic", "direction": "", "text": p6[(sc, sd)]}))
        for push, r in recs:
            text = r["text"].strip()
            k = (MODEL, sc, text)
            if k in known:
                rid, fresh = known[k], False
            else:
                if k not in new:
                    r = {**r, "text": text}
                    new[k] = {"id": bid(r), **{f: r[f] for f in ("model", "scenario", "layer", "seed", "alpha",
                                                                 "condition", "direction")}, "reply": text}
                rid, fresh = new[k]["id"], True
            uses.append({"scenario": sc, "seed": sd, "push": push, "condition": r["condition"],
                         "direction": r.get("direction", ""), "layer": r["layer"], "alpha": r["alpha"],
                         "baseline_id": base_id[(sc, sd)], "reply_id": rid, "new_label": fresh})
    items = list(new.values())
    assert len({x["id"] for x in items}) == len(items)
    random.Random(seed).shuffle(items)
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out_prefix}_blind.jsonl").write_text("".join(
        json.dumps({"id": x["id"], "scenario": x["scenario"], "reply": x["reply"]}) + "\n" for x in items))
    keys = Path("/work/staging/.keys")
    keys.mkdir(parents=True, exist_ok=True)
    (keys / f"{out.name}_key.jsonl").write_text("".join(
        json.dumps({k: v for k, v in x.items() if k != "reply"}) + "\n" for x in items))
    (keys / "pushes.jsonl").write_text("".join(json.dumps(u) + "\n" for u in uses))
    print(len(items), "blind items;", len(uses), "pairings;", Counter((u["push"], u["condition"], u["new_label"])
                                                                      for u in uses))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
