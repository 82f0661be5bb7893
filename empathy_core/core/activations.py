"""Capture residual-stream activations for every layer in one forward pass.

Layer convention (used everywhere in this project):
    Layer L is the output of decoder block L, 0-based. The embeddings are not a layer.
    For L < n_layers - 1 this equals ``output_hidden_states[L + 1]``. The last entry of
    ``output_hidden_states`` has the model's final norm applied in most HF models, so it
    is *not* block n_layers - 1's output; we read that block through a hook instead.
    llama.cpp's control vectors use the same numbering (``direction.N`` is added to block
    N's output; it has no slot for block 0); see ``export.py``.

Poolings:
    mean  mean over the text's own tokens, special tokens (BOS etc.) excluded (default)
    last  the text's last token
    chat  the text is placed as the agent's reply to its scenario (chat template for
          instruct models, a story prefix for base models) and mean-pooled over the
          reply's tokens, so extraction sees what generation sees

Texts are batched with right padding, sorted by length to waste little compute; the
result equals running one text at a time (tested to 1e-4 in fp32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from .models import ModelHandle
from .prompts import render_reply

Pooling = Literal["mean", "last", "chat"]
POOLINGS: tuple[str, ...] = ("mean", "last", "chat")
LAYER_CONVENTION = "block_output_0based"  # layer L = output of decoder block L; embeddings excluded
MAX_TOKENS = 1024


def layer_hidden(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states of a decoder layer's output (a tensor in transformers 5, a tuple before)."""
    return output if isinstance(output, torch.Tensor) else output[0]


@contextmanager
def tap_layers(handle: ModelHandle, fn: Callable[[int, torch.Tensor], None],
               layers: Sequence[int] | None = None) -> Iterator[None]:
    """Call ``fn(layer, hidden)`` with each chosen block's output (B, T, H) during forward passes.

    Hooks are removed in ``finally``, so an exception inside the block leaves none behind.
    """
    handles = []
    try:
        for i in (range(handle.n_layers) if layers is None else layers):
            handles.append(handle.layers[i].register_forward_hook(
                lambda mod, args, out, i=i: fn(i, layer_hidden(out))))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    text_mask: torch.Tensor  # (B, T) bool: the text's own, non-special tokens


def _validate_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"Text {i} is {type(t).__name__}, not a string.")
        if not t.strip():
            raise ValueError(f"Text {i} is empty: give some words to score.")
        out.append(t)
    if not out:
        raise ValueError("No texts given.")
    return out


def tokenize_one(handle: ModelHandle, text: str, pooling: Pooling = "mean", scenario: str | None = None,
                 max_tokens: int = MAX_TOKENS) -> tuple[list[int], list[bool]]:
    """Token ids of one input and a mask of which tokens belong to ``text`` itself."""
    tok = handle.tokenizer
    if pooling == "chat":
        if scenario is None:
            raise ValueError("pooling='chat' needs the scenario of each text.")
        full, start, end = render_reply(tok, scenario, text)
        enc = tok(full, return_offsets_mapping=True, add_special_tokens=not handle.is_chat)
    elif pooling in ("mean", "last"):
        full, start, end = text, 0, len(text)
        enc = tok(full, return_offsets_mapping=True, add_special_tokens=True)
    else:
        raise ValueError(f"Unknown pooling {pooling!r}; choose from {POOLINGS}.")
    ids = list(enc["input_ids"])
    offsets = list(enc["offset_mapping"])
    if pooling != "chat" and tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
        # Without a leading BOS the text's first token becomes the attention sink, whose
        # huge activations swamp a mean over tokens. Give every model a sink of its own.
        ids, offsets = [tok.bos_token_id] + ids, [(0, 0)] + offsets
    special = set(tok.all_special_ids)
    mask = [(i not in special) and (b > a) and a < end and b > start
            for i, (a, b) in zip(ids, offsets)]
    if len(ids) > max_tokens:
        raise ValueError(f"Input is {len(ids)} tokens long; the limit is {max_tokens}. Shorten the text.")
    if not any(mask):
        raise ValueError(f"Text {text[:40]!r} has no tokens of its own after tokenization.")
    return ids, mask


