"""The CPU ``nn.Linear`` path for batched decode steps of 4 to 64 rows: oneDNN with a packed weight.

On by default for float32 models on CPU (``EMPATHY_PACKED_LINEAR=0`` turns it off); ``load_model``
applies it. Why it exists, measured on this project's 2-core machine with the pinned torch 2.13.0:

* MKL's ``x @ W^T`` (the stock ``nn.Linear``) is at its best for one to three rows: Qwen2.5-Coder-0.5B's
  896 x 151,936 LM head takes 18.6 ms for one row, 19.0 ms for two, 23.4 ms for three. From four rows on
  MKL switches kernels and the same product takes 59-63 ms, three single rows' worth, although the
  weight is still read once: a 7-row decode step cost 226 ms against 88 ms for one row.
* oneDNN with the weight reordered once into its blocked layout (``torch.ops.mkldnn``, the kernels
  torch's own compiler uses on CPU) takes 27 ms for 7 rows there (MLP shapes: 0.87 ms against 1.65 ms),
  but is slower than MKL for one row (21.3 ms; MLP down projection 0.87 ms against 0.58 ms).

So each layer uses both: the stock path for one to three rows and for anything that is not one
position per row (a prompt's forward pass, scoring, extraction: compute-bound, where the two tie), and
the packed weight for 4 to 64 rows of one position each: the decode steps of the app's 7-α
dose-response strip and of the sweep's batches, and also the LM head of their prompt pass, since
``generate`` computes logits for the last position only. A single row and the side-by-side pair are
therefore bit-for-bit what they were. The packed copy costs the weights' memory once more; it is made
the first time a layer needs it, and only while the machine has that memory free with ``SPARE_BYTES``
to spare (read from ``/proc/meminfo``, which does not see a container's own limit), else the layer
stays on the stock path and asks again after ``RETRY_SECONDS``. A weight changed in place is packed
again (its version counter moves), except through ``.data``, which this cannot see; the patched
forward holds its layer by a weak reference, so a dropped model is freed without a garbage collection.
``tests/test_steering.py`` checks that it changes results only by float rounding, that steering stays
exact, and that the stock path is untouched; ``python -m empathy_core bench --parts packed`` times
both paths interleaved.
"""

from __future__ import annotations

import logging
import os
import time
import weakref

import torch

from .memory import available_cpu_bytes

log = logging.getLogger(__name__)

MIN_ROWS, MAX_ROWS = 4, 64
PACK_FOR_ROWS = 8  # the batch size oneDNN lays the weight out for
SPARE_BYTES = 1024 ** 3  # left free after packing: the KV cache and activations of a strip need room too
RETRY_SECONDS = 60.0


def packed_linear_available() -> bool:
    """Whether this torch build has the oneDNN linear kernels (CPU builds normally do)."""
    ops = torch.ops.mkldnn
    return bool(torch.backends.mkldnn.is_available()) and hasattr(ops, "_linear_pointwise") \
        and hasattr(ops, "_reorder_linear_weight")


def packed_linear_wanted() -> bool:
    """The ``EMPATHY_PACKED_LINEAR`` switch: on unless it is "0"; any other value than "0" or "1" is refused."""
    value = os.environ.get("EMPATHY_PACKED_LINEAR", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"EMPATHY_PACKED_LINEAR must be 0 or 1, not {value!r}.")
    return value == "1"


def _is_decode_step(self: torch.nn.Linear, x: torch.Tensor) -> bool:
    """A batch of one new position per row, 4 to 64 rows, float32, no autograd, no autocast."""
    return (x.dim() == 3 and x.shape[1] == 1 and MIN_ROWS <= x.shape[0] <= MAX_ROWS and x.dtype == torch.float32
            and self.weight.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu"))


def _packed_weight(self: torch.nn.Linear) -> torch.Tensor | None:
    """The weight in oneDNN's layout, made on first use and again if the weight changed; None if memory is short."""
    w = self.weight
    try:
        stamp = (w.data_ptr(), w._version)
    except RuntimeError:  # an inference tensor (made under torch.inference_mode) has no version counter
        return None
    got = self.__dict__.get("_packed")
    if got is not None and got[0] == stamp:
        return got[1]
    self.__dict__.pop("_packed", None)  # stale: the weight changed
    refused = self.__dict__.get("_packed_refused")
    if refused is not None and time.monotonic() - refused < RETRY_SECONDS:
        return None
    if available_cpu_bytes() < w.numel() * w.element_size() + SPARE_BYTES:
        if refused is None:
            log.info("not packing a %s weight: too little free memory; this layer stays on the stock path", tuple(w.shape))
        self.__dict__["_packed_refused"] = time.monotonic()
        return None
    self.__dict__.pop("_packed_refused", None)
    packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), PACK_FOR_ROWS)
    self.__dict__["_packed"] = (stamp, packed)
    return packed


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, through oneDNN with the packed weight for a decode step of 4-64 rows."""
    if _is_decode_step(self, x):
        packed = _packed_weight(self)
        if packed is not None:
            y = torch.ops.mkldnn._linear_pointwise(x.reshape(x.shape[0], self.in_features), packed, self.bias,
                                                   "none", [], "")
            return y.reshape(x.shape[0], 1, self.out_features)
    return torch.nn.functional.linear(x, self.weight, self.bias)


def use_packed_linear(model: torch.nn.Module) -> int:
    """Give every ``nn.Linear`` of a CPU model the path above; returns how many (0 if the kernels are missing)."""
    if not packed_linear_available():
        return 0
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear:
            ref = weakref.ref(m)  # not the layer itself: a bound method would make a cycle only gc can free
            m.forward = lambda x, _ref=ref: _packed_forward(_ref(), x)  # type: ignore[method-assign,misc]
            n += 1
    return n


def use_stock_linear(model: torch.nn.Module) -> int:
    """Undo ``use_packed_linear`` and free the packed copies; returns how many layers were patched."""
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear and "forward" in m.__dict__:
            del m.forward
            m.__dict__.pop("_packed", None)
            m.__dict__.pop("_packed_refused", None)
            n += 1
    return n


def packed_bytes(model: torch.nn.Module) -> int:
    """Bytes held by packed copies right now (for the bench and the tests)."""
    return sum(m.__dict__["_packed"][1].numel() * m.__dict__["_packed"][1].element_size() for m in model.modules()
               if type(m) is torch.nn.Linear and "_packed" in m.__dict__)
