"""The steering evaluation (issue 11): choose on some seeds, report on others, with matched controls.

    python -m empathy_core precompute --model qwen2.5-coder-0.5b      # runs this after detection

1. **Choose** (``EvalSettings.choose_seeds``): for every candidate direction (the mean-difference
   direction and, when present, the detection probe's), layer and alpha, one batched call per
   (scenario, seed, layer, direction) with every alpha. Every reply is judged (gates, empathy
   judge, validated calls). The chosen (direction, layer, alpha) has the highest validated success
   rate at alpha > 0 among those whose replies pass the coherence gates at least ``min_coherent``
   of the time; ties go to the smaller alpha. The alpha range reported is {-a, 0, a}.
2. **Report** (``EvalSettings.report_seeds``, disjoint): at the chosen direction and layer, one
   batched call per (scenario, seed) carries the probe rows and the matched random rows
   (``controls.matched_random_direction``: same added norm, orthogonal to the prompt's mean
   activation at that layer, fresh per (scenario, seed, layer)); the prompting baseline asks the
   unsteered model; the seed-only control is the alpha = 0 reply of the same scenario under the
   next report seed (nothing is added at alpha = 0, so it *is* "alpha = 0 with another seed").
3. **Success** of a row against its (scenario, seed) baseline: ``controls.success`` with the
   validated calls (``validation``: gates and the embedding judge's cut-offs fitted on the label
   train part) and a judge move beyond the seed-noise band (95th percentile of |delta judge|
   between two seeds at alpha = 0, measured on the choose-seeds). Rates count the baselines the
   call can move from (a task call for alpha > 0) and carry cluster-bootstrap intervals.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.generation import side_by_side
from ..core.models import ModelHandle
from ..core.prompts import render_prompt
from . import controls, dataset, gates
from .sweep import Condition, SweepRecord, SweepSettings, _request, run_prompting

MATCHED_RANDOM = Condition.MATCHED_RANDOM


@dataclass
class EvalSettings:
    """What the evaluation sweeps; the generation settings are the sweep's (``SweepSettings``)."""

    # The choose grid, relative units: alpha >= 0 only, since the choice is made on alpha > 0 and its mirror
    # -alpha is reported (4 rows per call instead of 7: a Qwen choose call took 220 s for 7 rows under load).
    alphas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    choose_seeds: tuple[int, ...] = (100, 101)
    report_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # 5 scenarios x 6 seeds = 30 baselines
    layers: tuple[int, ...] = field(default_factory=tuple)
    scenarios: tuple[str, ...] = dataset.SCENARIO_IDS
    min_coherent: float = 0.9
    random_salt: int = 1234

    def __post_init__(self) -> None:
        if set(self.choose_seeds) & set(self.report_seeds):
            raise ValueError("choose-seeds and report-seeds must be disjoint")
        if 0.0 not in self.alphas:
            raise ValueError("the alphas must include 0 (the baseline)")


class CellCache:
    """Judged records of finished cells, one JSON file each, so that an interrupted evaluation resumes.

    ``folder`` is keyed by everything the records depend on (``precompute_eval.eval_cache_dir``); with
    ``folder=None`` nothing is kept. A file is written atomically once its cell is generated *and*
    judged, so a half-done cell is simply run again. ``on_hit`` re-decides what a stored cell's scores
    allow to change (the gate verdicts and calls, when the judge validation is redone).
    """

    def __init__(self, folder: Path | None, on_hit: Callable[[list[SweepRecord]], None] | None = None) -> None:
        self.folder = folder
        self.on_hit = on_hit  # e.g. ``recall`` under the current judge validation
        self.hits = 0

    def run(self, name: str, make: Callable[[], list[SweepRecord]],
            judge: Callable[[list[SweepRecord]], None]) -> list[SweepRecord]:
        """The cell's judged records: from the cache, or made, judged and stored."""
        f = self.folder / f"{name}.json" if self.folder is not None else None
        if f is not None and f.exists():
            self.hits += 1
            recs = [SweepRecord.from_dict(d) for d in json.loads(f.read_text())]
            if self.on_hit is not None:
                self.on_hit(recs)
            return recs
        recs = make()
        judge(recs)
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps([r.to_dict() for r in recs], allow_nan=False))
            tmp.replace(f)
        return recs


