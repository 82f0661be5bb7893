"""Repetition of alpha = 0 baselines under candidate generation settings (issue 9).

    python scripts/measure_repetition.py --models qwen2.5-coder-0.5b,smollm2-135m,gemma3-270m --out repetition.json
    python scripts/measure_repetition.py --models smollm2-135m --settings "off,no-repeat 4-gram" --threads 1

For every bundled model and scenario, one greedy and one sampled (seed 0, T = 0.8, top-p 0.95)
baseline of 96 new tokens, through the library's own generation path, under each setting of
``generation.RepetitionGuard`` (applied alike to every row). Reports the mean 4-gram repetition
rate (``judges.repetition_rate``), distinct-2, and how many replies loop (4-gram repetition > 0.2).
"""
import argparse
import json
import time

import torch

from empathy_core.core.generation import GenerationRequest, side_by_side
from empathy_core.core.models import load_model
from empathy_core.core.prompts import render_prompt
from empathy_core.core.scenarios import SCENARIO_IDS
from empathy_core.study.judges import distinct2, repetition_rate

SETTINGS = {"off": (1.0, 0), "penalty 1.1": (1.1, 0), "penalty 1.2": (1.2, 0), "penalty 1.3": (1.3, 0),
            "no-repeat 4-gram": (1.0, 4), "penalty 1.1 + no-repeat 4-gram": (1.1, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="qwen2.5-coder-0.5b,smollm2-135m,gemma3-270m")
    ap.add_argument("--out", default="repetition.json")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names from SETTINGS (default: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in chosen if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {}
    for key in args.models.split(","):
        h = load_model(key)
        zero = torch.zeros(h.n_layers, h.hidden_size)
        for name in chosen:
            pen, ngram = SETTINGS[name]
            t0 = time.perf_counter()
            texts = {"greedy": [], "sampled": []}
            for sc in SCENARIO_IDS:
                for mode in texts:
                    req = GenerationRequest(render_prompt(h.tokenizer, h.is_chat, sc), (0.0,), 0, zero, unit="raw",
                                            max_new_tokens=args.new_tokens, greedy=mode == "greedy", seed=0,
                                            repetition_penalty=pen, no_repeat_ngram=ngram)
                    r = side_by_side(h, req)
                    texts[mode].append(r.rows[0].text)
            for mode, ts in texts.items():
                rep = [repetition_rate(t) for t in ts]
                row = {"repetition_penalty": pen, "no_repeat_ngram": ngram, "mode": mode, "n": len(ts),
                       "mean_repetition4": round(sum(rep) / len(rep), 4),
                       "mean_distinct2": round(sum(distinct2(t) for t in ts) / len(ts), 4),
                       "n_looping": sum(x > 0.2 for x in rep), "texts": ts}
                out[f"{key} | {name} | {mode}"] = row
                print(f"{key:20s} {name:32s} {mode:8s} rep4={row['mean_repetition4']:.3f} "
                      f"d2={row['mean_distinct2']:.3f} looping={row['n_looping']}/{len(ts)}", flush=True)
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        del h
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
