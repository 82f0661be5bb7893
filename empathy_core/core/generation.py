"""Side-by-side steered generation: one batched ``generate`` call, one row per alpha.

    >>> prompt = render_prompt(handle.tokenizer, handle.is_chat, "listener")           # doctest: +SKIP
    >>> req = GenerationRequest(prompt, alphas=(0.0, 0.3), layer=10, directions=probe.directions,
    ...                         mean_norms=probe.mean_norms)                           # doctest: +SKIP
    >>> res = side_by_side(handle, req)                                                # doctest: +SKIP
    >>> res.rows[0].text, res.rows[1].text                                             # doctest: +SKIP

* A ``GenerationRequest`` (frozen, typed) carries everything one call needs: the rendered
  prompt (``prompts.render_prompt``), the alphas and their unit, the layer, the directions,
  where to add them (``positions``), the sampling settings. The app's service builds it.
* Greedy, or sampled with one shared seed: every row adds the *same* Gumbel noise to its
  logits (the Gumbel-max trick draws an exact sample from each row's distribution), so alpha
  is the only difference between rows, and a row equals the same alpha run alone.
* ``stream_side_by_side`` yields every row's text so far, so a UI can fill all columns at once.
* Live readout: the probe score of each generated token's residual state at the probe's
  layer, read by a hook during the forward passes that generate already makes (no extra
  pass). A token's state is computed when it is fed back in, so the final token, which is
  never fed back, has no score. The hook reads the block's output before any steering
  addition at that same layer, so the readout is not trivially shifted by alpha.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from . import compute
from .activations import layer_hidden
from .models import ModelHandle
from .steering import POSITIONS, Positions, Unit, as_alphas, raw_alpha, steer, steering_vectors

MAX_NEW_TOKENS = 256


class SharedGumbelSampler(LogitsProcessor):
    """Temperature and top-p per row, then one Gumbel noise vector shared by every row.

    With greedy decoding on top, each row's token is an exact sample from its own
    temperature/top-p distribution, and rows differ only through their logits.
    """

    def __init__(self, seed: int, temperature: float = 0.8, top_p: float = 0.95) -> None:
        if not temperature > 0:
            raise ValueError("temperature must be > 0.")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1].")
        self.gen = torch.Generator().manual_seed(int(seed))
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        s = scores.float() / self.temperature
        if self.top_p < 1:
            s = s.masked_fill(self._top_p_drop(s), float("-inf"))
        u = torch.rand(s.shape[-1], generator=self.gen, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
        g = (-torch.log(-torch.log(u))).to(s.dtype).to(s.device)  # (V,), the same for every row
        return s + g

    def _top_p_drop(self, s: torch.Tensor, k: int = 512) -> torch.Tensor:
        """Mask of tokens outside the smallest set whose probability reaches top_p.

        Sorting a 262k-token vocabulary for every row at every step is slow, so the top k
        are taken first; a row whose top k do not reach top_p falls back to a full sort.
        """
        probs = s.softmax(-1)
        k = min(k, s.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)  # sorted, descending
        drop_top = top_p.cumsum(-1) - top_p > self.top_p  # exclusive cumulative mass past top_p
        drop = torch.ones_like(probs, dtype=torch.bool).scatter(-1, top_i, drop_top)
        short = top_p.sum(-1) <= self.top_p  # rows whose top k do not reach top_p
        if short.any():
            sp, si = probs[short].sort(dim=-1, descending=True)
            full = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, si, sp.cumsum(-1) - sp > self.top_p)
            drop[short] = full
        return drop


class RepetitionGuard(LogitsProcessor):
    """A repetition penalty and a no-repeat n-gram rule over the *generated* tokens only.

    Applied to every row of a batch by the same rule, so rows still differ only through α, and
    the α = 0 row equals a plain ``generate`` call given this same processor. The prompt's
    tokens are not penalised: a reply may name the scenario's people and places.

    * ``penalty`` > 1 (CTRL-style): a logit of a token already generated in that row is divided
      by ``penalty`` when positive and multiplied by it when negative.
    * ``no_repeat_ngram`` = n > 0: a token that would complete an n-gram the row has already
      generated gets -inf.
    """

    def __init__(self, prompt_len: int, penalty: float = 1.0, no_repeat_ngram: int = 0) -> None:
        if not (isinstance(penalty, (int, float)) and 1.0 <= penalty <= 2.0):
            raise ValueError("repetition_penalty must be between 1.0 and 2.0.")
        if not (isinstance(no_repeat_ngram, int) and 0 <= no_repeat_ngram <= 10) or no_repeat_ngram == 1:
            raise ValueError("no_repeat_ngram must be 0 (off) or an integer from 2 to 10.")
        self.prompt_len, self.penalty, self.n = prompt_len, float(penalty), no_repeat_ngram

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        gen = input_ids[:, self.prompt_len:]  # (B, T_generated)
        if gen.shape[1] == 0:
            return scores
        scores = scores.clone()
        if self.penalty != 1.0:
            s = scores.gather(1, gen)
            scores.scatter_(1, gen, torch.where(s < 0, s * self.penalty, s / self.penalty))
        n = self.n
        if n and gen.shape[1] >= n:
            for b in range(gen.shape[0]):
                row = gen[b].tolist()
                prefix = tuple(row[len(row) - n + 1:])
                banned = [row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i:i + n - 1]) == prefix]
                if banned:
                    scores[b, banned] = float("-inf")
        return scores


class _Cancel(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


MAX_PROMPT_TOKENS = 2048


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """Everything one batched generation needs, checked once (``__post_init__``).

    Attributes:
        prompt: the full prompt string, chat template included (``prompts.render_prompt``).
        alphas: one alpha per row, in ``unit``; 0 is the unsteered baseline.
        layer: the decoder block whose output is steered (the layer convention of ``activations``).
        directions: (L, H) unit directions of a probe; row b adds ``alphas[b]`` times ``directions[layer]``.
        unit: "relative" (alpha times the layer's mean residual norm) or "raw".
        mean_norms: (L,) mean residual norms; needed for relative alpha.
        row_directions: (B, H) one direction per row instead (e.g. probe rows beside random-direction rows).
        positions: "all", "prompt" or "generated" (see ``steering``).
        readout_layer: where the live token scores are read (default: ``layer``), along ``directions``.
        greedy, seed, temperature, top_p: sampling; sampled rows share one Gumbel noise (see the module docstring).
        repetition_penalty, no_repeat_ngram: ``RepetitionGuard``, applied to every row alike (1.0 and 0: off).
    """

    prompt: str
    alphas: tuple[float, ...]
    layer: int
    directions: torch.Tensor
    unit: Unit = "relative"
    mean_norms: torch.Tensor | None = None
    row_directions: torch.Tensor | None = None
    positions: Positions = "all"
    readout_layer: int | None = None
    max_new_tokens: int = 64
    min_new_tokens: int = 0
    greedy: bool = True
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.0  # off; the app and the sweep use each model's models.generation_defaults
    no_repeat_ngram: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("Give a prompt.")
        n = self.max_new_tokens
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS}.")
        if self.positions not in POSITIONS:
            raise ValueError(f"Unknown positions {self.positions!r}; choose from {POSITIONS}.")
        if self.directions.ndim != 2:
            raise ValueError(f"directions must be (layers, hidden), not shape {tuple(self.directions.shape)}.")
        object.__setattr__(self, "alphas", tuple(as_alphas(list(self.alphas)).tolist()))
        if self.row_directions is not None and self.row_directions.shape[0] != len(self.alphas):
            raise ValueError(f"Got {self.row_directions.shape[0]} row directions for {len(self.alphas)} alphas.")

    @property
    def readout(self) -> int:
        return self.layer if self.readout_layer is None else self.readout_layer


@dataclass
class RowScore:
    """Scores of one finished reply: the probe (pooled over the reply) and the judge, if any."""

    probe_layer: int
    probe_score: float
    judge_logodds: float | None = None
    judge_probability: float | None = None
    gates: dict | None = None  # study.gates verdicts (the app fills it for scenario prompts), else None


@dataclass
class Row:
    alpha: float
    raw_alpha: float
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    token_scores: list[float] = field(default_factory=list)  # live readout, one per generated token but the last


@dataclass
class SideBySide:
    prompt: str
    layer: int
    unit: str
    positions: str
    greedy: bool
    seed: int
    rows: list[Row]
    seconds: float = 0.0
    new_tokens: int = 0
    stopped: bool = False
    readout_layer: int | None = None  # where the live token scores are read
    scores: list[RowScore] = field(default_factory=list)  # per row, added after generation (probe and judge scores)

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def readout(handle: ModelHandle, layer: int, direction: torch.Tensor, sink: list) -> Iterator[list]:
    """Append, for each decode step, the (B,) projections of the fed-back token's state."""
    d = direction.to(device=handle.device, dtype=torch.float32).reshape(-1)
    seen = {"prompt": False}

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if compute.hooks_paused():  # a short job's forward pass between decode steps
            return None
        h = layer_hidden(output)
        if not seen["prompt"]:  # the first pass is the prompt
            seen["prompt"] = True
            return None
        sink.append((h[:, -1].float() @ d).cpu())
        return None

    with handle.lock:
        hd = handle.layers[handle.check_layer(layer)].register_forward_hook(hook)
        try:
            yield sink
        finally:
            hd.remove()


class _RowStreamer:
    """A generate() streamer that hands each step's (B,) token ids to a callback; the prompt is skipped."""

    def __init__(self, on_step: Callable[[list[int]], None]) -> None:
        self.on_step = on_step
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.on_step(value.reshape(-1).tolist())
        compute.run_urgent()  # scores queued meanwhile run here, between decode steps

    def end(self) -> None:
        pass


@dataclass
class _Plan:
    """What ``_run`` needs, derived once from a request: tensors on the model's device and the result to fill."""

    request: GenerationRequest
    alphas: torch.Tensor  # (B,)
    vectors: dict[int, torch.Tensor]  # {layer: (H,) or (B, H)}, alpha multiplies these
    ids: torch.Tensor  # (B, T) the prompt on every row
    processors: LogitsProcessorList
    readout_direction: torch.Tensor  # (H,)
    cancel: threading.Event
    result: SideBySide
    scores: list[torch.Tensor] = field(default_factory=list)  # (B,) readout per decode step


def _plan(handle: ModelHandle, req: GenerationRequest, cancel: threading.Event | None) -> _Plan:
    handle.check_layer(req.layer)
    readout_layer = handle.check_layer(req.readout)
    per_row = req.row_directions if req.row_directions is not None else req.directions[req.layer]
    vectors = steering_vectors(handle, {req.layer: per_row}, req.unit, req.mean_norms)
    enc = handle.tokenizer(req.prompt, return_tensors="pt", add_special_tokens=not handle.is_chat)
    ids = enc["input_ids"].to(handle.device).repeat(len(req.alphas), 1)  # same prompt on every row: no padding
    if ids.shape[1] > MAX_PROMPT_TOKENS:
        raise ValueError(f"The prompt is {ids.shape[1]} tokens; the limit is {MAX_PROMPT_TOKENS}.")
    processors = LogitsProcessorList()
    if req.repetition_penalty != 1.0 or req.no_repeat_ngram:
        processors.append(RepetitionGuard(ids.shape[1], req.repetition_penalty, req.no_repeat_ngram))
    if not req.greedy:
        processors.append(SharedGumbelSampler(req.seed, req.temperature, req.top_p))
    norm = None if req.mean_norms is None else float(torch.as_tensor(req.mean_norms)[req.layer])
    rows = [Row(alpha=a, raw_alpha=raw_alpha(a, req.unit, norm)) for a in req.alphas]
    result = SideBySide(prompt=req.prompt, layer=req.layer, unit=req.unit, positions=req.positions, greedy=req.greedy,
                        seed=req.seed, rows=rows, readout_layer=readout_layer)
    return _Plan(request=req, alphas=torch.tensor(req.alphas, dtype=torch.float32), vectors=vectors, ids=ids,
                 processors=processors, readout_direction=req.directions[readout_layer], cancel=cancel or threading.Event(),
                 result=result)


def _run(handle: ModelHandle, plan: _Plan, on_step: Callable[[list[int]], None]) -> None:
    """Run one batched generate call for ``plan`` in the current thread; ``on_step`` gets each step's ids."""
    req = plan.request
    with ExitStack() as stack:
        stack.enter_context(handle.lock)
        stack.enter_context(readout(handle, plan.result.readout_layer or req.layer, plan.readout_direction, plan.scores))
        stack.enter_context(steer(handle, plan.vectors, plan.alphas, positions=req.positions, prompt_len=plan.ids.shape[1]))
        with torch.inference_mode():
            handle.model.generate(
                input_ids=plan.ids, attention_mask=torch.ones_like(plan.ids), max_new_tokens=req.max_new_tokens,
                min_new_tokens=min(req.min_new_tokens, req.max_new_tokens), do_sample=False,
                logits_processor=plan.processors, streamer=_RowStreamer(on_step),
                stopping_criteria=StoppingCriteriaList([_Cancel(plan.cancel)]),
                pad_token_id=handle.tokenizer.pad_token_id, eos_token_id=handle.tokenizer.eos_token_id, num_beams=1,
                temperature=None, top_p=None, top_k=None)


class _Collector:
    """Turns each step's token ids into per-row token lists (rows stop at their EOS)."""

    def __init__(self, handle: ModelHandle, plan: _Plan) -> None:
        self.tok, self.plan, self.result = handle.tokenizer, plan, plan.result
        self.eos = handle.tokenizer.eos_token_id
        self.done = [False] * len(self.result.rows)
        self.t0 = time.perf_counter()

    def add(self, step: list[int]) -> None:
        for b, tok in enumerate(step):  # (B,) token ids of this step
            if self.done[b]:
                continue
            if tok == self.eos:
                self.done[b] = True
                continue
            self.result.rows[b].token_ids.append(int(tok))
        self.result.new_tokens += 1

    def refresh(self) -> SideBySide:
        """Decode every row and attach the readout scores seen so far."""
        scores = list(self.plan.scores)  # appended by the generation thread before the next step is queued
        for b, row in enumerate(self.result.rows):
            row.token_scores = [float(s[b]) for s in scores[: len(row.token_ids)]]
            row.text = self.tok.decode(row.token_ids, skip_special_tokens=True)
        self.result.seconds = time.perf_counter() - self.t0
        return self.result

    def finish(self) -> SideBySide:
        self.result.stopped = self.plan.cancel.is_set()
        return self.refresh()


def stream_side_by_side(handle: ModelHandle, req: GenerationRequest,
                        cancel: threading.Event | None = None) -> Iterator[SideBySide]:
    """Yield a growing ``SideBySide`` after every decode step; the last one is final.

    The generation runs on the compute thread (``compute.py``). Closing the iterator early
    stops it; so does setting ``cancel``.
    """
    plan = _plan(handle, req, cancel)
    col = _Collector(handle, plan)
    q: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            _run(handle, plan, q.put)
        finally:
            q.put(None)

    future = compute.submit(work)
    finished = False
    try:
        while True:
            step = q.get()
            if step is None:
                finished = True
                break
            col.add(step)
            yield col.refresh()
    finally:
        if not finished:  # the consumer stopped early (closed generator): stop generating, without
            plan.cancel.set()  # waiting, since close() may come from a server's event loop
    future.result()  # re-raises an exception from the generation thread
    yield col.finish()


def side_by_side(handle: ModelHandle, req: GenerationRequest, cancel: threading.Event | None = None) -> SideBySide:
    """One batched generate call in the calling thread; returns one reply per alpha."""
    plan = _plan(handle, req, cancel)
    col = _Collector(handle, plan)
    _run(handle, plan, col.add)
    return col.finish()