@torch.inference_mode()
def mean_activation(handle: ModelHandle, prompt: str, layer: int) -> torch.Tensor:
    """Block ``layer``'s output averaged over the prompt's positions (H,), unsteered."""
    enc = handle.tokenizer(prompt, return_tensors="pt", add_special_tokens=not handle.is_chat)
    with handle.lock:
        out = handle.model(input_ids=enc["input_ids"].to(handle.device), output_hidden_states=True)
    return out.hidden_states[layer + 1][0].float().mean(0).cpu()


def run_eval_cell(handle: ModelHandle, directions: torch.Tensor, mean_norms: torch.Tensor, scenario: str, layer: int,
                  seed: int, alphas: Sequence[float], s: SweepSettings, matched_random: bool = True,
                  salt: int = 1234, tag: str = "") -> list[SweepRecord]:
    """One batched call: the direction at every alpha, and the matched random direction at every alpha != 0."""
    rand = [a for a in alphas if a != 0] if matched_random else []
    d = directions[layer]
    rows = [d] * len(alphas)
    if rand:
        mu = mean_activation(handle, render_for(handle, scenario), layer)
        r = controls.matched_random_direction(mu, scenario, seed, layer, salt)
        rows += [r] * len(rand)
    every = tuple(float(a) for a in alphas) + tuple(float(a) for a in rand)
    req = _request(handle, scenario, s, seed, alphas=every, layer=layer, directions=directions,
                   unit="relative", mean_norms=mean_norms, row_directions=torch.stack(rows))
    res = side_by_side(handle, req)
    out = []
    for i, row in enumerate(res.rows):
        cond = Condition.PROBE if i < len(alphas) else Condition.MATCHED_RANDOM
        out.append(SweepRecord(scenario=scenario, layer=layer, seed=seed, alpha=every[i],
                               raw_alpha=row.raw_alpha, condition=cond, text=row.text, n_tokens=len(row.token_ids),
                               direction=tag))
    return out


def judge_calls(records: list[SweepRecord], steered_key: str, load: Callable[[str], Any], embedder: gates.MiniLM,
                empathy: Callable[[list[str]], np.ndarray], validation_report: dict) -> None:
    """Gate verdicts, the empathy judge and the validated calls of every record, in place (``gates``, ``call``)."""
    t = gates.GateThresholds.from_dict(validation_report["thresholds"])
    cut = validation_report["cutoffs"]
    texts, scens = [r.text for r in records], [r.scenario for r in records]
    ppl = gates.reference_perplexities(load(gates.reference_model(steered_key)), texts, scens)
    topic = embedder.topic_similarity(texts, scens)
    emp = empathy(texts)
    for i, r in enumerate(records):
        _set_calls(r, gates.verdicts(gates.text_features(r.text, r.scenario), ppl[i], float(topic[i]), t), float(emp[i]), cut)


def _set_calls(r: SweepRecord, v: gates.GateVerdicts, emp: float, cut: dict) -> None:
    r.gates = v.to_dict()
    r.call = {"empathy": emp, "empathic": bool(v.passes and emp >= cut["t_empathic"]),
              "task": bool(v.passes and emp <= cut["t_task"])}


def recall(records: list[SweepRecord], validation_report: dict,
           empathy: Callable[[list[str]], np.ndarray] | None = None) -> None:
    """The gate verdicts and calls again, in place, from each judged record's stored scores, under the report's
    thresholds and cut-offs: a new judge validation re-decides stored generations without generating again.
    With ``empathy`` the stored texts are scored again by that judge first (a new empathy judgment)."""
    t = gates.GateThresholds.from_dict(validation_report["thresholds"])
    cut = validation_report["cutoffs"]
    emp = empathy([r.text for r in records]) if empathy is not None and records else [r.call["empathy"] for r in records]
    for r, e in zip(records, emp):
        sc = dict(r.gates["scores"])
        ppl, topic = sc.pop("perplexity"), sc.pop("topic_similarity")
        _set_calls(r, gates.verdicts(sc, float("inf") if ppl is None else ppl, topic, t), float(e), cut)


def _calls(r: SweepRecord) -> tuple[bool, bool]:
    c = r.call
    return bool(c["empathic"]), bool(c["task"])


def _judge(r: SweepRecord) -> float:
    return float(r.call["empathy"])


