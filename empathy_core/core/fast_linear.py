"""A faster ``nn.Linear`` for CPU decode steps with 2-16 rows (side-by-side generation).

Why it exists (measured on this project's 2-core CPU machine, SmolLM2-135M, fp32):
    BLAS computes ``x @ W^T`` for 2-16 rows about as slowly as two separate single-row
    matrix-vector products, because it does not stream the weight once for all rows. With
    the weight as the left operand, ``W @ x^T`` does: for the LM head with 2 rows that is
    13.6 ms against 2.5 ms. This is what makes a side-by-side pair (baseline + steered rows
    in one ``generate`` call) cost about one generation, instead of two.

One row keeps the stock matrix-vector path, so single-row results stay bit-identical to
an unpatched layer; more than ``SMALL_BATCH_ROWS`` rows (prefill, extraction batches) keep
the stock matrix-matrix path. ``models.load_model`` applies the patch to CPU models unless
``EMPATHY_SMALL_BATCH_LINEAR=0``. ``tests/test_steering.py`` checks that it changes results
only by float rounding and that steering stays exact.
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
