"""Batch 2: blinded sample of Qwen sweep generations, drawn by cell so that each steered reply's
alpha = 0 baseline (same scenario, layer, seed) is labelled too (pair-level precision)."""
import hashlib, json, random, sys
from pathlib import Path

def main(path, n_cells, out_prefix, seed=12):
    rng = random.Random(seed)
    g = json.load(open(path))["generations"]
    m = json.load(open(path))["model_key"]
    cells = sorted({(r["scenario"], r["layer"], r["seed"]) for r in g if r["condition"] == "probe"})
    chosen = rng.sample(cells, min(n_cells, len(cells)))
    picked = []
    for sc, L, sd in chosen:
        rows = [r for r in g if (r["scenario"], r["layer"], r["seed"]) == (sc, L, sd)]
        base = [r for r in rows if r["condition"] == "probe" and r["alpha"] == 0]
        pos = [r for r in rows if r["condition"] == "probe" and r["alpha"] > 0]
        neg = [r for r in rows if r["condition"] == "probe" and r["alpha"] < 0]
        rnd = [r for r in rows if r["condition"] == "random"]
        picked += base + rng.sample(pos, 1) + rng.sample(neg, 1) + rng.sample(rnd, 1)
    prompting = [r for r in g if r["condition"].startswith("prompt_")]
    picked += rng.sample(prompting, min(10, len(prompting)))
    blind, key = [], []
    for r in picked:
        bid = hashlib.sha256(f"{m}|{r['scenario']}|{r['layer']}|{r['seed']}|{r['alpha']}|{r['condition']}|{r['text']}".encode()).hexdigest()[:10]
        blind.append({"id": bid, "scenario": r["scenario"], "reply": r["text"]})
        key.append({"id": bid, "model": m, "scenario": r["scenario"], "layer": r["layer"], "seed": r["seed"],
                    "alpha": r["alpha"], "condition": r["condition"]})
    order = list(range(len(blind))); rng.shuffle(order)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in order))
    Path("/work/staging/.keys/" + Path(out_prefix).name + "_key.jsonl").write_text("".join(json.dumps(key[i]) + "\n" for i in order))
    print(len(blind), "items")

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
