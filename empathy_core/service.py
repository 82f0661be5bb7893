"""What the app does, with no UI: model loading, input checks, scoring and steering.

    >>> svc = Service("smollm2-135m")          # doctest: +SKIP
    >>> svc.start()                           # background load + warm-up   # doctest: +SKIP
    >>> svc.score("smollm2-135m", "I stopped to help her.", layer=None).verdict   # doctest: +SKIP

The Gradio layer (``app.py`` and ``empathy_core/ui``) only turns these calls into widgets.
Every method checks its inputs on the server and raises ``UserError`` with a message that
says what to fix; the UI shows it and keeps serving.

* Models are per request, not global: each call names its model, and up to ``max_models``
  stay loaded. One visitor switching models never changes another visitor's model, and no
  steering state lives on a shared model outside a call (hooks are removed when it ends).
* All torch work runs on the one compute thread of ``generation`` (see the note there on
  OpenMP teams), so scoring, loading and generation never compete for the two cores.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from . import dataset
from .activations import extract, score_tokens
from .cli import PRECOMPUTED, model_dir
from .generation import MAX_NEW_TOKENS, RawPrompt, SideBySide, on_compute, side_by_side, stream_side_by_side
from .models import BUNDLED, REGISTRY, ModelHandle, ModelUnavailable, generation_defaults, load_model
from .probes import Probe, load_direction_file
from .prompts import SYSTEM_TEMPLATE, base_prefix, chat_messages

MAX_TEXT_CHARS = 20_000  # rejected before tokenizing
MAX_TEXT_TOKENS = 512
MAX_PROMPT_TOKENS = 1024
ALPHA_LIMIT = 1.0  # relative units: alpha * (mean residual norm of the layer)
DOSE_POINTS = 7
MAX_SEED = 2**31 - 1
OUTPUT_MAX_AGE_S = 2 * 3600  # result and CSV files the app wrote for download
CUSTOM = "custom"  # scenario choice meaning "my own prompt, no game context"


HUB_FALLBACK_NOTE = ("(Loaded from the Hugging Face hub at full precision: the committed probes were fitted on the "
                     "bundled Q4 weights, so scores differ slightly from the replayed results.)")


class UserError(ValueError):
    """Bad input or an unavailable resource; the message says what to do."""


def hub_cached(hub_id: str) -> bool:
    """Whether a hub model's config is in the local Hugging Face cache (no network used)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:  # an unusual cache layout: treat as absent
        return False


def model_choices(check_hub: bool = True) -> list[tuple[str, str]]:
    """(label, key) for the selector: bundled models first, then the study's models by hub id,
    each labelled with whether it can load here (local cache, hub reachable, or neither)."""
    from .models import hub_reachable

    online = check_hub and os.environ.get("HF_HUB_OFFLINE") != "1" and hub_reachable(timeout=2.0)
    out = []
    for key, spec in REGISTRY.items():
        if key in BUNDLED:
            where = "bundled, offline"
        elif hub_cached(spec.hub_id):
            where = f"study model {spec.hub_id}, in the local cache"
        elif online:
            where = f"study model {spec.hub_id}, downloads on first use"
        else:
            where = f"study model {spec.hub_id}, not available offline"
        out.append((f"{key} ({where})", key))
    return out


def scenario_choices() -> list[tuple[str, str]]:
    return [(s.title, s.id) for s in dataset.scenarios().values()] + [("Your own prompt (no game)", CUSTOM)]


def examples(per_scenario: int = 1) -> list[tuple[str, str, str]]:
    """(scenario title, label, text) from the test split: an empathic and a task reply per scenario."""
    out = []
    titles = {s.id: s.title for s in dataset.scenarios().values()}
    for sid in dataset.SCENARIO_IDS:
        pairs = [p for p in dataset.load_pairs() if p.scenario == sid and p.split == "test"][:per_scenario]
        for p in pairs:
            out += [(titles[sid], "empathic", p.empathic), (titles[sid], "task-focused", p.task)]
    return out


