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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..core.generation import GenerationRequest, side_by_side
from ..core.models import ModelHandle
from ..core.probes import Probe
from ..core.prompts import Instruction, render_prompt
from ..core.steering import Positions
from . import dataset, metrics
from .judges import Ensemble, ProbeJudge, coherence, perplexities


class Condition(StrEnum):
    """The conditions of the sweep, named once; the value is what the JSON stores."""

    PROBE = "probe"
    RANDOM = "random"  # a random unit direction at the same relative alpha (files before issue 11)
    MATCHED_RANDOM = "matched_random"  # orthogonal to the mean activation, fresh per (scenario, seed, layer)
    SEED_ONLY = "seed_only"  # alpha = 0 under another seed (a rate of sweep_eval; no generation of its own)
    PROMPT_EMPATHIC = "prompt_empathic"
    PROMPT_TASK = "prompt_task"

    @property
    def label(self) -> str:
        """How charts and tables name it."""
        return _LABELS[self]

    @property
    def steered(self) -> bool:
        """Steered along a direction (probe or random), as opposed to prompted."""
        return self in (Condition.PROBE, Condition.RANDOM, Condition.MATCHED_RANDOM)

    @property
    def instruction(self) -> Instruction:
        """The prompting baseline's instruction ("" for steered conditions)."""
        return {Condition.PROMPT_EMPATHIC: "empathic", Condition.PROMPT_TASK: "task"}.get(self, "")  # type: ignore[return-value]

    @property
    def sign(self) -> int:
        """The direction a prompted condition should move the judges (+1 empathic, -1 task); 0 if steered."""
        return {Condition.PROMPT_EMPATHIC: 1, Condition.PROMPT_TASK: -1}.get(self, 0)


_LABELS = {Condition.PROBE: "empathy direction", Condition.RANDOM: "random direction",
           Condition.MATCHED_RANDOM: "matched random direction", Condition.SEED_ONLY: "seed only (α = 0, another seed)",
           Condition.PROMPT_EMPATHIC: "prompt: be empathic", Condition.PROMPT_TASK: "prompt: focus on the task"}


