"""Batch 4: real replies of the bundled models told which choice to make, to give the empathic call positives.

The sweep's models almost never choose the empathic action on their own (9 of 440 labelled replies in batches
1-3), so the empathic call's precision could not be measured. Here each model gets the scenario's own prompt with
one more sentence in the system message that states the choice (``INSTRUCTED``), and generates with the sweep's
sampling settings (96 new tokens, temperature 0.8, top-p 0.95, one seed per reply, no steering). These replies are
a stratum of their own (conditions ``instructed_empathic`` / ``instructed_task``); `validate-judges` reports the
call's precision with and without them.

    python staging/labels/make_sample4.py staging/labels/batch4
"""
import hashlib
import json
import random
import sys
from pathlib import Path

import torch

from empathy_core.core.generation import GenerationRequest, side_by_side
from empathy_core.core.models import load_model
from empathy_core.core.prompts import chat_messages
from empathy_core.core.scenarios import SCENARIO_IDS

INSTRUCTED = {
    "instructed_empathic": "You have decided to stop and help the other player who is struggling, even though it "
                           "costs you the game. Say what you do for them.",
    "instructed_task": "You have decided to ignore the other players and keep working on your objective. "
                       "Say what you do.",
}
# (model, condition, seeds per scenario)
PLAN = [("qwen2.5-coder-0.5b", "instructed_empathic", 14), ("qwen2.5-coder-0.5b", "instructed_task", 4),
        ("smollm2-135m", "instructed_empathic", 4)]


def prompt(tok, scenario, condition):
    msgs = chat_messages(scenario)
    msgs[0] = {"role": "system", "content": msgs[0]["content"] + " " + INSTRUCTED[condition]}
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def main(out_prefix, seed=17):
    rng = random.Random(seed)
    blind, key = [], []
    for model, cond, n_seeds in PLAN:
        h = load_model(model)
        for scen in SCENARIO_IDS:
            for s in range(n_seeds):
                seed_ = 500 + s
                req = GenerationRequest(prompt(h.tokenizer, scen, cond), alphas=(0.0,), layer=0,
                                        directions=torch.zeros(h.n_layers, h.hidden_size), unit="raw",
                                        max_new_tokens=96, greedy=False, seed=seed_, temperature=0.8, top_p=0.95)
                text = side_by_side(h, req).rows[0].text.strip()
                if not text:
                    continue
                bid = hashlib.sha256(f"{model}|{scen}|None|{seed_}|0.0|{cond}||{text}".encode()).hexdigest()[:10]
                blind.append({"id": bid, "scenario": scen, "reply": text})
                key.append({"id": bid, "model": model, "scenario": scen, "layer": None, "seed": seed_, "alpha": 0.0,
                            "condition": cond, "direction": ""})
                print(model, cond, scen, seed_, repr(text[:80]), flush=True)
    order = list(range(len(blind)))
    rng.shuffle(order)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in order))
    Path("/work/staging/.keys/" + Path(out_prefix).name + "_key.jsonl").write_text(
        "".join(json.dumps(key[i]) + "\n" for i in order))
    print(len(blind), "items")


if __name__ == "__main__":
    main(sys.argv[1])
