"""Side-by-side steered generation: one batched ``generate`` call, one row per alpha.

    >>> res = side_by_side(handle, "listener", alphas=[0, 4], layer=10, probe=probe)   # doctest: +SKIP
    >>> res.rows[0].text, res.rows[1].text                                             # doctest: +SKIP

* Instruct models get their chat template (system message + in-game messages); base models
  get a story-style continuation prompt (see ``prompts``).
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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from .activations import layer_hidden
from .dataset import SCENARIO_IDS
from .models import ModelHandle
from .prompts import render_prompt
from .steering import Positions, Unit, as_alphas, steer, steering_vectors

MAX_NEW_TOKENS = 256


class SharedGumbelSampler(LogitsProcessor):
    """Temperature and top-p per row, then one Gumbel noise vector shared by every row.

    With greedy decoding on top, each row's token is an exact sample from its own
    temperature/top-p distribution, and rows differ only through their logits.
    """

    def __init__(self, seed: int, temperature: float = 0.8, top_p: float = 0.95):
        if not temperature > 0:
            raise ValueError("temperature must be > 0.")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1].")
        self.gen = torch.Generator().manual_seed(int(seed))
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
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

    def __init__(self, prompt_len: int, penalty: float = 1.0, no_repeat_ngram: int = 0):
        if not (isinstance(penalty, (int, float)) and 1.0 <= penalty <= 2.0):
            raise ValueError("repetition_penalty must be between 1.0 and 2.0.")
        if not (isinstance(no_repeat_ngram, int) and 0 <= no_repeat_ngram <= 10) or no_repeat_ngram == 1:
            raise ValueError("no_repeat_ngram must be 0 (off) or an integer from 2 to 10.")
        self.prompt_len, self.penalty, self.n = prompt_len, float(penalty), no_repeat_ngram

    def __call__(self, input_ids, scores):
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
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


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
    scores: list[dict] = field(default_factory=list)  # per row, added after generation (probe and judge scores)

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def readout(handle: ModelHandle, layer: int, direction: torch.Tensor, sink: list):
    """Append, for each decode step, the (B,) projections of the fed-back token's state."""
    d = direction.to(device=handle.device, dtype=torch.float32).reshape(-1)
    seen = {"prompt": False}

    def hook(module, args, output):
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


class RawPrompt(str):
    """A prompt that is already fully rendered (chat template included): used as is."""


def build_prompt(handle: ModelHandle, prompt_or_scenario: str, moment: str = "", instruction: str = "") -> str:
    """A scenario id becomes its scenario prompt; any other string is the user's message
    (wrapped in the chat template for instruct models, used as-is for base models)."""
    if not isinstance(prompt_or_scenario, str) or not prompt_or_scenario.strip():
        raise ValueError("Give a scenario or a prompt.")
    if isinstance(prompt_or_scenario, RawPrompt):
        return str(prompt_or_scenario)
    if prompt_or_scenario in SCENARIO_IDS:
        return render_prompt(handle.tokenizer, prompt_or_scenario, moment, use_chat=handle.is_chat, instruction=instruction)
    if handle.is_chat:
        return handle.tokenizer.apply_chat_template([{"role": "user", "content": prompt_or_scenario}], tokenize=False,
                                                    add_generation_prompt=True)
    return prompt_or_scenario


class _RowStreamer:
    """A generate() streamer that hands each step's (B,) token ids to a callback; the prompt is skipped."""

    def __init__(self, on_step):
        self.on_step = on_step
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.on_step(value.reshape(-1).tolist())

    def end(self):
        pass


# One long-lived thread runs streamed generations. On a small CPU, every thread that runs
# torch ops gets its own OpenMP team; once the teams hold more threads than there are
# cores, libgomp stops spinning between parallel regions and a 2-row decode step gets
# ~1.8x slower (measured here). Reusing one thread keeps that to one extra team, and the
# non-streaming path runs in the caller's thread and adds none.
_COMPUTE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="empathy-generate")


def on_compute(fn, *args, wait: bool = True, **kwargs):
    """Run ``fn`` on the compute thread: its result (``wait``), or the future.

    Called from the compute thread itself, it runs ``fn`` directly instead of deadlocking.
    """
    if threading.current_thread().name.startswith("empathy-generate"):
        if wait:
            return fn(*args, **kwargs)
        raise RuntimeError("Cannot queue work for the compute thread from the compute thread without waiting.")
    future = _COMPUTE.submit(fn, *args, **kwargs)
    return future.result() if wait else future


