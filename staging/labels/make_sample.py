"""Draw a stratified, blinded sample of stored sweep generations for labelling (issue 11)."""
import hashlib, json, random, sys
from pathlib import Path

def draw(models, per_model, out_prefix, seed=11):
    rng = random.Random(seed)
    blind, key = [], []
    for m in models:
        g = json.load(open(f"/work/main/precomputed/{m}/steering.json"))["generations"]
        strata = {
            "baseline": [r for r in g if r["condition"] == "probe" and r["alpha"] == 0],
            "probe_pos": [r for r in g if r["condition"] == "probe" and r["alpha"] > 0],
            "probe_neg": [r for r in g if r["condition"] == "probe" and r["alpha"] < 0],
            "random": [r for r in g if r["condition"] == "random"],
            "prompting": [r for r in g if r["condition"].startswith("prompt_")],
        }
        quota = {"baseline": 25, "probe_pos": 30, "probe_neg": 25, "random": 20, "prompting": 10}
        scale = per_model / sum(quota.values())
        for name, rows in strata.items():
            k = min(len(rows), round(quota[name] * scale))
            for r in rng.sample(rows, k):
                bid = hashlib.sha256(f"{m}|{r['scenario']}|{r['layer']}|{r['seed']}|{r['alpha']}|{r['condition']}|{r['text']}".encode()).hexdigest()[:10]
                blind.append({"id": bid, "scenario": r["scenario"], "reply": r["text"]})
                key.append({"id": bid, "model": m, "scenario": r["scenario"], "layer": r["layer"], "seed": r["seed"],
                            "alpha": r["alpha"], "condition": r["condition"], "stratum": name})
    order = list(range(len(blind)))
    rng.shuffle(order)
    Path(out_prefix + "_blind.jsonl").write_text("".join(json.dumps(blind[i]) + "\n" for i in order))
    Path(out_prefix + "_key.jsonl").write_text("".join(json.dumps(key[i]) + "\n" for i in order))
    print(len(blind), "items ->", out_prefix)

if __name__ == "__main__":
    draw(sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3])