@dataclass
class SweepRecord:
    """One generation of the sweep, with its scores once judged (a row of ``steering.json``'s generations)."""

    scenario: str
    layer: int | None  # None for the prompting baseline
    seed: int
    alpha: float
    raw_alpha: float
    condition: Condition
    text: str
    n_tokens: int
    judges: dict[str, float] = field(default_factory=dict)  # embedding, cross_model, lexicon, ensemble
    self_probe: float | None = None  # the steered model's own probe (never a judge)
    coherence: dict[str, Any] = field(default_factory=dict)  # see judges.coherence
    success: bool | None = None  # set by success_table (not for the alpha = 0 rows)
    direction: str = ""  # which steering direction (sweep_eval: "mean_diff", "detection"); "" before issue 11
    gates: dict[str, Any] = field(default_factory=dict)  # gates.GateVerdicts.to_dict (sweep_eval)
    call: dict[str, Any] = field(default_factory=dict)  # empathy judge and validated calls (sweep_eval)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: unset scores are left out, as in the committed files."""
        d = asdict(self)
        d["condition"] = str(self.condition)
        for k in ("judges", "coherence", "direction", "gates", "call"):
            if not d[k]:
                del d[k]
        for k in ("self_probe", "success"):
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "condition": Condition(d["condition"])})


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
    positions: Positions = "all"  # where the direction is added: all, prompt or generated positions

    @classmethod
    def from_stored(cls, stored: dict) -> SweepSettings:
        """Settings as written in a steering.json. Files written before the repetition guard
        existed generated without it, so missing keys mean "off", not today's defaults; before
        ``positions`` existed every position was steered."""
        old = {"repetition_penalty": 1.0, "no_repeat_ngram": 0, "positions": "all"}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in {**old, **stored}.items()}
        return cls(**values)

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
    """The random-direction control for ``layer``: a unit vector, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed * 1000 + layer)
    return torch.nn.functional.normalize(torch.randn(hidden, generator=g), dim=0)


def _request(handle: ModelHandle, scenario: str, s: SweepSettings, seed: int, instruction: Instruction = "",
             **kw: Any) -> GenerationRequest:
    prompt = render_prompt(handle.tokenizer, handle.is_chat, scenario, instruction=instruction)
    return GenerationRequest(prompt=prompt, max_new_tokens=s.new_tokens, greedy=False, seed=seed, temperature=s.temperature,
                             top_p=s.top_p, positions=s.positions, repetition_penalty=s.repetition_penalty,
                             no_repeat_ngram=s.no_repeat_ngram, **kw)


def run_cell(handle: ModelHandle, probe: Probe, scenario: str, layer: int, seed: int, s: SweepSettings) -> list[SweepRecord]:
    """One batched call: probe rows for every alpha, random-direction rows for every alpha != 0."""
    rand_alphas = [a for a in s.alphas if a != 0]
    alphas = list(s.alphas) + rand_alphas
    d = probe.directions[layer]
    r = random_direction(handle.hidden_size, layer, s.random_direction_seed)
    rows_dir = torch.stack([d] * len(s.alphas) + [r] * len(rand_alphas))
    req = _request(handle, scenario, s, seed, alphas=tuple(alphas), layer=layer, directions=probe.directions,
                   unit="relative", mean_norms=probe.mean_norms, row_directions=rows_dir)
    res = side_by_side(handle, req)
    return [SweepRecord(scenario=scenario, layer=layer, seed=seed, alpha=float(alphas[i]), raw_alpha=row.raw_alpha,
                        condition=Condition.PROBE if i < len(s.alphas) else Condition.RANDOM, text=row.text,
                        n_tokens=len(row.token_ids))
            for i, row in enumerate(res.rows)]


def run_prompting(handle: ModelHandle, scenario: str, seed: int, s: SweepSettings) -> list[SweepRecord]:
    """The prompting baseline: the unsteered model asked for an empathic, then a task-focused reply."""
    out = []
    for cond in (Condition.PROMPT_EMPATHIC, Condition.PROMPT_TASK):
        req = _request(handle, scenario, s, seed, alphas=(0.0,), layer=0,
                       directions=torch.zeros(handle.n_layers, handle.hidden_size), unit="raw",
                       instruction=cond.instruction)
        row = side_by_side(handle, req).rows[0]
        out.append(SweepRecord(scenario=scenario, layer=None, seed=seed, alpha=0.0, raw_alpha=0.0, condition=cond,
                               text=row.text, n_tokens=len(row.token_ids)))
    return out


def judge_records(records: list[SweepRecord], handle: ModelHandle, ensemble: Ensemble, self_probe: Probe,
                  self_layer: int) -> None:
    """Add judge scores, the steered model's own probe score and coherence to each record, in place."""
    texts = [r.text for r in records]
    scores = ensemble.score_all(texts)
    own = ProbeJudge(handle, self_probe, self_layer).score(texts)
    by_prompt = defaultdict(list)
    for i, r in enumerate(records):
        by_prompt[r.scenario].append(i)
    ppl = [float("inf")] * len(records)
    for scen, idx in by_prompt.items():
        prompt = render_prompt(handle.tokenizer, handle.is_chat, scen)  # perplexity under the plain, unsteered prompt
        for k in range(0, len(idx), 8):
            chunk = idx[k: k + 8]
            for i, p in zip(chunk, perplexities(handle, prompt, [records[j].text for j in chunk])):
                ppl[i] = p
    for i, r in enumerate(records):
        r.judges = {k: float(v[i]) for k, v in scores.items()}
        r.self_probe = float(own[i])
        r.coherence = coherence(r.text, ppl[i])


def _finite_median(values: Sequence[float | None]) -> float | None:
    """Median of the finite values (an empty output has no perplexity); None if there are none."""
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def _rate(successes: list[bool]) -> dict:
    n, k = len(successes), int(sum(successes))
    lo, hi = metrics.wilson_ci(k, n)
    return {"n": n, "successes": k, "rate": k / n if n else None, "ci": [lo, hi]}


def _mark_success(records: list[SweepRecord], s: SweepSettings, probe_layer: int | None) -> list[dict]:
    """Set ``success`` on every steered (alpha != 0) and prompted record; the rates by condition, layer and sign."""
    base = {(r.scenario, r.layer, r.seed): r for r in records if r.condition == Condition.PROBE and r.alpha == 0}
    # The prompting baseline is compared with the alpha = 0 row of the probe layer's call (alpha = 0
    # rows are the same in every layer's call, since nothing is added).
    ref_layer = probe_layer if probe_layer is not None else min(r.layer for r in base.values() if r.layer is not None)
    base_by_seed = {(sc, sd): r for (sc, L, sd), r in base.items() if L == ref_layer}

    def success(r: SweepRecord, ref: SweepRecord, sign: float) -> bool:
        move = r.judges["ensemble"] - ref.judges["ensemble"]
        return bool(sign * move >= s.delta and r.coherence["coherent"])

    groups: dict[tuple, list[bool]] = defaultdict(list)
    for r in records:
        if r.condition.steered and r.alpha != 0:
            r.success = success(r, base[(r.scenario, r.layer, r.seed)], float(np.sign(r.alpha)))
            sign = "pos" if r.alpha > 0 else "neg"
            groups[(str(r.condition), r.layer, sign)].append(r.success)
            groups[(str(r.condition), "all", sign)].append(r.success)
        elif not r.condition.steered:
            r.success = success(r, base_by_seed[(r.scenario, r.seed)], r.condition.sign)
            groups[(str(r.condition), "all", "pos" if r.condition.sign > 0 else "neg")].append(r.success)
    return [{"condition": c, "layer": L, "sign": sg, **_rate(v)} for (c, L, sg), v in sorted(groups.items(), key=str)]


