"""The steering sweep, its judging, and the success metric with controls.

For each (scenario, layer, seed) one batched generate call carries every alpha of the
probe direction plus the same non-zero alphas along a random unit direction (the
random-direction control), all sampled with one shared seed. A prompting baseline asks the
unsteered model for an empathic or a task-focused reply through its system prompt.

Success, for each (scenario, layer, alpha != 0, seed): the judge ensemble's score moved in
the direction of alpha's sign by at least ``delta`` relative to alpha = 0 with the same seed,
**and** the output is coherent (``judges.COHERENCE_RULE``). Rates are reported with Wilson
95% intervals, separately for alpha > 0 and alpha < 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import stats

from . import dataset, metrics
from .generation import build_prompt, side_by_side
from .judges import coherence, perplexities


@dataclass
class SweepSettings:
    alphas: tuple[float, ...] = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)  # relative units
    seeds: tuple[int, ...] = (0, 1, 2)
    new_tokens: int = 96
    temperature: float = 0.8
    top_p: float = 0.95
    delta: float = 0.25  # ensemble units (graded-set SDs)
    random_direction_seed: int = 1234
    scenarios: tuple[str, ...] = dataset.SCENARIO_IDS
    layers: tuple[int, ...] = field(default_factory=tuple)  # filled from the best detection layer
    repetition_penalty: float = 1.0  # generation.RepetitionGuard; precompute sets the model's defaults
    no_repeat_ngram: int = 0  # (models.generation_defaults), as the app does

    @classmethod
    def from_stored(cls, stored: dict) -> SweepSettings:
        """Settings as written in a steering.json. Files written before the repetition guard
        existed generated without it, so missing keys mean "off", not today's defaults."""
        old = {"repetition_penalty": 1.0, "no_repeat_ngram": 0}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in {**old, **stored}.items()})

    @staticmethod
    def pick_layers(best: int, n_layers: int) -> tuple[int, ...]:
        """The best detection layer, one about halfway earlier and one about halfway later.

        At the edges (best layer first or last) the nearest unused layers fill in, so three
        layers are always swept when the model has three.
        """
        earlier = best // 2 if best > 0 else None
        later = min(n_layers - 1, best + max(1, (n_layers - 1 - best) // 2)) if best < n_layers - 1 else None
        layers = {best} | {x for x in (earlier, later) if x is not None}
        for x in sorted(range(n_layers), key=lambda i: (abs(i - best), i)):
            if len(layers) >= min(3, n_layers):
                break
            layers.add(x)
        return tuple(sorted(layers))


def random_direction(hidden: int, layer: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1000 + layer)
    return torch.nn.functional.normalize(torch.randn(hidden, generator=g), dim=0)


def run_cell(handle, probe, scenario: str, layer: int, seed: int, s: SweepSettings) -> list[dict]:
    """One batched call: probe rows for every alpha, random-direction rows for every alpha != 0."""
    rand_alphas = [a for a in s.alphas if a != 0]
    alphas = list(s.alphas) + rand_alphas
    d = probe.directions[layer]
    r = random_direction(handle.hidden_size, layer, s.random_direction_seed)
    rows_dir = torch.stack([d] * len(s.alphas) + [r] * len(rand_alphas))
    res = side_by_side(handle, scenario, alphas, layer, probe.directions, unit="relative", mean_norms=probe.mean_norms,
                       max_new_tokens=s.new_tokens, greedy=False, seed=seed, temperature=s.temperature, top_p=s.top_p,
                       row_directions=rows_dir, repetition_penalty=s.repetition_penalty, no_repeat_ngram=s.no_repeat_ngram)
    out = []
    for i, row in enumerate(res.rows):
        out.append({"scenario": scenario, "layer": layer, "seed": seed, "alpha": float(alphas[i]),
                    "raw_alpha": row.raw_alpha, "condition": "probe" if i < len(s.alphas) else "random",
                    "text": row.text, "n_tokens": len(row.token_ids)})
    return out


def run_prompting(handle, scenario: str, seed: int, s: SweepSettings) -> list[dict]:
    out = []
    for instruction in ("empathic", "task"):
        res = side_by_side(handle, scenario, [0.0], 0, torch.zeros(handle.hidden_size), unit="raw",
                           max_new_tokens=s.new_tokens, greedy=False, seed=seed, temperature=s.temperature, top_p=s.top_p,
                           instruction=instruction, repetition_penalty=s.repetition_penalty,
                           no_repeat_ngram=s.no_repeat_ngram)
        row = res.rows[0]
        out.append({"scenario": scenario, "layer": None, "seed": seed, "alpha": 0.0, "raw_alpha": 0.0,
                    "condition": f"prompt_{instruction}", "text": row.text, "n_tokens": len(row.token_ids)})
    return out


def judge_records(records: list[dict], handle, ensemble, self_probe, self_layer: int) -> None:
    """Add judge scores, the steered model's own probe score and coherence to each record, in place."""
    texts = [r["text"] for r in records]
    scores = ensemble.score_all(texts)
    from .judges import ProbeJudge

    own = ProbeJudge(handle, self_probe, self_layer).score(texts)
    by_prompt = defaultdict(list)
    for i, r in enumerate(records):
        by_prompt[r["scenario"]].append(i)
    ppl = [float("inf")] * len(records)
    for scen, idx in by_prompt.items():
        prompt = build_prompt(handle, scen)  # perplexity under the plain, unsteered prompt and model
        for k in range(0, len(idx), 8):
            chunk = idx[k: k + 8]
            for i, p in zip(chunk, perplexities(handle, prompt, [records[j]["text"] for j in chunk])):
                ppl[i] = p
    for i, r in enumerate(records):
        r["judges"] = {k: float(v[i]) for k, v in scores.items()}
        r["self_probe"] = float(own[i])
        r["coherence"] = coherence(r["text"], ppl[i])


def _finite_median(values) -> float | None:
    """Median of the finite values (an empty output has no perplexity); None if there are none."""
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def _rate(successes: list[bool]) -> dict:
    n, k = len(successes), int(sum(successes))
    lo, hi = metrics.wilson_ci(k, n)
    return {"n": n, "successes": k, "rate": k / n if n else None, "ci": [lo, hi]}


def success_table(records: list[dict], s: SweepSettings, probe_layer: int | None = None) -> dict:
    """Success rates (Wilson CIs) by condition, layer and alpha sign; dose-response; coherence vs alpha."""
    if 0.0 not in s.alphas:
        raise ValueError("The sweep's alphas must include 0: success is measured against the alpha = 0 row.")
    base = {(r["scenario"], r["layer"], r["seed"]): r for r in records if r["condition"] == "probe" and r["alpha"] == 0}
    # The prompting baseline is compared with the alpha = 0 row of the probe layer's call (alpha = 0
    # rows are the same in every layer's call, since nothing is added).
    ref_layer = probe_layer if probe_layer is not None else min(r["layer"] for r in base.values())
    base_by_seed = {(sc, sd): r for (sc, L, sd), r in base.items() if L == ref_layer}

    def success(r, ref) -> bool:
        move = r["judges"]["ensemble"] - ref["judges"]["ensemble"]
        sign = np.sign(r["alpha"]) if r["condition"] in ("probe", "random") else (1 if r["condition"] == "prompt_empathic" else -1)
        return bool(sign * move >= s.delta and r["coherence"]["coherent"])

    groups = defaultdict(list)
    for r in records:
        if r["condition"] in ("probe", "random") and r["alpha"] != 0:
            ok = success(r, base[(r["scenario"], r["layer"], r["seed"])])
            r["success"] = ok
            sign = "pos" if r["alpha"] > 0 else "neg"
            groups[(r["condition"], r["layer"], sign)].append(ok)
            groups[(r["condition"], "all", sign)].append(ok)
        elif r["condition"].startswith("prompt_"):
            ok = success(r, base_by_seed[(r["scenario"], r["seed"])])
            r["success"] = ok
            groups[(r["condition"], "all", "pos" if r["condition"] == "prompt_empathic" else "neg")].append(ok)
    rates = [{"condition": c, "layer": L, "sign": sg, **_rate(v)} for (c, L, sg), v in sorted(groups.items(), key=str)]
    dose = []
    for cond in ("probe", "random"):
        cells = defaultdict(list)
        for r in records:
            if r["condition"] == cond or (cond == "random" and r["condition"] == "probe" and r["alpha"] == 0):
                cells[(r["scenario"], r["layer"], r["alpha"])].append(r)
        for (scen, layer, alpha), rs in sorted(cells.items(), key=str):
            ens = np.array([x["judges"]["ensemble"] for x in rs])
            half = stats.t.ppf(0.975, len(ens) - 1) * ens.std(ddof=1) / np.sqrt(len(ens)) if len(ens) > 1 else None
            dose.append({"condition": cond, "scenario": scen, "layer": layer, "alpha": alpha, "n": len(rs),
                         "ensemble_mean": float(ens.mean()), "ensemble_ci": [float(ens.mean() - half), float(ens.mean() + half)] if half is not None else None,
                         "self_probe_mean": float(np.mean([x["self_probe"] for x in rs])),
                         "embedding_mean": float(np.mean([x["judges"]["embedding"] for x in rs])),
                         "cross_model_mean": float(np.mean([x["judges"]["cross_model"] for x in rs])),
                         "lexicon_mean": float(np.mean([x["judges"]["lexicon"] for x in rs])),
                         "coherent_rate": float(np.mean([x["coherence"]["coherent"] for x in rs])),
                         "perplexity_median": _finite_median([x["coherence"]["perplexity"] for x in rs]),
                         "distinct2_mean": float(np.mean([x["coherence"]["distinct2"] for x in rs])),
                         "repetition_mean": float(np.mean([x["coherence"]["repetition"] for x in rs])),
                         "empty_rate": float(np.mean([x["coherence"]["empty"] for x in rs]))})
    best_steer = None
    probe_pos = [x for x in rates if x["condition"] == "probe" and x["layer"] != "all"]
    if probe_pos:
        by_layer = defaultdict(list)
        for x in probe_pos:
            by_layer[x["layer"]].append(x["rate"] or 0.0)
        best_steer = max(by_layer, key=lambda L: (np.mean(by_layer[L]), -L))
    return {"rates": rates, "dose_response": dose, "best_steering_layer": best_steer,
            "best_steering_layer_rule": "highest mean success rate of the empathy direction over both alpha signs; "
                                        "chosen on the same sweep it is reported on (in-sample)",
            "ci_note": "Wilson intervals treat rows as independent; rows that share a scenario and seed share their "
                       "alpha = 0 reference, so the intervals are somewhat too narrow",
            "success_rule": f"sign(alpha) * (ensemble(alpha) - ensemble(0), same scenario/layer/seed) >= {s.delta} and coherent"}


def settings_dict(s: SweepSettings) -> dict:
    return asdict(s)
