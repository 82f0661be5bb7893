"""A per-text activation cache on disk (safetensors + a JSON index; nothing pickled).

Each model gets one directory ``CACHE/<model_key>/`` with ``acts.safetensors`` holding, for every
cached text, the pooled activations of every layer for several poolings at once (``mean`` and
``last`` come from ONE forward pass, using ``empathy_core.activations``' own tokenisation, masks and
pooling weights, so the numbers equal ``activations.extract``), and ``index.json`` mapping
sha256(text) -> row. Rerunning on changed data extracts only the texts not yet cached.

    python -m detect.cache smollm2-135m          # extract every staged text not yet cached
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CACHE_DIR = Path(__file__).resolve().parent / "cache"
POOLINGS = ("mean", "last")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ActivationCache:
    """Pooled activations (L, H) per text and pooling, for one model."""

    def __init__(self, model_key: str, root: Path = CACHE_DIR):
        self.dir = Path(root) / model_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, int] = {}
        self.tensors: dict[str, torch.Tensor] = {}
        if (self.dir / "index.json").exists() and (self.dir / "acts.safetensors").exists():
            self.index = json.loads((self.dir / "index.json").read_text())["rows"]
            self.tensors = load_file(str(self.dir / "acts.safetensors"))

    def missing(self, texts: Sequence[str]) -> list[str]:
        seen, out = set(), []
        for t in texts:
            k = text_key(t)
            if k not in self.index and k not in seen:
                seen.add(k)
                out.append(t)
        return out

    def add(self, texts: Sequence[str], pooled: dict[str, torch.Tensor], n_tokens: torch.Tensor) -> None:
        start = len(self.index)
        for i, t in enumerate(texts):
            self.index[text_key(t)] = start + i
        new = {**{f"pooled_{p}": pooled[p] for p in pooled}, "n_tokens": n_tokens.float()}
        for k, v in new.items():
            self.tensors[k] = torch.cat([self.tensors[k], v]) if k in self.tensors else v.contiguous()

    def save(self, meta: dict | None = None) -> None:
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(self.dir / "acts.safetensors"))
        (self.dir / "index.json").write_text(json.dumps({"meta": meta or {}, "rows": self.index}))

    def get(self, texts: Sequence[str], pooling: str) -> np.ndarray:
        """(N, L, H) float32 for these texts (all must be cached)."""
        rows = [self.index[text_key(t)] for t in texts]
        return self.tensors[f"pooled_{pooling}"][rows].numpy()

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self.index[text_key(t)] for t in texts]
        return self.tensors["n_tokens"][rows].numpy().astype(int)


@torch.inference_mode()
def extract_multi(handle, texts: Sequence[str], poolings: Sequence[str] = POOLINGS, batch_size: int = 16,
                  log_every: int = 10) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every layer's pooled activations for several poolings from one forward pass per batch.

    Uses ``empathy_core.activations``' tokenize_one / encode / pool_weights / tap_layers, so each
    pooling equals ``activations.extract(handle, texts, pooling=p)``. Returns ({pooling: (N, L, H)}, n_tokens).
    """
    from empathy_core.core.activations import _trunk, encode, pool_weights, tap_layers, tokenize_one

    items = [tokenize_one(handle, t, "mean") for t in texts]  # mean and last tokenise identically
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    N, L, H = len(items), handle.n_layers, handle.hidden_size
    out = {p: torch.zeros((N, L, H), dtype=torch.float32) for p in poolings}
    trunk = _trunk(handle)
    batches = [order[i: i + batch_size] for i in range(0, N, batch_size)]
    t0 = time.time()
    for b, idx in enumerate(batches):
        enc = encode(handle, [items[i] for i in idx])
        ws = {p: pool_weights(enc.text_mask, p).to(handle.device) for p in poolings}
        buf = {p: torch.zeros((len(idx), L, H), dtype=torch.float32) for p in poolings}

        def grab(layer: int, h: torch.Tensor) -> None:
            h = h.float()
            for p in poolings:
                buf[p][:, layer] = torch.einsum("bth,bt->bh", h, ws[p]).cpu()

        with handle.lock, tap_layers(handle, grab):
            trunk(input_ids=enc.input_ids.to(handle.device), attention_mask=enc.attention_mask.to(handle.device),
                  use_cache=False)
        for p in poolings:
            out[p][idx] = buf[p]
        if log_every and (b % log_every == 0 or b == len(batches) - 1):
            print(f"  batch {b + 1}/{len(batches)}  {time.time() - t0:.0f}s", flush=True)
    n_tokens = torch.tensor([sum(m) for _, m in items])
    return out, n_tokens


def fill(model_key: str, texts: Sequence[str], batch_size: int = 16) -> ActivationCache:
    """Extract and cache every text not yet cached for this model; return the cache."""
    cache = ActivationCache(model_key)
    todo = cache.missing(texts)
    if todo:
        from empathy_core.core.models import load_model

        torch.set_num_threads(2)
        handle = load_model(model_key)
        print(f"{model_key}: extracting {len(todo)} new texts ({len(cache.index)} cached)", flush=True)
        pooled, n_tok = extract_multi(handle, todo, batch_size=batch_size)
        cache.add(todo, pooled, n_tok)
        cache.save({"model_key": model_key, "revision": handle.revision, "n_layers": handle.n_layers,
                    "hidden_size": handle.hidden_size, "poolings": list(POOLINGS),
                    "layer_convention": "block_output_0based"})
    return cache


def all_texts(tables: dict) -> list[str]:
    return [t for tab in tables.values() for t in tab.texts]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from detect.data import load_all

    for key in sys.argv[1:]:
        fill(key, all_texts(load_all()))
