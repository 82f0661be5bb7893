"""What the app does, with no UI: model loading, input checks, scoring and steering.

    >>> svc = Service("smollm2-135m")          # doctest: +SKIP
    >>> svc.start()                           # background load + warm-up   # doctest: +SKIP
    >>> svc.score("smollm2-135m", "I stopped to help her.", layer=None).verdict   # doctest: +SKIP

The Gradio layer (``app.py`` and ``empathy_core/app/ui``) only turns these calls into widgets.
Every method checks its inputs on the server (``inputs.py``) and raises ``UserError`` with a
message that says what to fix; the UI shows it and keeps serving.

* Models are per request, not global: each call names its model, and up to ``max_models``
  stay loaded. One visitor switching models never changes another visitor's model, and no
  steering state lives on a shared model outside a call (hooks are removed when it ends).
* All torch work runs on the one compute thread (``core/compute.py``, with the note on
  OpenMP teams), so scoring, loading and generation never compete for the two cores.
* A model with no precomputed probe can be fitted here (``start_fit``, ``study/fit.py``): the
  fit goes to the user cache, one fit per model at a time, and ``probe``/``detection`` then
  read it (``fit_note`` says "fitted on this machine at TIME"). Models may be registry keys,
  Hugging Face ids or local directories (``check_model``).
* A steering call becomes one frozen ``GenerationRequest`` here (``steer_request``), which
  ``core.generation`` runs: α goes slider -> steer tab -> ``stream_steer`` -> request -> hook.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import store
from ..core.activations import extract, score_tokens
from ..core.compute import on_compute, submit, urgent
from ..core.generation import MAX_NEW_TOKENS, GenerationRequest, RowScore, SideBySide, side_by_side, stream_side_by_side
from ..core.models import BUNDLED, DEFAULT_MODEL, REGISTRY, ModelHandle, generation_defaults, load_model
from ..core.probes import Probe, load_direction_file
from ..core.prompts import render_prompt
from ..core.steering import Positions, raw_alpha
from ..errors import UserError
from ..study.fit import FitJob, FitResult, Fitter, current_fit, read_fit
from .inputs import (  # noqa: F401 (CUSTOM, check_alpha, check_int, examples, ...: re-exported for the UI and tests)
    ALPHA_LIMIT,
    CUSTOM,
    DOSE_POINTS,
    MAX_PROMPT_TOKENS,
    MAX_SEED,
    MAX_TEXT_CHARS,
    MAX_TEXT_TOKENS,
    check_alpha,
    check_int,
    check_positions,
    check_prompt,
    check_scenario,
    default_prompt,
    describe_scenario,
    examples,
    model_choices,
    scenario_choices,
)

log = logging.getLogger(__name__)

OUTPUT_MAX_AGE_S = 2 * 3600  # result and CSV files the app wrote for download
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,95}$")  # org/name, as the hub allows
HUB_FALLBACK_NOTE = ("(Loaded from the Hugging Face hub at full precision: the committed probes were fitted on the "
                     "bundled quantized GGUF weights, so scores differ slightly from the replayed results.)")


@dataclass(frozen=True)
class Verdict:
    """The probe's reading of a text at one layer; probability and label need a calibrated probe."""

    layer: int
    score: float
    uploaded: bool
    probability: float | None = None
    threshold: float | None = None
    label: str | None = None  # "empathic" | "task-focused" | "cannot_judge"
    cannot_judge: str | None = None  # why not: "too_short" | "too_far" (the detection probe's gate)
    method: str | None = None  # the detection method that scored it (None: the study's mean difference or an upload)


@dataclass
class ScoreResult:
    model: str
    layer: int  # the layer of the heatmap
    best_layer: int | None
    per_layer: list[float]
    tokens: list[str]
    token_scores: list[float]
    verdict: Verdict
    seconds: float = 0.0
    threshold: float = 0.0  # the probe's threshold at ``layer`` (0 for an uploaded bare direction): the heatmap's centre
    thresholds: list[float] | None = None  # every layer's threshold of the probe that scored (None for a bare direction)


