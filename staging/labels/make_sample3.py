"""Batch 3: a blinded sample of the issue-11 evaluation's Qwen generations (steering.json with "evaluation").

Drawn to give the empathic call enough positives to be measured: every prompting reply asked to be empathic, every
report reply at the chosen alpha > 0, and a stratified share of the rest (baselines, alpha < 0, matched random,
prompting asked to be task-focused, and the choose-seeds' alpha > 0 rows at the other layers and directions).
Replies whose text is already labelled, or repeats within the sample, are left out.

    python staging/labels/make_sample3.py precomputed/qwen2.5-coder-0.5b/steering.json staging/labels/batch3
"""
import hashlib
import json
import random
import sys
from pathlib import Path

QUOTA = {"prompt_empathic": 30, "prompt_task": 10, "report_pos": 30, "report_base": 20, "report_neg": 10,
         "report_random": 15, "choose_pos": 25, "choose_base": 10}


def stratum(r, chosen, report_seeds):
    c, a = r["condition"], r["alpha"]
    if c.startswith("prompt_"):
        return c
    where = "report" if r["seed"] in report_seeds else "choose"
    if c == "matched_random":
        return f"{where}_random"
    if where == "report" and (r["direction"], r["layer"]) != (chosen["direction"], chosen["layer"]):
        return None
    return f"{where}_" + ("pos" if a > 0 else "neg" if a < 0 else "base")


def main(path, out_prefix, seed=13):
    rng = random.Random(seed)
    st = json.loads(Path(path).read_text())
    m, ev = st["model_key"], st["evaluation"]
    known = {json.loads(x)["reply"] for x in Path("empathy_core/data/labels/generations.jsonl").read_text().splitlines() if x}
    groups, seen = {}, set(known)
    for r in st["generations"]:
        s = stratum(r, ev["chosen"], set(ev["settings"]["report_seeds"]))
        if s in QUOTA:
            groups.setdefault(s, []).append(r)
    picked = []
    for s, q in QUOTA.items():
        pool = [r for r in groups.get(s, []) if r["text"].strip()]
        rng.shuffle(pool)
        took = 0
        for r in pool:
            if took < q and r["text"] not in seen:
                seen.add(r["text"])
                picked.append(r)
                took += 1
    blind, key = [], []
    for r in picked:
        bid = hashlib.sha256(f"{m}|{r['scenario']}|{r['layer']}|{r['seed']}|{r['alpha']}|{r['condition']}|"
                             f"{r.get('direction', '')}|{r['text']}".encode()).hexdigest()[:10]
        blind.append({"id": bid, "scenario": r["scenario"], "reply": r["text"]})
        key.append({"id": bid, "model": m, "scenario": r["scenario"], "layer": r["layer"], "seed": r["seed"],
                    "alpha": r["alpha"], "condition": r["condition"], "direction": r.get("direction", "")})
    order = list(range(len(blind)))
    rng.shuffle(order)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in order))
    Path("/work/staging/.keys/" + Path(out_prefix).name + "_key.jsonl").write_text("".join(json.dumps(key[i]) + "\n" for i in order))
    print(len(blind), "items")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
