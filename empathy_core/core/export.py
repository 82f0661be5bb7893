"""Export a probe's direction as a safetensors file or a llama.cpp control vector (GGUF).

    python -m empathy_core export --model smollm2-135m --layer best --alpha 0.5 --format gguf --out empathy.gguf
    llama-cli -m SmolLM2-135M-Instruct.Q4_1.gguf --control-vector empathy.gguf ...

Layer numbering. Our layer L is the output of decoder block L, 0-based. llama.cpp reads
tensors named ``direction.N`` and adds ``direction.N`` to the output of its block N, also
0-based. It keeps no slot for block 0 (``direction.0`` is rejected), so block 0 cannot be
exported to llama.cpp. Our layer L is therefore written as ``direction.L``, unchanged.

The vector written is ``alpha * v_L``: with ``unit="relative"`` v_L is the unit direction
times the layer's mean residual norm, with ``unit="raw"`` it is the unit direction. Without
an alpha the unit direction itself is written (alpha = 1, raw), and llama.cpp's
``--control-vector-scaled FILE S`` then gives a raw alpha of S.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from .probes import Probe


def export_vector(probe: Probe, layer: int, alpha: float | None, unit: str) -> torch.Tensor:
    if not 0 <= layer < probe.n_layers:
        raise ValueError(f"Layer {layer} is out of range: this probe has layers 0 to {probe.n_layers - 1}.")
    d = probe.directions[layer].float()
    if alpha is None:
        return d
    if not np.isfinite(alpha):
        raise ValueError("alpha must be finite.")
    if unit == "relative":
        return alpha * float(probe.mean_norms[layer]) * d
    if unit == "raw":
        return alpha * d
    raise ValueError("unit must be 'raw' or 'relative'.")


def write_safetensors(path: Path, probe: Probe, layer: int, vec: torch.Tensor, alpha: float | None, unit: str) -> Path:
    meta = {k: str(v) for k, v in probe.meta.items() if k in ("model_key", "revision", "pooling", "method", "dataset_sha256",
                                                              "layer_convention")}
    meta.update({"layer": str(layer), "alpha": "none" if alpha is None else repr(float(alpha)), "unit": unit,
                 "mean_norm": repr(float(probe.mean_norms[layer])), "llama_cpp_name": f"direction.{layer}"})
    save_file({"direction": vec.contiguous(), f"direction.{layer}": vec.clone().contiguous()}, str(path), metadata=meta)
    return path


def write_gguf(path: Path, vec: torch.Tensor, layer: int, model_hint: str) -> Path:
    """A llama.cpp control vector: one tensor ``direction.{layer}`` plus the header llama.cpp reads."""
    import gguf

    if layer == 0:
        raise ValueError("llama.cpp cannot steer block 0 (it has no slot for direction.0); choose layer 1 or later.")
    w = gguf.GGUFWriter(str(path), "controlvector")
    w.add_string("controlvector.model_hint", model_hint)
    w.add_uint32("controlvector.layer_count", 1)
    w.add_tensor(f"direction.{layer}", vec.detach().cpu().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def read_gguf(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Tensors and string/int fields of a GGUF control vector (for tests and inspection)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape(-1) for t in r.tensors}
    fields: dict[str, Any] = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        val = f.parts[f.data[0]] if f.data else None
        if f.types and f.types[0] == gguf.GGUFValueType.STRING and val is not None:
            fields[name] = bytes(val).decode()
        elif val is not None:
            fields[name] = val.tolist()[0] if hasattr(val, "tolist") else val
    return tensors, fields