@dataclass
class Status:
    state: str = "starting"  # starting | loading | warming | ready | error
    message: str = "Starting…"
    model: str = ""
    started: float = field(default_factory=time.perf_counter)
    ready_after_s: float | None = None
    warmup_s: float | None = None


@dataclass
class _Session:
    """Per-visitor state: the cancel event of the running generation and the advanced steering settings."""

    cancel: threading.Event = field(default_factory=threading.Event)
    positions: Positions = "all"


class Service:
    def __init__(self, default_model: str = DEFAULT_MODEL, max_models: int = 2, root: Path | None = None,
                 judge: bool = True) -> None:
        if default_model not in REGISTRY:
            raise UserError(f"Unknown default model {default_model!r}; choose one of {', '.join(REGISTRY)}.")
        self.default_model = default_model
        self.max_models = max_models
        self.root = root or store.PRECOMPUTED
        self.use_judge = judge
        self._handles: OrderedDict[str, ModelHandle] = OrderedDict()
        self._sessions: dict[str, _Session] = {}
        self._judge: Any = None
        self._lock = threading.Lock()
        self.status = Status(model=default_model)
        self._startup: Future[None] | None = None
        self.out_dir = Path(tempfile.mkdtemp(prefix="empathy-app-"))
        atexit.register(shutil.rmtree, self.out_dir, ignore_errors=True)  # per-run downloads go when the process ends
        self._last_tidy = time.time()
        self.fitter = Fitter()

    # ------------------------------------------------------------------ models
    def start(self, warm: bool = True) -> Future[None]:
        """Load the default model on the compute thread, warm it with a short generation, then the judge."""
        self._startup = submit(self._startup_work, warm)
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
                req = GenerationRequest(render_prompt(h.tokenizer, h.is_chat, "listener"), alphas=(0.0, 0.0),
                                        layer=h.n_layers // 2, directions=torch.zeros(h.n_layers, h.hidden_size),
                                        mean_norms=torch.ones(h.n_layers), max_new_tokens=8)
                side_by_side(h, req)
                st.warmup_s = time.perf_counter() - t
            if self.use_judge:
                st.message = "Loading the judge (MiniLM embedding classifier)…"
                self._get_judge()
            st.ready_after_s = time.perf_counter() - st.started
            st.state = "ready"
            st.message = (f"Ready: {self.default_model} loaded in {h.load_seconds:.1f} s"
                          f"{' from cache' if h.from_cache else ''}; app ready {st.ready_after_s:.1f} s after start."
                          + (f" {HUB_FALLBACK_NOTE}" if h.revision.startswith("hub:") and h.key in BUNDLED else ""))
        except UserError as exc:  # e.g. the model is not installed: say what to do
            log.error("start-up failed: %s", exc)
            st.state, st.message = "error", f"Start-up failed: {exc}"
        except Exception as exc:  # a bug: the traceback goes to the log, the status line says where to look
            log.exception("start-up failed")
            st.state, st.message = "error", f"Start-up failed ({type(exc).__name__}); the traceback is in the log."

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
        h = load_model(key)  # ModelUnavailable is a UserError: its message says how to obtain the model
        with self._lock:
            self._handles[key] = h
            evicted = len(self._handles) > self.max_models
            while len(self._handles) > self.max_models:
                self._handles.popitem(last=False)
        if evicted:
            gc.collect()  # free the evicted model's weights now, not at the next load
        return h

    def handle(self, key: str) -> ModelHandle:
        key = self.check_model(key)
        with self._lock:
            if key in self._handles:
                self._handles.move_to_end(key)
                return self._handles[key]
        return on_compute(self._load, key)

    def check_model(self, key: Any) -> str:
        """A registry key, a Hugging Face id (org/name) or a local model directory (made absolute)."""
        if not isinstance(key, str) or not key.strip():
            raise UserError("Choose a model.")
        key = key.strip()
        if key in REGISTRY or key in self._handles:
            return key
        if len(key) > 400 or "\x00" in key:
            raise UserError("That model name is too long or malformed.")
        path = Path(key).expanduser()
        if path.is_absolute() or key.startswith((".", "~")):
            if not path.is_dir():
                raise UserError(f"There is no directory {key} on the server. Give an existing local model directory, "
                                f"a Hugging Face id (org/name), or one of: {', '.join(REGISTRY)}.")
            if not (path / "config.json").is_file():
                raise UserError(f"{key} is a directory but not a model: it has no config.json (save a model there "
                                f"with save_pretrained).")
            return str(path.resolve())
        if HUB_ID.match(key) and ".." not in key:
            return key
        raise UserError(f"Unknown model {key!r}. Choose one of: {', '.join(REGISTRY)}; or type a Hugging Face id "
                        f"(org/name) or the absolute path of a local model directory.")

    def is_chat(self, key: str) -> bool:
        """Whether the model takes chat turns (its tokenizer has a chat template; the registry says before loading)."""
        with self._lock:
            h = self._handles.get(key)
        if h is not None:
            return h.is_chat
        return REGISTRY[key].chat if key in REGISTRY else True

    # ------------------------------------------------------------------ stored results (through store)
    def has_results(self, key: str) -> bool:
        """A precomputed probe, or one fitted on this machine."""
        return store.has_probe(key, self.root) or self.fit_path(key) is not None

    def fit_path(self, key: str) -> Path | None:
        """The folder of this machine's fit for ``key`` when there is no precomputed probe (matching the loaded revision)."""
        if store.has_probe(key, self.root):
            return None
        with self._lock:
            h = self._handles.get(key)
        return current_fit(key, h.revision if h is not None else None)

    def fit_note(self, key: str) -> str:
        """"fitted on this machine at TIME" for a fitted probe, "" for a precomputed one."""
        path = self.fit_path(key)
        return (f"fitted on this machine at {read_fit(path)['fitted_at'].replace('T', ' ').replace('+00:00', ' UTC')}"
                if path is not None else "")

    def probe(self, key: str) -> Probe:
        key = self.check_model(key)
        path = store.probe_path(key, self.root)
        if not path.exists():
            fit = self.fit_path(key)
            if fit is None:
                raise UserError(f"There is no probe for {key} yet. Press \"Fit the probe on this model\" in the Probe or "
                                f"Layers tab, run `python -m empathy_core fit --model {key}` (or `precompute --model {key}` for the "
                                f"steering sweep too), or upload a probe file for it.")
            path = fit / "probes.safetensors"
        return _cached_probe(str(path), path.stat().st_mtime)

    def detection(self, key: str) -> dict | None:
        fit = self.fit_path(key)
        if fit is not None:
            return store.read_json(fit / "detection.json")
        return store.load_optional(key, "detection.json", self.root)

    # ------------------------------------------------------------------ fitting on this machine
    def start_fit(self, key: Any) -> tuple[FitJob, bool]:
        """Start the detection experiment on ``key`` (or join the one running); returns (job, whether it is new).

        The fit runs on the compute thread and writes to the user cache (``study/fit.py``).
        """
        key = self.check_model(key)
        if store.has_probe(key, self.root):
            raise UserError(f"{key} already has a precomputed probe; there is nothing to fit.")
        return self.fitter.job(key, lambda job: submit(self._fit_work, job))

    def _fit_work(self, job: FitJob) -> None:
        """Runs on the compute thread: load the model, then fit (or settle at once when a fit exists)."""
        try:
            job.report(0.0, f"loading {job.model_id}")
            h = self._load(job.model_id)
        except BaseException as exc:
            job.future.set_exception(exc)
            return
        if current_fit(h.key, h.revision) is not None:  # made meanwhile, e.g. by the CLI
            path = current_fit(h.key, h.revision)
            assert path is not None
            meta = read_fit(path)
            job.future.set_result(FitResult(h.key, path, meta["fitted_at"], meta["seconds"], int(meta["best_layer"])))
            return
        try:
            self.fitter.run(job, h)
        except Exception:  # already on the job's future, where the waiting visitors see it
            log.debug("fit of %s failed", h.key, exc_info=True)

    def steering(self, key: str) -> dict | None:
        return store.load_optional(key, "steering.json", self.root)

    def judge_validation(self) -> dict | None:
        """The gates' and calls' precision and recall on the held-out blind labels, or None."""
        return store.load_shared("judge_validation.json", self.root)

    def shared(self, name: str) -> dict | None:
        """A results file shared by every model (``cross_model.json``, ``reference_study.json``)."""
        return store.load_shared(name, self.root)

    def best_layers(self, key: str) -> tuple[int, int]:
        """(best detection layer, best steering layer); the steering one falls back to the detection one."""
        det, st = self.detection(key), self.steering(key)
        if det is None:
            raise UserError(f"No precomputed detection results for {key}.")
        best = int(det["best_layer"])
        return best, int(st["best_steering_layer"]) if st else best

    def _get_judge(self) -> Any:
        if self._judge is None and self.use_judge:
            from ..study.judges import EmbeddingJudge

            self._judge = EmbeddingJudge()
        return self._judge

    # ------------------------------------------------------------------ inputs
    def steering_directions(self, key: str, probe: Probe) -> torch.Tensor:
        """The directions the Steer tab pushes along: the detection probe's where the sweep's choose-seeds
        chose it (``evaluation.chosen.direction``), else the study's mean difference."""
        st = self.steering(key)
        chosen = (st or {}).get("evaluation", {}).get("chosen", {}).get("direction") if isinstance(st, dict) else None
        if chosen == "detection" and probe.detection is not None:
            return probe.detection.directions
        return probe.directions

    def _directions(self, handle: ModelHandle, upload: str | None) -> tuple[torch.Tensor, Probe | None]:
        """The probe's (L, H) directions, or those of an uploaded safetensors file (checked first)."""
        if not upload:
            probe = self.probe(handle.key)
            return self.steering_directions(handle.key, probe), probe
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

    def check_text(self, handle: ModelHandle, text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise UserError("The text is empty: type or pick a reply to score.")
        if len(text) > MAX_TEXT_CHARS:
            raise UserError(f"The text is {len(text):,} characters; the limit is {MAX_TEXT_TOKENS} tokens "
                            f"(about {MAX_TEXT_CHARS:,} characters at most). Shorten it.")
        n = len(handle.tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > MAX_TEXT_TOKENS:
            raise UserError(f"The text is {n} tokens; the limit is {MAX_TEXT_TOKENS}. Shorten it.")
        return text

    def check_layer(self, handle: ModelHandle, layer: Any, default: int) -> int:
        if layer is None or layer == "":
            return default
        return check_int("Layer", layer, 0, handle.n_layers - 1)

    # ------------------------------------------------------------------ scoring
    def score(self, key: str, text: Any, layer: Any = None, upload: str | None = None) -> ScoreResult:
        """Score ``text`` at every layer in one forward pass; the verdict at the default layer (``layer`` for uploads).

        With this app's probe the dev-chosen detection probe reads the text (its method, pooling and layer), and
        its can't-judge gate answers "can't judge this" instead of a probability for texts too short or too far
        from the fitting data; an upload (or a probe file without a detection probe) scores with its directions.
        """
        h = self.handle(key)
        text = self.check_text(h, text)
        dirs, probe = self._directions(h, upload)
        det = probe.detection if probe is not None and not upload else None
        best = det.layer if det is not None else (self.best_layers(h.key)[0] if self.has_results(h.key) else None)
        if upload:  # a user's file: its own layers decide the default, and the verdict is read where asked
            have = self.uploaded_layers(dirs)
            layer = self.check_layer(h, layer, best if best in have else have[0])
            self._require_layer(dirs, layer)
            v_layer = layer
        else:
            layer = self.check_layer(h, layer, best if best is not None else h.n_layers // 2)
            v_layer = best if best is not None else layer
        t0 = time.perf_counter()
        if det is not None:
            ts = urgent(score_tokens, h, text, det.directions, det.pooling)
        else:  # between a running generation's decode steps, if there is one
            ts = urgent(score_tokens, h, text, dirs)
        per_layer = ts.per_layer.tolist()
        verdict = Verdict(layer=v_layer, score=per_layer[v_layer], uploaded=bool(upload))
        thresholds = det.thresholds if det is not None else (probe.thresholds if probe is not None else None)
        if det is not None and ts.pooled is not None:
            why = str(det.gate().verdict(ts.pooled[v_layer].double().numpy()[None], [ts.n_tokens])[0])
            if why != "ok":
                verdict = Verdict(layer=v_layer, score=verdict.score, uploaded=False, label="cannot_judge",
                                  cannot_judge=why, method=det.method)
            else:
                p = det.probability(verdict.score, v_layer)
                verdict = Verdict(layer=v_layer, score=verdict.score, uploaded=False, probability=p, method=det.method,
                                  threshold=float(det.thresholds[v_layer]), label="empathic" if p >= 0.5 else "task-focused")
        elif probe is not None:  # ours without a detection probe, or an uploaded whole probe file with its own calibration
            p = probe.probability(verdict.score, v_layer)
            verdict = Verdict(layer=v_layer, score=verdict.score, uploaded=bool(upload), probability=p,
                              threshold=float(probe.thresholds[v_layer]), label="empathic" if p >= 0.5 else "task-focused")
        return ScoreResult(model=h.key, layer=layer, best_layer=best, per_layer=per_layer, tokens=ts.tokens,
                           token_scores=ts.per_token[layer].tolist(), verdict=verdict, seconds=time.perf_counter() - t0,
                           threshold=float(thresholds[layer]) if thresholds is not None else 0.0,
                           thresholds=thresholds.tolist() if thresholds is not None else None)

    # ------------------------------------------------------------------ steering
    def render(self, h: ModelHandle, scenario: str, prompt: str) -> str:
        """The full prompt: the scenario's system message + the edited user turn (chat models), or the text as is (base)."""
        return render_prompt(h.tokenizer, h.is_chat, None if scenario == CUSTOM else scenario, user=prompt)

    def steer_request(self, h: ModelHandle, scenario: Any, prompt: Any, alphas: tuple[float, ...], layer: Any,
                      max_new_tokens: Any, seed: Any, greedy: Any, upload: str | None,
                      positions: Any = "all") -> GenerationRequest:
        """Check a visitor's steering inputs and build the one frozen request that generation runs.

        ``alphas`` are relative and already checked. Steering uses this app's probe (or the
        upload); the live readout reads our probe's best detection layer, an upload where it steers.
        """
        scenario, prompt = check_scenario(scenario), check_prompt(prompt)
        dirs, probe = self._directions(h, upload)
        norms = probe.mean_norms if probe is not None else self.probe(h.key).mean_norms
        default_layer = self.best_layers(h.key)[1] if self.has_results(h.key) else h.n_layers // 2
        layer = self.check_layer(h, layer, default_layer)
        if upload:
            self._require_layer(dirs, layer)
        full = self.render(h, scenario, prompt)
        n_prompt = len(h.tokenizer(full, add_special_tokens=False)["input_ids"])
        if n_prompt > MAX_PROMPT_TOKENS:
            raise UserError(f"The prompt is {n_prompt} tokens; the limit is {MAX_PROMPT_TOKENS}. Shorten it.")
        return GenerationRequest(
            prompt=full, alphas=alphas, layer=layer, directions=dirs, unit="relative", mean_norms=norms,
            positions=check_positions(positions),
            readout_layer=self.best_layers(h.key)[0] if self.has_results(h.key) and not upload else layer,
            max_new_tokens=check_int("Max new tokens", max_new_tokens, 1, MAX_NEW_TOKENS),
            seed=check_int("Seed", seed if seed not in (None, "") else 0, 0, MAX_SEED), greedy=bool(greedy),
            **generation_defaults(h.key))

    def stream_steer(self, key: str, scenario: Any, prompt: Any, alpha: Any, layer: Any = None, max_new_tokens: Any = 64,
                     seed: Any = 0, greedy: Any = True, upload: str | None = None, positions: Any = "all",
                     cancel: threading.Event | None = None) -> Iterator[SideBySide]:
        """Baseline (alpha 0) and steered rows from one batched call, yielded as they grow; the last is scored."""
        h = self.handle(key)
        req = self.steer_request(h, scenario, prompt, (0.0, check_alpha(alpha)), layer, max_new_tokens, seed, greedy,
                                 upload, positions)
        last = None
        for last in stream_side_by_side(h, req, cancel):
            yield last
        assert last is not None  # the stream always yields its final result
        self.add_scores(h, last, req, scenario)
        yield last

    def dose_response(self, key: str, scenario: Any, prompt: Any, alpha: Any, layer: Any = None,
                      max_new_tokens: Any = 48, seed: Any = 0, greedy: Any = True, upload: str | None = None,
                      positions: Any = "all", points: int = DOSE_POINTS,
                      cancel: threading.Event | None = None) -> SideBySide:
        """One batched call over ``points`` alphas from -|alpha| to +|alpha| (0.3 when alpha is 0), then scored."""
        a = abs(check_alpha(alpha)) or 0.3
        alphas = tuple(float(x) for x in np.round(np.linspace(-a, a, points), 4))
        h = self.handle(key)
        req = self.steer_request(h, scenario, prompt, alphas, layer, max_new_tokens, seed, greedy, upload, positions)
        res = on_compute(side_by_side, h, req, cancel)
        self.add_scores(h, res, req, scenario)
        return res

    def gate_verdicts(self, h: ModelHandle, texts: list[str], scenario: Any, judge: Any) -> list[dict | None]:
        """The steering gates of each reply (``study.gates``, thresholds fitted on the blind labels' train part).

        Only for the five scenarios (echo and topicality are measured against the scenario). Topicality
        needs the embedding judge's MiniLM; perplexity is measured under the reference model only if it
        is already loaded here (loading a second model for a verdict would stall the queue), otherwise
        the verdict says it was not checked.
        """
        from ..core.scenarios import SCENARIO_IDS
        from ..study import gates

        v = self.judge_validation()
        if v is None or scenario not in SCENARIO_IDS:
            return [None] * len(texts)
        t = gates.GateThresholds.from_dict(v["thresholds"])
        ref_key = gates.reference_model(h.key)
        with self._lock:
            ref = self._handles.get(ref_key) if ref_key != h.key else None
        ppl = on_compute(gates.reference_perplexities, ref, texts, [scenario] * len(texts)) if ref else [None] * len(texts)
        topic: list[float | None] = [None] * len(texts)
        if judge is not None:
            e = on_compute(judge.embed, [x if x.strip() else "." for x in texts] + [gates.topic_text(scenario)])
            topic = [float(e[i] @ e[-1]) for i in range(len(texts))]
        out: list[dict | None] = []
        for i, x in enumerate(texts):
            f = gates.text_features(x, scenario)
            p, tp = ppl[i], topic[i]
            fluent = None if p is None else bool(math.isfinite(p) and math.log(p) <= t.max_log_perplexity)
            repetitive = gates.repetition_flag(f, t)
            out.append({"coherent": not repetitive and fluent is not False, "repetitive": repetitive, "fluent": fluent,
                        "on_topic": None if tp is None else tp >= t.min_topic_similarity, "echo": gates.echo_flag(f, t),
                        "reference_model": ref_key, "topic_similarity": tp,
                        "perplexity": p if p is not None and math.isfinite(p) else None})
        return out

    def add_scores(self, h: ModelHandle, res: SideBySide, req: GenerationRequest, scenario: Any = None) -> None:
        """Probe score (pooled, at the readout layer) and judge score of each finished reply."""
        layer, d = req.readout, req.directions[req.readout].float()
        texts = [r.text if r.text.strip() else "." for r in res.rows]
        acts = on_compute(extract, h, texts, "mean", None, 16)
        probe_scores = (acts.pooled[:, layer].float() @ d).tolist()
        judge = on_compute(self._get_judge) if self.use_judge else None
        judge_scores = on_compute(judge.score, texts).tolist() if judge is not None else [None] * len(texts)
        verdicts = self.gate_verdicts(h, texts, scenario, judge)
        res.scores = [RowScore(probe_layer=layer, probe_score=p, judge_logodds=j,
                               judge_probability=(1 / (1 + math.exp(-j))) if j is not None else None, gates=g)
                      for p, j, g in zip(probe_scores, judge_scores, verdicts)]

    # ------------------------------------------------------------------ sessions
    def _session(self, session: str) -> _Session:
        with self._lock:
            s = self._sessions.get(session)
            if s is None:
                s = self._sessions[session] = _Session()
                if len(self._sessions) > 1000:  # forget the oldest sessions
                    for k in list(self._sessions)[:500]:
                        self._sessions.pop(k, None)
            return s

    def begin(self, session: str) -> threading.Event:
        """A fresh cancel event for this session's next generation."""
        s = self._session(session)
        s.cancel = threading.Event()
        return s.cancel

    def stop(self, session: str) -> bool:
        with self._lock:
            s = self._sessions.get(session)
        if s is not None:
            s.cancel.set()
        return s is not None

    def set_positions(self, session: str, positions: Any) -> Positions:
        """Remember this session's steering positions (the Steer tab's advanced setting)."""
        p = check_positions(positions)
        self._session(session).positions = p
        return p

    def positions(self, session: str) -> Positions:
        with self._lock:
            s = self._sessions.get(session)
        return s.positions if s is not None else "all"

    # ------------------------------------------------------------------ helpers for the UI
    def model_info(self, key: str) -> dict:
        """What the UI needs to lay out controls for a model, from precomputed results (no loading)."""
        key = self.check_model(key)
        det = self.detection(key)
        info: dict[str, Any] = {"key": key, "is_chat": self.is_chat(key), "has_results": det is not None,
                                "fitted": self.fit_note(key)}
        if det is not None:
            best, steer_best = self.best_layers(key)
            st = self.steering(key)
            source = ("the best steering layer of the precomputed sweep (old format: chosen on the seeds it reports)"
                      if st else f"the best detection layer (no steering sweep for this model; probe "
                                 f"{info['fitted'] or 'precomputed'})")
            if st and "evaluation" in st:
                ch = st["evaluation"]["chosen"]
                source = (f"layer {ch['layer']} and α = {ch['alpha']:g} were chosen on the sweep's choose-seeds, "
                          f"apart from the seeds its results are reported on")
                info["default_alpha"] = float(ch["alpha"])
            info.update(n_layers=int(det["n_layers"]), hidden_size=int(det["hidden_size"]), best_layer=best,
                        best_steering_layer=steer_best, steering_layer_source=source)
        elif key in self._handles:
            h = self._handles[key]
            info.update(n_layers=h.n_layers, hidden_size=h.hidden_size, best_layer=h.n_layers // 2,
                        best_steering_layer=h.n_layers // 2, steering_layer_source="the middle layer (no probe yet)")
        return info

    def raw_alpha(self, key: str, alpha: Any, layer: Any) -> tuple[float, float]:
        """(raw alpha, the layer's mean residual norm) for a relative alpha."""
        a = check_alpha(alpha)
        probe = self.probe(key)
        layer = check_int("Layer", layer, 0, probe.n_layers - 1)
        norm = float(probe.mean_norms[layer])
        return raw_alpha(a, "relative", norm), norm

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
                except OSError:  # removed meanwhile by another request's tidy-up
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
    return Probe.load(Path(path))
