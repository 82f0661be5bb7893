"""Batch 7, step 1 (session 11): the unsteered Qwen2.5-Coder-0.5B baselines that pair with batch6's replies told to
help, so that the *success call* itself (``controls.success``: a task call on the baseline, an empathic call on the
other reply of the same (scenario, seed), and a judge move beyond the seed-noise band) can fire and be checked
against blind labels. Written before any of these replies was generated or read.

Why: the success call never fired on a steered reply (0 on 33 labelled (baseline, steered) pairs, 0 on the stored
sweeps), so its precision, which issue 11 names, could not be measured. The replies told to help (``gen_pool6.py``,
seeds 600-699) are where the empathic call fires; their baselines are the scenario's own prompt
(``sweep_eval.render_for``, no instruction, no steering) with the sweep's sampling settings (96 new tokens,
temperature 0.8, top-p 0.95, Qwen's repetition guard off as in its steering.json) at the same seeds. This is the
prompting comparison of the steering evaluation with the strongest prompt there is, so the pairs measure the call's
precision where it can fire, not how often steering succeeds.

    python staging/labels/gen_pool7.py staging/labels/pools/pool7_qwen_base_a.jsonl 600 650
    python staging/labels/gen_pool7.py staging/labels/pools/pool7_qwen_base_b.jsonl 650 700

Resumable (one JSON record per line, condition ``baseline``, alpha 0, layer None).
"""
import json
import sys
from pathlib import Path

import torch

from empathy_core.core.generation import GenerationRequest, side_by_side
from empathy_core.core.models import load_model
from empathy_core.core.scenarios import SCENARIO_IDS
from empathy_core.study.sweep_eval import render_for

MODEL, COND = "qwen2.5-coder-0.5b", "baseline"


def main(out, first=600, last=650):
    out = Path(out)
    done = {(r["scenario"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    h = load_model(MODEL)
    with out.open("a") as f:
        for seed in range(first, last):
            for scen in SCENARIO_IDS:
                if (scen, seed) in done:
                    continue
                req = GenerationRequest(render_for(h, scen), alphas=(0.0,), layer=0,
                                        directions=torch.zeros(h.n_layers, h.hidden_size), unit="raw",
                                        max_new_tokens=96, greedy=False, seed=seed, temperature=0.8, top_p=0.95)
                text = side_by_side(h, req).rows[0].text.strip()
                f.write(json.dumps({"model": MODEL, "scenario": scen, "layer": None, "seed": seed, "alpha": 0.0,
                                    "condition": COND, "direction": "", "text": text}) + "\n")
                f.flush()
                print(scen, seed, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:4]))
