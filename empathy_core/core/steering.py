"""Steering: add alpha x direction to the residual stream while the model runs.

``steer(handle, vectors, alphas, ...)`` is a context manager. Inside it, every forward pass
adds ``alpha[b] * v_L`` to the output of decoder block L (the layer convention of
``activations``) for each steered layer L and each batch row b. ``alphas`` is per row, a
tensor of shape (B,), applied as (B, 1, 1): one ``generate`` call carries the baseline
(alpha = 0) and any number of steered rows.

Units of alpha:
    raw       the added vector is alpha * d
    relative  the added vector is alpha * mean_norm_L * d, where mean_norm_L is the layer's
              mean residual-stream norm stored with the probe; the same alpha then means the
              same push on any model

Positions are absolute sequence positions, so they stay right under the KV cache (a
cached decode step sees one token whose absolute position is the cache length):
    all        every position (the study's choice, default)
    prompt     positions before ``prompt_len`` only
    generated  positions at or after ``prompt_len`` only

Hooks live only inside the context and are removed in ``finally``. The handle's lock is
held throughout, so concurrent callers never see each other's hooks.

Example:
    >>> with steer(handle, {12: probe.directions[12]}, torch.tensor([0.0, 4.0])):  # doctest: +SKIP
    ...     out = handle.model.generate(ids.repeat(2, 1), max_new_tokens=32)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .activations import layer_hidden
from .compute import hooks_paused
from .models import ModelHandle

Positions = Literal["all", "prompt", "generated"]
Unit = Literal["raw", "relative"]
POSITIONS = ("all", "prompt", "generated")
UNITS = ("raw", "relative")
MAX_ABS_ALPHA = 1000.0


def as_alphas(alphas: float | Sequence[float] | torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Validate alpha values and return a float tensor of shape (B,)."""
    if isinstance(alphas, bool):
        raise TypeError("alpha must be a number, not a bool.")
    a = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    if a.numel() == 0:
        raise ValueError("Give at least one alpha.")
    if not torch.isfinite(a).all():
        raise ValueError("alpha must be a finite number (got NaN or infinity).")
    if a.abs().max() > MAX_ABS_ALPHA:
        raise ValueError(f"|alpha| must be at most {MAX_ABS_ALPHA:g}.")
    if batch is not None and a.numel() not in (1, batch):
        raise ValueError(f"Got {a.numel()} alphas for a batch of {batch} rows.")
    return a.float()


def steering_vectors(handle: ModelHandle, directions: Mapping[int, torch.Tensor], unit: Unit = "raw",
                     mean_norms: torch.Tensor | Sequence[float] | None = None) -> dict[int, torch.Tensor]:
    """Per-layer vectors v_L such that the addition is alpha * v_L (checks layer and width)."""
    if unit not in UNITS:
        raise ValueError(f"Unknown alpha unit {unit!r}; choose 'raw' or 'relative'.")
    if not directions:
        raise ValueError("Give at least one layer to steer.")
    out = {}
    for layer, d in directions.items():
        handle.check_layer(int(layer) if not isinstance(layer, bool) else layer)
        d = torch.as_tensor(d, dtype=torch.float32)
        d = d.reshape(-1) if d.ndim <= 1 or d.shape[0] == 1 else d  # (H,), or (B, H) for one vector per row
        if d.shape[-1] != handle.hidden_size or d.ndim > 2:
            raise ValueError(f"The direction has width {d.shape[-1]}; {handle.key} has hidden size {handle.hidden_size}.")
        if not torch.isfinite(d).all():
            raise ValueError("The direction contains NaN or infinite values.")
        norm = None if mean_norms is None else float(torch.as_tensor(mean_norms)[layer])
        out[int(layer)] = d * raw_alpha(1.0, unit, norm)
    return out


def raw_alpha(alpha: float, unit: Unit, mean_norm: float | None) -> float:
    """The raw alpha that ``alpha`` in ``unit`` amounts to at a layer: raw = relative x mean residual norm.

    This is the one place where relative alpha becomes raw: the added vector is
    ``raw_alpha(alpha, unit, norm) * d`` for a unit direction d.

    >>> raw_alpha(0.5, "relative", 30.0), raw_alpha(2.0, "raw", None)
    (15.0, 2.0)
    """
    if unit not in UNITS:
        raise ValueError(f"Unknown alpha unit {unit!r}; choose 'raw' or 'relative'.")
    if not math.isfinite(alpha):
        raise ValueError("alpha must be finite.")
    if unit == "raw":
        return float(alpha)
    if mean_norm is None:
        raise ValueError("Relative alpha needs the layer's mean residual norm (stored with the probe).")
    return float(alpha) * float(mean_norm)


