"""An opt-in ``nn.Linear`` path for CPU decode steps with 2-16 rows: ``W @ x^T`` instead of ``x @ W^T``.

Off by default (``EMPATHY_SMALL_BATCH_LINEAR=1`` turns it on). Why it exists, and why it is now off:

* It was written when BLAS on this project's 2-core machine computed ``x @ W^T`` for 2-16 rows as
  slowly as separate single-row products; ``W @ x^T`` streamed the weight once for all rows (the
  LM head of SmolLM2 with 2 rows: 13.6 ms against 2.5 ms).
* With the pinned torch 2.13.0 (MKL 2024.2) it is the other way round. Measured here, one thread,
  Qwen2.5-Coder-0.5B's shapes, 2 rows: stock ``F.linear`` costs what one row costs (MLP gate
  0.66 ms vs 0.65 ms; LM head 60 ms vs 57 ms), and ``W @ x^T`` costs two rows' worth (1.34 ms;
  134 ms). The same held for SmolLM2's and Gemma's shapes (LM head, 2 threads: 12 ms stock, 36 ms
  patched). Whole generations, both paths interleaved in one run (``bench --parts small_batch``, on
  2 cores shared with other jobs): the pair took 27.4 s stock vs 39.4 s patched on Qwen (16 new
  tokens) and 42.7 s vs 75.0 s on SmolLM2 (48 new tokens); the 7-row strip 36.5 s vs 33.8 s and
  71.8 s vs 95.5 s.

One row keeps the stock matrix-vector path, so single-row results stay bit-identical to an
unpatched layer; more than ``SMALL_BATCH_ROWS`` rows keep the stock matrix-matrix path.
``tests/test_steering.py`` checks that it changes results only by float rounding and that steering
stays exact.
"""

from __future__ import annotations

import types

import torch

SMALL_BATCH_ROWS = 16


def _small_batch_linear(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, computed as ``W @ x^T`` when 2 to ``SMALL_BATCH_ROWS`` rows come in."""
    rows = x.numel() // self.in_features
    if 1 < rows <= SMALL_BATCH_ROWS:
        y = torch.mm(self.weight, x.reshape(rows, self.in_features).T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)
    return torch.nn.functional.linear(x, self.weight, self.bias)


def use_small_batch_linear(model: torch.nn.Module) -> int:
    """Give every ``nn.Linear`` of a CPU model the small-batch path above; returns how many."""
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear:
            m.forward = types.MethodType(_small_batch_linear, m)  # type: ignore[method-assign]
            n += 1
    return n


def use_stock_linear(model: torch.nn.Module) -> int:
    """Undo ``use_small_batch_linear``: every patched ``nn.Linear`` gets its class's forward back; returns how many."""
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear and "forward" in m.__dict__:
            del m.forward
            n += 1
    return n
