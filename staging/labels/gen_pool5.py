"""Batch 5, step 1: fresh sweep generations of Qwen (seeds never generated before), for a fresh test of the call.

The sweep's own settings and code (``sweep_eval.run_eval_cell``, ``sweep.run_prompting``): the detection direction at
the chosen layer (1) at alpha 0, 0.1, 0.2, 0.3 with the matched random direction, the same at layer 12 (the best
detection layer) at alpha 0.2 and 0.3, and the prompting baseline; seeds 300-303, every scenario. Written to a JSONL
pool (one record per line) that ``make_sample5.py`` draws from together with the unlabelled stored generations.

    python staging/labels/gen_pool5.py /work/staging/s7/pool5_qwen.jsonl
"""
import json
import sys
from pathlib import Path

from empathy_core.core.models import generation_defaults, load_model
from empathy_core.store import load_probe
from empathy_core.study.sweep import SweepSettings, run_prompting
from empathy_core.study.sweep_eval import run_eval_cell

KEY = "qwen2.5-coder-0.5b"
SEEDS = (300, 301, 302, 303)


def main(out):
    h = load_model(KEY)
    probe = load_probe(KEY)
    dirs = probe.detection.directions
    s = SweepSettings(**generation_defaults(KEY))
    out = Path(out)
    done = {(r["scenario"], r["seed"], r["layer"], r["condition"]) for r in map(json.loads, out.read_text().splitlines())} \
        if out.exists() else set()
    with out.open("a") as f:
        for seed in SEEDS:
            for scen in s.scenarios:
                jobs = [((scen, seed, 1, "probe"), lambda: run_eval_cell(h, dirs, probe.mean_norms, scen, 1, seed,
                                                                         (0.0, 0.1, 0.2, 0.3), s, tag="detection")),
                        ((scen, seed, 12, "probe"), lambda: run_eval_cell(h, dirs, probe.mean_norms, scen, 12, seed,
                                                                          (0.2, 0.3), s, matched_random=False,
                                                                          tag="detection")),
                        ((scen, seed, None, "prompt_empathic"), lambda: run_prompting(h, scen, seed, s))]
                for k, make in jobs:
                    if k in done:
                        continue
                    for r in make():
                        f.write(json.dumps({**r.to_dict(), "model": KEY}) + "\n")
                    f.flush()
                    print(k, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