@dataclass
class SteerState:
    """What the hooks saw: useful for tests and the live readout."""

    prompt_len: int | None = None
    offset: int = 0  # absolute position of the first token of the current forward pass
    added: list = field(default_factory=list)  # (layer, positions, max |addition|) when record=True


def _cache_length(kwargs: dict) -> int:
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return 0
    try:
        return int(cache.get_seq_length())
    except AttributeError:  # legacy tuples of (key, value) per layer
        return int(cache[0][0].shape[-2]) if cache else 0


@contextmanager
def steer(handle: ModelHandle, vectors: Mapping[int, torch.Tensor], alphas: float | Sequence[float] | torch.Tensor,
          positions: Positions = "all",
          prompt_len: int | None = None, record: bool = False) -> Iterator[SteerState]:
    """Add ``alphas[b] * vectors[L]`` to block L's output for every row b (see module docstring).

    Longer than 60 lines because the hooks close over this one call's state (the alphas on the
    model's device, the cache offset, the prompt length), and keeping them here keeps every hook
    inside this context manager's ``finally``.

    Args:
        vectors: {layer: (H,) vector, or (B, H) with one vector per row}; build them with
            ``steering_vectors`` for units.
        alphas: float or (B,) values; one per batch row, or one for all rows.
        positions: "all", "prompt" or "generated".
        prompt_len: the (padded) prompt length; positions >= prompt_len are generated.
            If omitted it is taken from the first forward pass.
        record: keep a log of what was added (for tests).
    Yields:
        A ``SteerState``.
    """
    if positions not in POSITIONS:
        raise ValueError(f"Unknown positions {positions!r}; choose from {POSITIONS}.")
    a = as_alphas(alphas)
    for layer, v in vectors.items():
        handle.check_layer(layer)
        if v.shape[-1] != handle.hidden_size or v.ndim > 2:
            raise ValueError(f"The direction has shape {tuple(v.shape)}; {handle.key} has hidden size {handle.hidden_size}.")
    state = SteerState(prompt_len=prompt_len)
    dev, dt = handle.device, handle.dtype
    # (1, 1, H) for one vector shared by all rows, or (B, 1, H) for one vector per row
    vecs = {layer: v.to(device=dev, dtype=dt).reshape(-1 if v.ndim == 2 else 1, 1, handle.hidden_size)
            for layer, v in vectors.items()}
    a_dev = a.to(device=dev, dtype=dt).reshape(-1, 1, 1)  # (B, 1, 1)

    def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if hooks_paused():  # a short job runs between decode steps: not ours
            return
        state.offset = _cache_length(kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        if state.prompt_len is None and state.offset == 0 and ids is not None:
            state.prompt_len = int(ids.shape[1])

    def make_hook(layer: int) -> Callable[[torch.nn.Module, tuple, Any], Any]:
        v = vecs[layer]

        def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
            if hooks_paused():  # a short job (a score) runs between decode steps: it sees the plain model
                return output
            h = layer_hidden(output)
            B, T, _ = h.shape
            if a_dev.shape[0] not in (1, B):
                raise ValueError(f"Got {a_dev.shape[0]} alphas for a batch of {B} rows.")
            add = a_dev * v  # (B or 1, 1, H)
            if positions != "all":
                pos = torch.arange(state.offset, state.offset + T, device=h.device)
                limit = state.prompt_len if state.prompt_len is not None else T
                keep = pos < limit if positions == "prompt" else pos >= limit
                add = add * keep.to(h.dtype).reshape(1, T, 1)
            new = h + add
            if record:
                state.added.append((layer, state.offset, T, float((new - h).abs().max())))
            return new if isinstance(output, torch.Tensor) else (new,) + tuple(output[1:])

        return hook

    with handle.lock:
        handles = []
        try:
            handles.append(handle.model.register_forward_pre_hook(pre, with_kwargs=True))
            for layer in vecs:
                handles.append(handle.layers[layer].register_forward_hook(make_hook(layer)))
            yield state
        finally:
            for h in handles:
                h.remove()
