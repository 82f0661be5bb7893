"""Batch 6, step 1 (session 10): fresh Qwen2.5-Coder-0.5B replies told to help, for the pool that the fresh batch is
drawn from. Written before any of these replies was generated or read.

Batch4's added sentence (``make_sample4.INSTRUCTED["instructed_empathic"]``) and sampling settings (96 new tokens,
temperature 0.8, top-p 0.95, no steering), at seeds 600-699 (never used before), every scenario: 500 replies, one
JSON record per line, resumable; two processes (one per core) can share the seeds by range. ``make_sample_fresh.py`` draws batch6 from these together with every unlabelled
stored sweep generation.

    python staging/labels/gen_pool6.py /work/staging/s10/pool6_qwen.jsonl 600 640
    python staging/labels/gen_pool6.py /work/staging/s10/pool6_qwen_b.jsonl 640 670
    python staging/labels/gen_pool6.py /work/staging/s10/pool6_qwen_c.jsonl 670 685
    python staging/labels/gen_pool6.py /work/staging/s10/pool6_qwen_d.jsonl 685 700
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_sample4 import prompt  # noqa: E402

from empathy_core.core.generation import GenerationRequest, side_by_side  # noqa: E402
from empathy_core.core.models import load_model  # noqa: E402
from empathy_core.core.scenarios import SCENARIO_IDS  # noqa: E402

MODEL, COND = "qwen2.5-coder-0.5b", "instructed_empathic"


def main(out, first=600, last=640):
    out = Path(out)
    done = {(r["scenario"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    h = load_model(MODEL)
    with out.open("a") as f:
        for seed in range(first, last):
            for scen in SCENARIO_IDS:
                if (scen, seed) in done:
                    continue
                req = GenerationRequest(prompt(h.tokenizer, scen, COND), alphas=(0.0,), layer=0,
                                        directions=torch.zeros(h.n_layers, h.hidden_size), unit="raw",
                                        max_new_tokens=96, greedy=False, seed=seed, temperature=0.8, top_p=0.95)
                text = side_by_side(h, req).rows[0].text.strip()
                f.write(json.dumps({"model": MODEL, "scenario": scen, "layer": None, "seed": seed, "alpha": 0.0,
                                    "condition": COND, "direction": "", "text": text}) + "\n")
                f.flush()
                print(scen, seed, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:4]))
