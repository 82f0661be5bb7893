"""Batch 5: more labelled empathic choices for the empathic call to learn from (half train, half test).

Written, with its plan, before any of these replies was generated or read (session 8). Why: the call's cut-off is
fitted for out-of-fold train precision >= 0.80 (session 7's rule, unchanged), and with 12 empathic choices in the
label train part the judge's top scores are not clean enough to reach it. Two strata, in one shuffled file:
- **told to help** (70): Qwen2.5-Coder-0.5B with batch4's added sentence (``make_sample4.INSTRUCTED``, condition
  ``instructed_empathic``), at new seeds 514-527, 14 per scenario, batch4's sampling settings (96 new tokens,
  temperature 0.8, top-p 0.95, no steering). In batch4 about a quarter of such replies chose to help.
- **the judge's top sweep replies** (50): from every stored sweep generation of the three bundled models not yet
  labelled (``precomputed/*/steering.json``, one copy of each text), the 40 that the label judge (fitted on
  batches 1-4's train part) scores as most empathic, and 10 more at random, so that the labellers cannot tell why an
  item is there. These are the judge's likeliest false positives: what a precise call must learn to reject.
Batch5 is split like batches 1-4 (half test by sha256 of the id, within each model), so its test half is also new
held-out data. The fresh held-out batch that session 7 planned (held out whole, ``labels.FRESH_BATCHES``) is now
called batch6; its dry-run sampler is ``make_sample_fresh.py``.

    python staging/labels/make_sample5.py staging/labels/batch5
"""
import hashlib
import json
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_sample4 import prompt  # noqa: E402  (the scenario's prompt plus the sentence that states the choice)

from empathy_core.core.generation import GenerationRequest, side_by_side  # noqa: E402
from empathy_core.core.models import load_model  # noqa: E402
from empathy_core.core.scenarios import SCENARIO_IDS  # noqa: E402
from empathy_core.study.judges import LabelJudge  # noqa: E402
from empathy_core.study.labels import load_labels  # noqa: E402

MODEL, COND, SEEDS = "qwen2.5-coder-0.5b", "instructed_empathic", range(514, 528)
TOP, RANDOM = 40, 10


def bid(model, scen, layer, seed, alpha, cond, direction, text):
    return hashlib.sha256(f"{model}|{scen}|{layer}|{seed}|{alpha}|{cond}|{direction}|{text}".encode()).hexdigest()[:10]


def told(known):
    h = load_model(MODEL)
    out = []
    for scen in SCENARIO_IDS:
        for seed in SEEDS:
            req = GenerationRequest(prompt(h.tokenizer, scen, COND), alphas=(0.0,), layer=0,
                                    directions=torch.zeros(h.n_layers, h.hidden_size), unit="raw",
                                    max_new_tokens=96, greedy=False, seed=seed, temperature=0.8, top_p=0.95)
            text = side_by_side(h, req).rows[0].text.strip()
            if not text or text in known:
                continue
            known.add(text)
            out.append({"model": MODEL, "scenario": scen, "layer": None, "seed": seed, "alpha": 0.0, "condition": COND,
                        "direction": "", "text": text})
            print(scen, seed, repr(text[:80]), flush=True)
    return out


def sweep_pool(known):
    out = []
    for p in sorted(Path("precomputed").glob("*/steering.json")):
        st = json.loads(p.read_text())
        for r in st["generations"]:
            t = r["text"].strip()
            if t and t not in known:
                known.add(t)
                out.append({"model": st["model_key"], "scenario": r["scenario"], "layer": r["layer"], "seed": r["seed"],
                            "alpha": r["alpha"], "condition": r["condition"], "direction": r.get("direction", ""),
                            "text": t})
    return out


def main(out_prefix, seed=29):
    rng = random.Random(seed)
    labels = load_labels()
    known = {x.reply.strip() for x in labels}
    pool = sweep_pool(known)
    judge = LabelJudge(labels)
    scores = np.asarray(judge.score([r["text"] for r in pool]), dtype=float)
    order = list(np.argsort(-scores))
    top = order[:TOP]
    rest = order[TOP:]
    rng.shuffle(rest)
    picked = [pool[i] for i in top] + [pool[i] for i in rest[:RANDOM]]
    print("pool", len(pool), Counter(r["model"] for r in pool), "top scores", np.round(scores[top][[0, -1]], 3), flush=True)
    picked += told(known)
    blind, key = [], []
    for r in picked:
        i = bid(r["model"], r["scenario"], r["layer"], r["seed"], r["alpha"], r["condition"], r["direction"], r["text"])
        blind.append({"id": i, "scenario": r["scenario"], "reply": r["text"]})
        key.append({"id": i, **{k: r[k] for k in ("model", "scenario", "layer", "seed", "alpha", "condition", "direction")},
                    "drawn_as": "told" if r["condition"] == COND else "judge_top" if r in picked[:TOP] else "random"})
    idx = list(range(len(blind)))
    rng.shuffle(idx)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in idx))
    Path("/work/staging/.keys/" + Path(out_prefix).name + "_key.jsonl").write_text(
        "".join(json.dumps(key[i]) + "\n" for i in idx))
    print(len(blind), "items;", Counter(k["drawn_as"] for k in key), Counter(k["model"] for k in key))


if __name__ == "__main__":
    main(sys.argv[1])