def seed_pairs(records: Sequence[SweepRecord], seeds: Sequence[int]) -> list[tuple[SweepRecord, SweepRecord]]:
    """(baseline, the same scenario's alpha = 0 reply under the next seed, cyclically): the seed-only control."""
    base = {(r.scenario, r.seed): r for r in records if r.condition == Condition.PROBE and r.alpha == 0}
    order = list(seeds)
    out = []
    for (scen, sd), b in sorted(base.items()):
        nxt = order[(order.index(sd) + 1) % len(order)] if sd in order and len(order) > 1 else None
        if nxt is not None and (scen, nxt) in base:
            out.append((b, base[(scen, nxt)]))
    return out


def noise_band_of(records: Sequence[SweepRecord], seeds: Sequence[int]) -> float:
    """The seed-noise band: 95th percentile of |delta judge| between two seeds at alpha = 0 (paired by scenario)."""
    pairs = seed_pairs(records, seeds)
    if not pairs:
        raise ValueError("the noise band needs at least two seeds per scenario at alpha = 0")
    return controls.noise_band([_judge(a) for a, _ in pairs], [_judge(b) for _, b in pairs])


def rates(records: Sequence[SweepRecord], seeds: Sequence[int], band: float) -> list[dict]:
    """Success rates with cluster-bootstrap CIs: probe and matched random per alpha, seed-only, prompting."""
    base = {(r.scenario, r.seed): r for r in records if r.condition == Condition.PROBE and r.alpha == 0}
    groups: dict[tuple[str, float | str, int], list[tuple[bool, tuple]]] = defaultdict(list)
    for r in records:
        b = base.get((r.scenario, r.seed))
        if b is None:
            continue
        if r.condition in (Condition.PROBE, MATCHED_RANDOM) and r.alpha != 0:
            signs = [int(np.sign(r.alpha))]
            key: float | str = r.alpha
        elif r.condition in (Condition.PROMPT_EMPATHIC, Condition.PROMPT_TASK):
            signs, key = [Condition(r.condition).sign], "all"
        else:
            continue
        for sg in signs:
            if controls.eligible(sg, _calls(b)):
                groups[(str(r.condition), key, sg)].append(
                    (controls.success(sg, _calls(r), _calls(b), _judge(r), _judge(b), band), (r.scenario, r.seed)))
    for b, other in seed_pairs(records, seeds):
        for sg in (1, -1):
            if controls.eligible(sg, _calls(b)):
                groups[("seed_only", "all", sg)].append(
                    (controls.success(sg, _calls(other), _calls(b), _judge(other), _judge(b), band), (b.scenario, b.seed)))
    out = []
    for (cond, alpha, sg), xs in sorted(groups.items(), key=str):
        rate = controls.cluster_bootstrap_rate([x for x, _ in xs], [c for _, c in xs])
        out.append({"condition": cond, "alpha": alpha, "sign": "pos" if sg > 0 else "neg", **rate.to_dict()})
    return out


def coherent_rate(records: Sequence[SweepRecord], condition: str, alpha: float) -> float | None:
    """Share of rows of (condition, alpha) that pass the coherence gates (repetition and perplexity)."""
    xs = [r.gates["coherent"] for r in records if str(r.condition) == condition and r.alpha == alpha]
    return float(np.mean(xs)) if xs else None


def settings_dict(e: EvalSettings) -> dict:
    return asdict(e)


def render_for(handle: ModelHandle, scenario: str) -> str:
    """The scenario prompt the evaluation generates from (the sweep's one renderer)."""
    return render_prompt(handle.tokenizer, handle.is_chat, scenario)


__all__ = ["CellCache", "EvalSettings", "run_eval_cell", "judge_calls", "recall", "rates", "noise_band_of", "seed_pairs", "run_prompting"]


