"""Will a model fit? Estimate its memory from the config alone, before any weights are read or downloaded.

    >>> from empathy_core.core.memory import estimate, check_fits
    >>> est = estimate("path/to/model_dir", torch.bfloat16)        # doctest: +SKIP
    >>> plan = check_fits(est, torch.device("cpu"))                 # raises ModelTooBig with the numbers

The parameter count comes from instantiating the architecture on the ``meta`` device (shapes
only, no memory), so it is exact for any architecture transformers knows. Memory needed is
parameters × bytes per parameter × ``OVERHEAD`` (activations, KV cache, the allocator).
Free memory is ``MemAvailable`` from ``/proc/meminfo`` on CPU and ``torch.cuda.mem_get_info``
on CUDA. On CUDA a model that does not fit on one GPU but fits across the GPUs (and, with
accelerate, the CPU) loads with ``device_map="auto"``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UserError

OVERHEAD = 1.15  # activations, KV cache and allocator slack on top of the weights
GIB = 1024 ** 3


class ModelTooBig(UserError):
    """The model would not fit in the memory that is free; the message gives the numbers and the options."""


@dataclass(frozen=True)
class Estimate:
    name: str
    n_params: int
    dtype: torch.dtype

    @property
    def bytes_per_param(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def needed_bytes(self) -> int:
        return int(self.n_params * self.bytes_per_param * OVERHEAD)


def count_params(config: Any) -> int:
    """The exact parameter count of the model a config describes, from shapes on the meta device.

    Tied embeddings are counted once (``parameters()`` yields a shared tensor once).
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def load_config(target: str, **kw: Any) -> Any:
    """The model's config (a small JSON file), from a local directory or the hub cache/hub."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(target, **kw)


def estimate(target: str | Any, dtype: torch.dtype, name: str = "") -> Estimate:
    """Parameter count and memory for ``target`` (a directory, a hub id, or a config object)."""
    config = target if not isinstance(target, str) else load_config(target)
    return Estimate(name=name or str(target if isinstance(target, str) else getattr(config, "model_type", "model")),
                    n_params=count_params(config), dtype=dtype)


def available_cpu_bytes() -> int:
    """``MemAvailable`` from ``/proc/meminfo`` (what can be allocated without swapping), or total RAM elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def available_cuda_bytes() -> list[int]:
    """Free bytes on each visible GPU."""
    return [int(torch.cuda.mem_get_info(i)[0]) for i in range(torch.cuda.device_count())]


@dataclass(frozen=True)
class Plan:
    device_map: str | None  # None: load on the one device; "auto": spread by accelerate
    needed_bytes: int
    free_bytes: int


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def check_fits(est: Estimate, device: torch.device, free_cpu: int | None = None,
               free_gpus: list[int] | None = None) -> Plan:
    """How to load ``est`` on ``device``, or ``ModelTooBig`` with the numbers and the options.

    ``free_cpu`` and ``free_gpus`` override the measured free memory (for tests).
    """
    need = est.needed_bytes
    cpu = available_cpu_bytes() if free_cpu is None else free_cpu
    what = (f"{est.name} has {est.n_params / 1e9:.2f} B parameters: at {est.bytes_per_param} bytes each "
            f"({str(est.dtype).removeprefix('torch.')}) plus {OVERHEAD - 1:.0%} working memory it needs about {_gib(need)}")
    options = ("Options: run it on a machine with a GPU (it loads in bfloat16 there), set EMPATHY_DTYPE=bfloat16 "
               "to halve the memory on CPU (slower, and scores differ slightly from fp32), or choose a smaller model "
               "(the bundled smollm2-135m, qwen2.5-coder-0.5b or gemma3-270m).")
    if device.type == "cuda":
        gpus = available_cuda_bytes() if free_gpus is None else free_gpus
        index = device.index or 0
        one = gpus[index] if index < len(gpus) else 0
        if need <= one:
            return Plan(None, need, one)
        spread = sum(gpus) + (cpu if importlib.util.find_spec("accelerate") else 0)
        if importlib.util.find_spec("accelerate") and need <= spread:
            return Plan("auto", need, spread)
        raise ModelTooBig(f"{what}, but GPU {index} has {_gib(one)} free and all GPUs and RAM together "
                          f"{_gib(spread)}. Nothing was loaded. {options}")
    if need > cpu:
        raise ModelTooBig(f"{what}, but this machine has {_gib(cpu)} of RAM available. Nothing was loaded "
                          f"(loading it would get the process killed). {options}")
    return Plan(None, need, cpu)