def default_prompt(handle_is_chat: bool, scenario: str) -> str:
    """The editable part of a scenario's prompt: the in-game user turn (chat models) or the story prefix (base models)."""
    if scenario == CUSTOM:
        return "My friend just told me she failed her driving test again. What should I say to her?"
    if handle_is_chat:
        return chat_messages(scenario)[1]["content"]
    return base_prefix(scenario) + " "  # exactly the sweep's prompt (see prompts.render_prompt)


def describe_scenario(scenario: str) -> str:
    if scenario == CUSTOM:
        return "Your own prompt, sent as a plain user message with no game context."
    s = dataset.get_scenario(scenario)
    return (f"**{s.title}.** {s.setting} *Objective:* {s.objective} *Pressure:* {s.pressure}  \n"
            f"Task-focused choice: {s.task_choice} Empathic choice: {s.empathic_choice}")


def check_int(name: str, value, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number from {lo} to {hi}, not {value!r}.") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise UserError(f"{name} must be a whole number from {lo} to {hi} (got {value!r}).")
    return int(f)


def check_alpha(alpha, limit: float = ALPHA_LIMIT) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise UserError(f"α must be a number, not {alpha!r}.") from None
    if not math.isfinite(a):
        raise UserError("α must be a finite number (got NaN or infinity).")
    if abs(a) > limit:
        raise UserError(f"α = {a:g} is out of range: use a value from {-limit:g} to {limit:g} (relative units).")
    return a


@dataclass
class ScoreResult:
    model: str
    layer: int  # the layer of the heatmap
    best_layer: int | None
    per_layer: list[float]
    tokens: list[str]
    token_scores: list[float]
    verdict: dict = field(default_factory=dict)
    seconds: float = 0.0
    threshold: float = 0.0  # the probe's threshold at ``layer`` (0 for an uploaded bare direction): the heatmap's centre


@dataclass
class Status:
    state: str = "starting"  # starting | loading | warming | ready | error
    message: str = "Starting…"
    model: str = ""
    started: float = field(default_factory=time.perf_counter)
    ready_after_s: float | None = None
    warmup_s: float | None = None


class Service:
    def __init__(self, default_model: str = "smollm2-135m", max_models: int = 2, root: Path | None = None,
                 judge: bool = True):
        if default_model not in REGISTRY:
            raise UserError(f"Unknown default model {default_model!r}; choose one of {', '.join(REGISTRY)}.")
        self.default_model = default_model
        self.max_models = max_models
        self.root = root or PRECOMPUTED
        self.use_judge = judge
        self._handles: OrderedDict[str, ModelHandle] = OrderedDict()
        self._cancels: dict[str, threading.Event] = {}
        self._judge = None
        self._lock = threading.Lock()
        self.status = Status(model=default_model)
        self._startup = None
        self.out_dir = Path(tempfile.mkdtemp(prefix="empathy-app-"))
        self._last_tidy = time.time()

    # ------------------------------------------------------------------ models
    def start(self, warm: bool = True):
        """Load the default model on the compute thread, warm it with a short generation, then the judge."""
        self._startup = on_compute(self._startup_work, warm, wait=False)
        return self._startup

    def wait_ready(self, timeout: float | None = None) -> Status:
        if self._startup is not None:
            self._startup.result(timeout)
        return self.status

    def _startup_work(self, warm: bool) -> None:
        st = self.status
        try:
            st.state, st.message = "loading", f"Loading {self.default_model}…"
            h = self._load(self.default_model)
            if warm:
                st.state, st.message = "warming", f"Warming up {self.default_model} with a short generation…"
                t = time.perf_counter()
                # An unsteered pair (alpha 0 on a zero direction) warms the same code path, probe or not.
                side_by_side(h, "listener", [0.0, 0.0], layer=h.n_layers // 2,
                             direction=torch.zeros(h.n_layers, h.hidden_size), mean_norms=torch.ones(h.n_layers),
                             max_new_tokens=8)
                st.warmup_s = time.perf_counter() - t
            if self.use_judge:
                st.message = "Loading the judge (MiniLM embedding classifier)…"
                self._get_judge()
            st.ready_after_s = time.perf_counter() - st.started
            st.state = "ready"
            st.message = (f"Ready: {self.default_model} loaded in {h.load_seconds:.1f} s"
                          f"{' from cache' if h.from_cache else ''}; app ready {st.ready_after_s:.1f} s after start."
                          + (f" {HUB_FALLBACK_NOTE}" if h.revision.startswith("hub:") and h.key in BUNDLED else ""))
        except Exception as exc:  # shown in the status line; requests get their own messages
            st.state, st.message = "error", f"Start-up failed: {exc}"

    def status_line(self) -> str:
        s = self.status
        label = {"ready": "●", "error": "✖"}.get(s.state, "…")  # plain glyphs: emoji fonts are often missing
        with self._lock:
            loaded = ", ".join(self._handles) or "none"
        return f"{label} {s.message} Loaded models: {loaded}."

    def _load(self, key: str) -> ModelHandle:
        """Runs on the compute thread."""
        with self._lock:
            if key in self._handles:
                self._handles.move_to_end(key)
                return self._handles[key]
            if key not in BUNDLED:  # a study model is billions of parameters: never hold two
                for k in [k for k in self._handles if k not in BUNDLED]:
                    del self._handles[k]
        gc.collect()
        h = load_model(key)
        with self._lock:
            self._handles[key] = h
            while len(self._handles) > self.max_models:
                self._handles.popitem(last=False)
        return h

    def handle(self, key: str) -> ModelHandle:
        key = self.check_model(key)
        with self._lock:
            if key in self._handles:
                self._handles.move_to_end(key)
                return self._handles[key]
        try:
            return on_compute(self._load, key)
        except ModelUnavailable as exc:
            raise UserError(str(exc)) from None

    def check_model(self, key) -> str:
        if not isinstance(key, str) or not key.strip():
            raise UserError("Choose a model.")
        key = key.strip()
        if key not in REGISTRY:
            raise UserError(f"Unknown model {key!r}. Choose one of: {', '.join(REGISTRY)}.")
        return key

    def has_results(self, key: str) -> bool:
        return (model_dir(key, self.root) / "probes.safetensors").exists()

    def probe(self, key: str) -> Probe:
        key = self.check_model(key)
        path = model_dir(key, self.root) / "probes.safetensors"
        if not path.exists():
            raise UserError(f"There is no precomputed probe for {key}. Run `python -m empathy_core precompute --model {key}` "
                            f"where the model can be loaded, or upload a probe file for it.")
        return _cached_probe(str(path), path.stat().st_mtime)

    def detection(self, key: str) -> dict | None:
        path = model_dir(key, self.root) / "detection.json"
        return _cached_json(str(path), path.stat().st_mtime) if path.exists() else None

    def steering(self, key: str) -> dict | None:
        path = model_dir(key, self.root) / "steering.json"
        return _cached_json(str(path), path.stat().st_mtime) if path.exists() else None

    def best_layers(self, key: str) -> tuple[int, int]:
        """(best detection layer, best steering layer); the steering one falls back to the detection one."""
        det, st = self.detection(key), self.steering(key)
        if det is None:
            raise UserError(f"No precomputed detection results for {key}.")
        best = int(det["best_layer"])
        return best, int(st["best_steering_layer"]) if st else best

    def _get_judge(self):
        if self._judge is None and self.use_judge:
            from .judges import EmbeddingJudge

            self._judge = EmbeddingJudge()
        return self._judge

    # ------------------------------------------------------------------ inputs
    def _directions(self, handle: ModelHandle, upload: str | None) -> tuple[torch.Tensor, Probe | None]:
        """The probe's (L, H) directions, or those of an uploaded safetensors file (checked first)."""
        if upload:
            p = Path(upload)
            if p.suffix.lower() != ".safetensors":
                raise UserError(f"Upload a .safetensors file (got {p.suffix or 'no extension'}); pickled files are never loaded.")
            try:
                full = Probe.load(p)
            except (ValueError, FileNotFoundError, OSError):
                full = None  # not a whole probe file: maybe a bare direction
            if full is not None:
                try:
                    full.check_compatible(handle.n_layers, handle.hidden_size, handle.key)
                except ValueError as exc:
                    raise UserError(f"The uploaded probe does not fit this model: {exc}") from None
                return full.directions, full
            try:
                dirs = load_direction_file(p, handle.n_layers, handle.hidden_size)
            except (ValueError, FileNotFoundError, OSError) as exc:
                raise UserError(f"The uploaded file cannot be used: {exc}") from None
            if not bool((dirs.norm(dim=1) > 0).any()):
                raise UserError("The uploaded direction is all zeros: it would neither score nor steer anything.")
            return dirs, None
        probe = self.probe(handle.key)
        return probe.directions, probe

    @staticmethod
    def uploaded_layers(dirs: torch.Tensor) -> list[int]:
        return [int(i) for i in torch.nonzero(dirs.norm(dim=1) > 0).reshape(-1)]

    def _require_layer(self, dirs: torch.Tensor, layer: int) -> None:
        """An uploaded file may hold vectors for some layers only (e.g. one llama.cpp ``direction.N``)."""
        have = self.uploaded_layers(dirs)
        if layer not in have:
            shown = ", ".join(map(str, have[:12])) + (" …" if len(have) > 12 else "")
            raise UserError(f"The uploaded direction has no vector for layer {layer}; it has vectors for layer(s) {shown}. "
                            f"Choose one of those layers.")

    def check_text(self, handle: ModelHandle, text) -> str:
        if not isinstance(text, str) or not text.strip():
            raise UserError("The text is empty: type or pick a reply to score.")
        if len(text) > MAX_TEXT_CHARS:
            raise UserError(f"The text is {len(text):,} characters; the limit is {MAX_TEXT_TOKENS} tokens "
                            f"(about {MAX_TEXT_CHARS:,} characters at most). Shorten it.")
        n = len(handle.tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > MAX_TEXT_TOKENS:
            raise UserError(f"The text is {n} tokens; the limit is {MAX_TEXT_TOKENS}. Shorten it.")
        return text

    def check_layer(self, handle: ModelHandle, layer, default: int) -> int:
        if layer is None or layer == "":
            return default
        return check_int("Layer", layer, 0, handle.n_layers - 1)

    # ------------------------------------------------------------------ scoring
    def score(self, key: str, text, layer=None, upload: str | None = None) -> ScoreResult:
        h = self.handle(key)
        text = self.check_text(h, text)
        dirs, probe = self._directions(h, upload)
        best = self.best_layers(h.key)[0] if self.has_results(h.key) else None
        if upload:  # a user's file: its own layers decide the default, and the verdict is read where asked
            have = self.uploaded_layers(dirs)
            layer = self.check_layer(h, layer, best if best in have else have[0])
            self._require_layer(dirs, layer)
            v_layer = layer
        else:
            layer = self.check_layer(h, layer, best if best is not None else h.n_layers // 2)
            v_layer = best if best is not None else layer
        t0 = time.perf_counter()
        ts = on_compute(score_tokens, h, text, dirs)
        per_layer = ts.per_layer.tolist()
        s = per_layer[v_layer]
        verdict = {"layer": v_layer, "score": s, "uploaded": bool(upload)}
        if probe is not None:  # ours, or an uploaded whole probe file with its own calibration
            p = probe.probability(s, v_layer)
            verdict.update(probability=p, threshold=float(probe.thresholds[v_layer]),
                           label="empathic" if p >= 0.5 else "task-focused")
        return ScoreResult(model=h.key, layer=layer, best_layer=best, per_layer=per_layer, tokens=ts.tokens,
                           token_scores=ts.per_token[layer].tolist(), verdict=verdict, seconds=time.perf_counter() - t0,
                           threshold=float(probe.thresholds[layer]) if probe is not None else 0.0)

    # ------------------------------------------------------------------ steering
    def _steer_args(self, key, scenario, prompt, alpha, layer, max_new_tokens, seed, greedy, upload, alpha_limit=ALPHA_LIMIT):
        h = self.handle(key)
        if scenario not in (*dataset.SCENARIO_IDS, CUSTOM):
            raise UserError(f"Unknown scenario {scenario!r}. Choose one of: {', '.join((*dataset.SCENARIO_IDS, CUSTOM))}.")
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("The prompt is empty: pick a scenario or write a prompt.")
        if len(prompt) > MAX_TEXT_CHARS:
            raise UserError(f"The prompt is {len(prompt):,} characters; keep it under {MAX_PROMPT_TOKENS} tokens.")
        a = check_alpha(alpha, alpha_limit)
        dirs, probe = self._directions(h, upload)
        norms = probe.mean_norms if probe is not None else self.probe(h.key).mean_norms
        default_layer = self.best_layers(h.key)[1] if self.has_results(h.key) else h.n_layers // 2
        layer = self.check_layer(h, layer, default_layer)
        if upload:
            self._require_layer(dirs, layer)
        n = check_int("Max new tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
        seed = check_int("Seed", seed if seed not in (None, "") else 0, 0, MAX_SEED)
        full = self.render(h, scenario, prompt)
        n_prompt = len(h.tokenizer(full, add_special_tokens=False)["input_ids"])
        if n_prompt > MAX_PROMPT_TOKENS:
            raise UserError(f"The prompt is {n_prompt} tokens; the limit is {MAX_PROMPT_TOKENS}. Shorten it.")
        # Live readout: our probe's best detection layer; an uploaded direction is read where it steers.
        readout = self.best_layers(h.key)[0] if self.has_results(h.key) and not upload else layer
        kw = dict(direction=dirs, mean_norms=norms, readout_layer=readout, readout_direction=dirs[readout],
                  max_new_tokens=n, greedy=bool(greedy), seed=seed, **generation_defaults(h.key))
        return h, full, a, layer, kw

    def render(self, h: ModelHandle, scenario: str, prompt: str) -> str:
        """The full prompt: scenario system message + the edited user turn (chat models), or the text as is (base models)."""
        if not h.is_chat:
            return prompt
        msgs = [{"role": "user", "content": prompt}]
        if scenario != CUSTOM:
            s = dataset.get_scenario(scenario)
            msgs.insert(0, {"role": "system", "content": SYSTEM_TEMPLATE.format(title=s.title, setting=s.setting,
                                                                                 objective=s.objective)})
        return h.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def stream_steer(self, key, scenario, prompt, alpha, layer=None, max_new_tokens=64, seed=0, greedy=True,
                     upload=None, cancel: threading.Event | None = None) -> Iterator[SideBySide]:
        """Baseline (alpha 0) and steered rows from one batched call, yielded as they grow; the last is scored."""
        h, full, a, layer, kw = self._steer_args(key, scenario, prompt, alpha, layer, max_new_tokens, seed, greedy, upload)
        last = None
        for last in stream_side_by_side(h, RawPrompt(full), [0.0, a], layer, cancel=cancel, **kw):
            yield last
        self.add_scores(h, last, kw["readout_layer"], kw["direction"])
        yield last

    def dose_response(self, key, scenario, prompt, alpha, layer=None, max_new_tokens=48, seed=0, greedy=True,
                      upload=None, points: int = DOSE_POINTS, cancel: threading.Event | None = None) -> SideBySide:
        """One batched call over ``points`` alphas from -|alpha| to +|alpha| (0.3 when alpha is 0), then scored."""
        a = abs(check_alpha(alpha))
        a = a if a > 0 else 0.3
        alphas = [float(x) for x in np.round(np.linspace(-a, a, points), 4)]
        h, full, _, layer, kw = self._steer_args(key, scenario, prompt, a, layer, max_new_tokens, seed, greedy, upload)
        res = on_compute(side_by_side, h, RawPrompt(full), alphas, layer, cancel=cancel, **kw)
        self.add_scores(h, res, kw["readout_layer"], kw["direction"])
        return res

    def add_scores(self, h: ModelHandle, res: SideBySide, layer: int, dirs: torch.Tensor) -> None:
        """Probe score (pooled, at the probe layer) and judge score of each finished reply, as row attributes."""
        texts = [r.text if r.text.strip() else "." for r in res.rows]
        acts = on_compute(extract, h, texts, "mean", None, 16)
        probe_scores = (acts.pooled[:, layer].float() @ dirs[layer].float()).tolist()
        judge = on_compute(self._get_judge) if self.use_judge else None
        judge_scores = on_compute(judge.score, texts).tolist() if judge is not None else [None] * len(texts)
        res.scores = [{"probe_layer": layer, "probe_score": p, "judge_logodds": j,
                       "judge_probability": (1 / (1 + math.exp(-j))) if j is not None else None}
                      for p, j in zip(probe_scores, judge_scores)]

    # ------------------------------------------------------------------ helpers for the UI
    def begin(self, session: str) -> threading.Event:
        """A fresh cancel event for this session's next generation."""
        ev = threading.Event()
        with self._lock:
            self._cancels[session] = ev
            if len(self._cancels) > 1000:  # forget the oldest sessions
                for k in list(self._cancels)[:500]:
                    self._cancels.pop(k, None)
        return ev

    def stop(self, session: str) -> bool:
        ev = self._cancels.get(session)
        if ev is not None:
            ev.set()
        return ev is not None

    def model_info(self, key: str) -> dict:
        """What the UI needs to lay out controls for a model, from precomputed results (no loading)."""
        key = self.check_model(key)
        det = self.detection(key)
        info = {"key": key, "is_chat": REGISTRY[key].chat, "has_results": det is not None}
        if det is not None:
            best, steer_best = self.best_layers(key)
            info.update(n_layers=int(det["n_layers"]), hidden_size=int(det["hidden_size"]), best_layer=best,
                        best_steering_layer=steer_best)
        elif key in self._handles:
            h = self._handles[key]
            info.update(n_layers=h.n_layers, hidden_size=h.hidden_size, best_layer=h.n_layers // 2,
                        best_steering_layer=h.n_layers // 2)
        return info

    def raw_alpha(self, key: str, alpha, layer) -> tuple[float, float]:
        """(raw alpha, the layer's mean residual norm) for a relative alpha."""
        a = check_alpha(alpha)
        probe = self.probe(key)
        layer = check_int("Layer", layer, 0, probe.n_layers - 1)
        norm = float(probe.mean_norms[layer])
        return a * norm, norm

    def output_path(self, stem: str, suffix: str, content: bytes) -> str:
        """Write ``content`` to this app's own output folder (never a path taken from a request).

        Files are named by their content, so a chart replayed on every page load is written once;
        files older than ``OUTPUT_MAX_AGE_S`` are removed as new ones arrive.
        """
        now = time.time()
        if now - self._last_tidy > 600:
            self._last_tidy = now
            for f in self.out_dir.rglob("*"):
                try:
                    if f.is_file() and now - f.stat().st_mtime > OUTPUT_MAX_AGE_S:
                        f.unlink()
                except OSError:
                    pass
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)[:80]
        path = self.out_dir / f"{safe}-{hashlib.sha256(content).hexdigest()[:16]}{suffix}"
        if not path.exists():
            tmp = path.with_suffix(path.suffix + f".{threading.get_ident()}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return str(path)

    def write_json(self, obj: dict, stem: str) -> str:
        return self.output_path(stem, ".json", json.dumps(obj, indent=1, allow_nan=False, default=float).encode())


@lru_cache(maxsize=8)
def _cached_probe(path: str, mtime: float) -> Probe:
    return Probe.load(path)


@lru_cache(maxsize=16)
def _cached_json(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())