def _dose_cell(cond: Condition, scen: str, layer: int | None, alpha: float, rs: list[SweepRecord]) -> dict:
    """Means over seeds of one (condition, scenario, layer, alpha) cell, with a t 95% CI of the ensemble."""
    ens = np.array([x.judges["ensemble"] for x in rs])
    half = stats.t.ppf(0.975, len(ens) - 1) * ens.std(ddof=1) / np.sqrt(len(ens)) if len(ens) > 1 else None

    def mean(fn: Any) -> float:
        return float(np.mean([fn(x) for x in rs]))

    return {"condition": str(cond), "scenario": scen, "layer": layer, "alpha": alpha, "n": len(rs),
            "ensemble_mean": float(ens.mean()),
            "ensemble_ci": [float(ens.mean() - half), float(ens.mean() + half)] if half is not None else None,
            "self_probe_mean": mean(lambda x: x.self_probe),
            "embedding_mean": mean(lambda x: x.judges["embedding"]),
            "cross_model_mean": mean(lambda x: x.judges["cross_model"]),
            "lexicon_mean": mean(lambda x: x.judges["lexicon"]),
            "coherent_rate": mean(lambda x: x.coherence["coherent"]),
            "perplexity_median": _finite_median([x.coherence["perplexity"] for x in rs]),
            "distinct2_mean": mean(lambda x: x.coherence["distinct2"]),
            "repetition_mean": mean(lambda x: x.coherence["repetition"]),
            "empty_rate": mean(lambda x: x.coherence["empty"]),
            **({"gate_coherent_rate": mean(lambda x: x.gates["coherent"]),
                "gate_pass_rate": mean(lambda x: x.gates["passes"])} if all(x.gates for x in rs) else {})}


def _dose_response(records: list[SweepRecord]) -> list[dict]:
    dose = []
    for cond in (Condition.PROBE, Condition.RANDOM, Condition.MATCHED_RANDOM):
        if not any(r.condition == cond for r in records):
            continue
        cells: dict[tuple, list[SweepRecord]] = defaultdict(list)
        for r in records:  # a random direction's alpha = 0 point is the probe's (nothing is added)
            if r.condition == cond or (cond != Condition.PROBE and r.condition == Condition.PROBE and r.alpha == 0):
                cells[(r.scenario, r.layer, r.alpha)].append(r)
        dose += [_dose_cell(cond, scen, layer, alpha, rs) for (scen, layer, alpha), rs in sorted(cells.items(), key=str)]
    return dose


def success_table(records: list[SweepRecord], s: SweepSettings, probe_layer: int | None = None) -> dict:
    """Success rates (Wilson CIs) by condition, layer and alpha sign; dose-response; coherence vs alpha.

    Sets ``success`` on each record as a side effect.
    """
    if 0.0 not in s.alphas:
        raise ValueError("The sweep's alphas must include 0: success is measured against the alpha = 0 row.")
    rates = _mark_success(records, s, probe_layer)
    best_steer = None
    by_layer: dict[int, list[float]] = defaultdict(list)
    for x in rates:
        if x["condition"] == Condition.PROBE and x["layer"] != "all":
            by_layer[x["layer"]].append(x["rate"] or 0.0)
    if by_layer:
        best_steer = max(by_layer, key=lambda L: (np.mean(by_layer[L]), -L))
    return {"rates": rates, "dose_response": _dose_response(records), "best_steering_layer": best_steer,
            "best_steering_layer_rule": "highest mean success rate of the empathy direction over both alpha signs; "
                                        "chosen on the same sweep it is reported on (in-sample)",
            "ci_note": "Wilson intervals treat rows as independent; rows that share a scenario and seed share their "
                       "alpha = 0 reference, so the intervals are somewhat too narrow",
            "success_rule": f"sign(alpha) * (ensemble(alpha) - ensemble(0), same scenario/layer/seed) >= {s.delta} and coherent"}


def settings_dict(s: SweepSettings) -> dict:
    """The settings as stored in ``steering.json``."""
    return asdict(s)