def _setup(handle, prompt_or_scenario, alphas, layer, direction, unit, mean_norms, max_new_tokens, greedy, seed,
           temperature, top_p, moment, row_directions=None, instruction="", repetition_penalty=1.0, no_repeat_ngram=0):
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS}.")
    a = as_alphas(alphas)
    layers = [layer] if isinstance(layer, int) else list(layer)
    if row_directions is not None:  # (B, H): one direction per row, e.g. probe rows beside random-direction rows
        if row_directions.shape[0] != len(a):
            raise ValueError(f"Got {row_directions.shape[0]} row directions for {len(a)} alphas.")
        vecs = steering_vectors(handle, {L: row_directions for L in layers}, unit, mean_norms)
    else:
        vecs = steering_vectors(handle, {L: direction[L] if direction.ndim == 2 else direction for L in layers}, unit,
                                mean_norms)
    prompt = build_prompt(handle, prompt_or_scenario, moment, instruction)
    enc = handle.tokenizer(prompt, return_tensors="pt", add_special_tokens=not handle.is_chat)
    ids = enc["input_ids"].to(handle.device).repeat(len(a), 1)  # same prompt on every row: no padding
    if ids.shape[1] > 2048:
        raise ValueError(f"The prompt is {ids.shape[1]} tokens; the limit is 2048.")
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0 or no_repeat_ngram:
        processors.append(RepetitionGuard(ids.shape[1], repetition_penalty, no_repeat_ngram))
    if not greedy:
        processors.append(SharedGumbelSampler(seed, temperature, top_p))
    raw = [float(x) * (float(torch.as_tensor(mean_norms)[layers[0]]) if unit == "relative" else 1.0) for x in a]
    rows = [Row(alpha=float(x), raw_alpha=r) for x, r in zip(a, raw)]
    return a, layers, vecs, prompt, ids, processors, rows


def _run(handle, plan: dict, on_step) -> None:
    """Run one batched generate call for ``plan`` in the current thread; ``on_step`` gets each step's ids."""
    with ExitStack() as stack:
        stack.enter_context(handle.lock)
        stack.enter_context(readout(handle, plan["r_layer"], plan["r_dir"], plan["scores"]))
        stack.enter_context(steer(handle, plan["vecs"], plan["alphas"], positions=plan["positions"],
                                  prompt_len=plan["ids"].shape[1]))
        with torch.inference_mode():
            ids = plan["ids"]
            handle.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=plan["max_new_tokens"],
                min_new_tokens=plan["min_new_tokens"], do_sample=False, logits_processor=plan["processors"],
                streamer=_RowStreamer(on_step), max_time=plan["max_time"],
                stopping_criteria=StoppingCriteriaList([_Cancel(plan["cancel"])]),
                pad_token_id=handle.tokenizer.pad_token_id, eos_token_id=handle.tokenizer.eos_token_id, num_beams=1,
                temperature=None, top_p=None, top_k=None)


def _plan(handle, prompt_or_scenario, alphas, layer, direction, unit="relative", mean_norms=None, readout_layer=None,
          readout_direction=None, max_new_tokens=64, greedy=True, seed=0, temperature=0.8, top_p=0.95, max_time=None,
          positions: Positions = "all", moment="", min_new_tokens=0, cancel=None, row_directions=None, instruction="",
          repetition_penalty=1.0, no_repeat_ngram=0):
    a, layers, vecs, prompt, ids, processors, rows = _setup(
        handle, prompt_or_scenario, alphas, layer, direction, unit, mean_norms, max_new_tokens, greedy, seed,
        temperature, top_p, moment, row_directions, instruction, repetition_penalty, no_repeat_ngram)
    r_layer = layers[0] if readout_layer is None else handle.check_layer(readout_layer)
    r_dir = readout_direction if readout_direction is not None else (direction[r_layer] if direction.ndim == 2 else direction)
    result = SideBySide(prompt=prompt, layer=layers[0], unit=unit, positions=positions, greedy=greedy, seed=seed, rows=rows,
                        readout_layer=r_layer)
    return result, {"alphas": a, "vecs": vecs, "ids": ids, "processors": processors, "r_layer": r_layer, "r_dir": r_dir,
                    "scores": [], "max_new_tokens": max_new_tokens, "min_new_tokens": min(min_new_tokens, max_new_tokens),
                    "max_time": max_time, "positions": positions, "cancel": cancel or threading.Event()}