def encode(handle: ModelHandle, items: Sequence[tuple[list[int], list[bool]]]) -> Encoded:
    """Right-pad a batch of (ids, text_mask)."""
    T = max(len(ids) for ids, _ in items)
    pad = handle.tokenizer.pad_token_id or 0
    B = len(items)
    input_ids = torch.full((B, T), pad, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    tmask = torch.zeros((B, T), dtype=torch.bool)
    for b, (ids, m) in enumerate(items):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attn[b, : len(ids)] = 1
        tmask[b, : len(ids)] = torch.tensor(m)
    return Encoded(input_ids, attn, tmask)


def pool_weights(text_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(B, T) weights that pool a (B, T, H) tensor into (B, H)."""
    w = text_mask.float()
    if pooling == "last":
        idx = (torch.arange(w.shape[1]) * text_mask).argmax(dim=1)  # last text token
        w = torch.zeros_like(w)
        w[torch.arange(w.shape[0]), idx] = 1.0
        return w
    return w / w.sum(dim=1, keepdim=True)


@dataclass
class Activations:
    pooled: torch.Tensor  # (N, L, H) float32, in input order
    token_norm: torch.Tensor  # (N, L): mean L2 norm of the text's token states per layer
    pooling: str
    n_tokens: torch.Tensor  # (N,) tokens of each text


def matmul_autocast(device: torch.device, dtype: torch.dtype | None, off: bool = False) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None; with ``off``, a region
    where an enclosing autocast is switched off."""
    if off:
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def _trunk(handle: ModelHandle) -> torch.nn.Module:
    """The transformer without its LM head: we need hidden states, not logits."""
    base = getattr(handle.model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) and base is not handle.model else handle.model


@torch.inference_mode()
def extract(handle: ModelHandle, texts: Sequence[str], pooling: Pooling = "mean", scenarios: Sequence[str] | None = None,
            batch_size: int = 16, progress: bool = False, desc: str = "activations",
            on_batch: Callable[[int, int], None] | None = None) -> Activations:
    """Pooled activations of every layer for each text, from one forward pass per batch.

    ``on_batch(done, total)`` is called after each batch with the number of texts done so far.
    """
    return extract_multi(handle, texts, (pooling,), scenarios, batch_size, progress, desc, on_batch)[pooling]


@torch.inference_mode()
def extract_multi(handle: ModelHandle, texts: Sequence[str], poolings: Sequence[Pooling] = ("mean",),
                  scenarios: Sequence[str] | None = None, batch_size: int = 16, progress: bool = False,
                  desc: str = "activations", on_batch: Callable[[int, int], None] | None = None,
                  autocast: torch.dtype | None = None) -> dict[str, Activations]:
    """Like :func:`extract`, for several poolings from ONE forward pass per batch.

    ``mean`` and ``last`` tokenise identically, so they share the pass; ``chat`` cannot be mixed with them.
    ``autocast`` (e.g. ``torch.bfloat16``) runs the pass's matrix products in that dtype under
    ``torch.autocast``; the weights stay as loaded and the read states are float32 (``matmul_autocast``).
    """
    texts = _validate_texts(texts)
    if "chat" in poolings and len(poolings) > 1:
        raise ValueError("pooling='chat' tokenises differently; extract it on its own.")
    tok_pool: Pooling = poolings[0]
    if tok_pool == "chat" and (scenarios is None or len(scenarios) != len(texts)):
        raise ValueError("pooling='chat' needs one scenario per text.")
    items = [tokenize_one(handle, t, tok_pool, scenarios[i] if scenarios else None) for i, t in enumerate(texts)]
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    N, L, H = len(items), handle.n_layers, handle.hidden_size
    pooled = {p: torch.zeros((N, L, H), dtype=torch.float32) for p in poolings}
    norms = torch.zeros((N, L), dtype=torch.float32)
    trunk = _trunk(handle)
    batches = [order[i: i + batch_size] for i in range(0, N, batch_size)]
    done = 0
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc, unit="batch")
    for idx in batches:
        enc = encode(handle, [items[i] for i in idx])
        ws = {p: pool_weights(enc.text_mask, p).to(handle.device) for p in poolings}  # (B, T) each
        tm = enc.text_mask.to(handle.device).float()
        out_p = {p: torch.zeros((len(idx), L, H), dtype=torch.float32) for p in poolings}
        out_n = torch.zeros((len(idx), L), dtype=torch.float32)

        def grab(layer: int, h: torch.Tensor, out_p: dict = out_p, out_n: torch.Tensor = out_n,
                 ws: dict = ws, tm: torch.Tensor = tm) -> None:  # bound now: this batch's buffers
            with matmul_autocast(h.device, None, off=autocast is not None):  # pool in float32, even under autocast
                h = h.float()  # (B, T, H)
                for p, w in ws.items():
                    out_p[p][:, layer] = torch.einsum("bth,bt->bh", h, w).cpu()
                out_n[:, layer] = ((h.norm(dim=-1) * tm).sum(1) / tm.sum(1)).cpu()

        with handle.lock, tap_layers(handle, grab), matmul_autocast(handle.device, autocast):
            trunk(input_ids=enc.input_ids.to(handle.device), attention_mask=enc.attention_mask.to(handle.device),
                  use_cache=False)
        for p in poolings:
            pooled[p][idx] = out_p[p]
        norms[idx] = out_n
        if on_batch is not None:
            done += len(idx)
            on_batch(done, N)
    n_tokens = torch.tensor([sum(m) for _, m in items])
    return {p: Activations(pooled=pooled[p], token_norm=norms, pooling=p, n_tokens=n_tokens) for p in poolings}


@dataclass
class TokenScores:
    tokens: list[str]  # the text's own tokens, as strings
    per_token: torch.Tensor  # (L, T_text) projection of each token's state on each layer's direction
    per_layer: torch.Tensor  # (L,) pooled projection (the text's score at each layer)
    pooled: torch.Tensor | None = None  # (L, H) the pooled activations themselves (for the can't-judge gate)
    n_tokens: int = 0  # the text's own tokens


@torch.inference_mode()
def score_tokens(handle: ModelHandle, text: str, directions: torch.Tensor, pooling: Pooling = "mean",
                 scenario: str | None = None) -> TokenScores:
    """Project every token of one text on each layer's direction, in one forward pass.

    ``directions`` is (L, H). The pooled score equals projecting the pooled activation,
    since pooling is linear.
    """
    text = _validate_texts([text])[0]
    L, H = handle.n_layers, handle.hidden_size
    if tuple(directions.shape) != (L, H):
        raise ValueError(f"Directions have shape {tuple(directions.shape)}; {handle.key} needs ({L}, {H}).")
    ids, mask = tokenize_one(handle, text, pooling, scenario)
    enc = encode(handle, [(ids, mask)])
    d = directions.to(device=handle.device, dtype=torch.float32)
    per_token_all = torch.zeros((L, len(ids)), dtype=torch.float32)
    pooled = torch.zeros((L, H), dtype=torch.float32)
    w = pool_weights(enc.text_mask, pooling)[0]  # (T,)
    w_dev = w.to(handle.device)

    def grab(layer: int, h: torch.Tensor) -> None:
        per_token_all[layer] = (h[0].float() @ d[layer]).cpu()
        pooled[layer] = (w_dev @ h[0].float()).cpu()

    with handle.lock, tap_layers(handle, grab):
        _trunk(handle)(input_ids=enc.input_ids.to(handle.device), use_cache=False)
    per_layer = per_token_all @ w
    keep = torch.tensor(mask)
    tokens = [handle.tokenizer.decode([i]) for i, m in zip(ids, mask) if m]
    return TokenScores(tokens=tokens, per_token=per_token_all[:, keep], per_layer=per_layer, pooled=pooled,
                       n_tokens=int(sum(mask)))