def choose(records: Sequence[SweepRecord], band: float, min_coherent: float) -> dict:
    """The (direction, layer, alpha > 0) with the best validated success rate among those coherent enough.

    Success here is the alpha > 0 call; its alpha < 0 mirror (-alpha) is reported with it. Ties go to
    the smaller alpha, then the lower layer. If no candidate is coherent enough, the most coherent is
    taken and ``coherent_enough`` says so.
    """
    base = {(r.direction, r.scenario, r.layer, r.seed): r for r in records if r.condition == Condition.PROBE and r.alpha == 0}
    cands: dict[tuple[str, int, float], dict[str, list]] = defaultdict(lambda: {"ok": [], "coh": []})
    for r in records:
        if r.condition != Condition.PROBE or r.alpha <= 0 or r.layer is None:
            continue
        c = cands[(r.direction, r.layer, r.alpha)]
        c["coh"].append(bool(r.gates["coherent"]))
        b = base.get((r.direction, r.scenario, r.layer, r.seed))
        if b is not None and controls.eligible(1, _calls(b)):
            c["ok"].append(controls.success(1, _calls(r), _calls(b), _judge(r), _judge(b), band))
    table: list[dict[str, Any]] = [{"direction": d, "layer": L, "alpha": a, "eligible": len(c["ok"]), "successes": int(sum(c["ok"])),
              "rate": float(np.mean(c["ok"])) if c["ok"] else 0.0, "coherent_rate": float(np.mean(c["coh"]))}
             for (d, L, a), c in sorted(cands.items())]
    if not table:
        raise ValueError("nothing to choose from: no alpha > 0 rows")
    good = [x for x in table if x["coherent_rate"] >= min_coherent]
    pool = good or [max(table, key=lambda x: x["coherent_rate"])]
    best = max(pool, key=lambda x: (x["rate"], -x["alpha"], -x["layer"]))
    return {"direction": best["direction"], "layer": best["layer"], "alpha": best["alpha"],
            "coherent_enough": bool(good), "candidates": table,
            "rule": f"highest validated success rate at alpha > 0 on the choose-seeds among (direction, layer, alpha) "
                    f"whose replies pass the coherence gates >= {min_coherent:.0%}; ties: smaller alpha, lower layer"}


def run_evaluation(handle: ModelHandle, candidates: dict[str, torch.Tensor], mean_norms: torch.Tensor, e: EvalSettings,
                   s: SweepSettings, judge: Callable[[list[SweepRecord]], None],
                   progress: Callable[[str], None] | None = None,
                   cache: CellCache | None = None) -> tuple[dict, list[SweepRecord]]:
    """Choose on the choose-seeds, report on the report-seeds; returns (evaluation, every record).

    ``judge`` scores records in place (``judge_calls``, and any other judge the caller keeps); it is
    called once per cell, so that ``cache`` can keep each judged cell and a rerun resumes.
    """
    say = progress or (lambda _m: None)
    cells = cache or CellCache(None)
    chosen_recs: list[SweepRecord] = []
    for name, dirs in candidates.items():
        for L in e.layers:
            for sd in e.choose_seeds:
                for sc in e.scenarios:
                    say(f"choose {name} layer {L} seed {sd} {sc}")
                    chosen_recs += cells.run(
                        f"choose-{name}-L{L}-s{sd}-{sc}",
                        partial(run_eval_cell, handle, dirs, mean_norms, sc, L, sd, e.alphas, s, matched_random=False,
                                salt=e.random_salt, tag=name), judge)
    band = noise_band_of([r for r in chosen_recs if r.direction == next(iter(candidates)) and r.layer == e.layers[0]],
                         e.choose_seeds)
    pick = choose(chosen_recs, band, e.min_coherent)
    a = pick["alpha"]
    report_alphas = (-a, 0.0, a)
    recs: list[SweepRecord] = []
    for sd in e.report_seeds:
        for sc in e.scenarios:
            say(f"report seed {sd} {sc}")
            recs += cells.run(
                f"report-{pick['direction']}-L{pick['layer']}-a{a}-s{sd}-{sc}",
                partial(run_eval_cell, handle, candidates[pick["direction"]], mean_norms, sc, pick["layer"], sd,
                        report_alphas, s, salt=e.random_salt, tag=pick["direction"]), judge)
            recs += cells.run(f"prompting-s{sd}-{sc}", partial(run_prompting, handle, sc, sd, s), judge)
    evaluation = {"settings": settings_dict(e), "noise_band": band,
                  "noise_band_rule": "95th percentile of |empathy judge(seed) - judge(next seed)| at alpha = 0, "
                                     "paired by scenario, on the choose-seeds",
                  "chosen": pick, "report_alphas": list(report_alphas),
                  "rates": rates(recs, e.report_seeds, band),
                  "coherent_rate_at_chosen_alpha": {c: coherent_rate(recs, c, a) for c in ("probe", "matched_random")},
                  "n_baselines": len({(r.scenario, r.seed) for r in recs}),
                  "success_rule": "validated empathic call on the steered reply where the same (scenario, seed) "
                                  "baseline got a task call, and the judge rose by more than the noise band "
                                  "(reverse for alpha < 0); rates count the baselines the call can move from"}
    return evaluation, chosen_recs + recs