class _Collector:
    """Turns each step's token ids into per-row token lists (rows stop at their EOS)."""

    def __init__(self, handle, result: SideBySide):
        self.tok, self.result, self.eos = handle.tokenizer, result, handle.tokenizer.eos_token_id
        self.done = [False] * len(result.rows)

    def add(self, step: list[int]) -> None:
        for b, tok in enumerate(step):  # (B,) token ids of this step
            if self.done[b]:
                continue
            if tok == self.eos:
                self.done[b] = True
                continue
            self.result.rows[b].token_ids.append(int(tok))
        self.result.new_tokens += 1

    def decode(self) -> None:
        for row in self.result.rows:
            row.text = self.tok.decode(row.token_ids, skip_special_tokens=True)

    def finish(self, scores: list, t0: float, cancel: threading.Event) -> SideBySide:
        for b, row in enumerate(self.result.rows):
            row.token_scores = [float(s[b]) for s in scores[: len(row.token_ids)]]
        self.decode()
        self.result.seconds = time.perf_counter() - t0
        self.result.stopped = cancel.is_set()
        return self.result


def stream_side_by_side(handle: ModelHandle, prompt_or_scenario: str, alphas: Sequence[float], layer: int | Sequence[int],
                        direction: torch.Tensor, **kw) -> Iterator[SideBySide]:
    """Yield a growing ``SideBySide`` after every decode step; the last one is final.

    Keyword arguments are those of ``side_by_side``. Closing the iterator early stops the
    generation; so does setting the ``cancel`` event.
    """
    result, plan = _plan(handle, prompt_or_scenario, alphas, layer, direction, **kw)
    col = _Collector(handle, result)
    q: queue.Queue = queue.Queue()
    t0 = time.perf_counter()

    def work():
        try:
            _run(handle, plan, q.put)
        finally:
            q.put(None)

    future = _COMPUTE.submit(work)
    finished = False
    try:
        while True:
            step = q.get()
            if step is None:
                finished = True
                break
            col.add(step)
            col.decode()
            scores = list(plan["scores"])  # appended by the generation thread before the next step is queued
            for b, row in enumerate(result.rows):
                row.token_scores = [float(x[b]) for x in scores[: len(row.token_ids)]]
            result.seconds = time.perf_counter() - t0
            yield result
    finally:
        if not finished:  # the consumer stopped early (closed generator): stop generating, without
            plan["cancel"].set()  # waiting, since close() may come from a server's event loop
    future.result()  # re-raises an exception from the generation thread
    yield col.finish(plan["scores"], t0, plan["cancel"])


def side_by_side(handle: ModelHandle, prompt_or_scenario: str, alphas: Sequence[float], layer: int | Sequence[int],
                 direction: torch.Tensor, unit: Unit = "relative", mean_norms=None, readout_layer: int | None = None,
                 readout_direction: torch.Tensor | None = None, max_new_tokens: int = 64, greedy: bool = True,
                 seed: int = 0, temperature: float = 0.8, top_p: float = 0.95, max_time: float | None = None,
                 positions: Positions = "all", moment: str = "", min_new_tokens: int = 0,
                 cancel: threading.Event | None = None, row_directions: torch.Tensor | None = None,
                 instruction: str = "", repetition_penalty: float = 1.0, no_repeat_ngram: int = 0) -> SideBySide:
    """One batched generate call in the calling thread; returns one reply per alpha.

    ``direction`` is (H,) or an (L, H) probe matrix. ``readout_direction`` defaults to the
    steering direction at ``readout_layer`` (default: the first steered layer). ``row_directions``
    (B, H) steers each row along its own direction (the readout still uses ``direction``).
    ``instruction`` ("empathic" or "task") adds a prompting-baseline instruction to a scenario prompt.
    ``repetition_penalty`` and ``no_repeat_ngram`` apply ``RepetitionGuard`` to every row alike.
    """
    result, plan = _plan(handle, prompt_or_scenario, alphas, layer, direction, unit, mean_norms, readout_layer,
                         readout_direction, max_new_tokens, greedy, seed, temperature, top_p, max_time, positions, moment,
                         min_new_tokens, cancel, row_directions, instruction, repetition_penalty, no_repeat_ngram)
    col = _Collector(handle, result)
    t0 = time.perf_counter()
    _run(handle, plan, col.add)
    return col.finish(plan["scores"], t0, plan["cancel"])
