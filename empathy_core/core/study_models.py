"""The study's model architectures from the configs in ``study_configs/`` (no download, no weights).

    >>> from empathy_core.core.study_models import study_config, random_init
    >>> study_config("qwen2.5-7b").num_hidden_layers
    28
    >>> model = random_init("qwen2.5-7b", hidden=112, intermediate=224)   # doctest: +SKIP

``random_init`` with no width arguments builds the real size (same shapes and cost), which is
what ``gpu-check --sizes study`` times. ``hidden`` reduces the width while keeping the head
counts (so the head dimension shrinks with it); everything else stays as published.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import torch

CONFIG_DIR = Path(__file__).resolve().parent / "study_configs"
STUDY_KEYS = ("phi3-mini", "qwen2.5-7b", "dolphin-llama3.1-8b")


@cache
def study_record(key: str) -> dict:
    """The JSON record: hub id, config, chat template, special tokens, published parameter count."""
    path = CONFIG_DIR / f"{key}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        raise ValueError(f"No study config for {key!r}; known: {known}.")
    return json.loads(path.read_text())


def study_config(key: str, hidden: int | None = None, intermediate: int | None = None) -> Any:
    """A transformers config for ``key``, optionally with reduced width and intermediate size."""
    from transformers import AutoConfig

    cfg = dict(study_record(key)["config"])
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    if hidden is not None:
        if hidden % cfg["num_attention_heads"]:
            raise ValueError(f"hidden={hidden} must be a multiple of the {cfg['num_attention_heads']} attention heads.")
        cfg["hidden_size"] = hidden
        cfg["head_dim"] = hidden // cfg["num_attention_heads"]
    if intermediate is not None:
        cfg["intermediate_size"] = intermediate
    return AutoConfig.for_model(model_type, **cfg)


def random_init(key: str, hidden: int | None = None, intermediate: int | None = None, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", seed: int = 0) -> Any:
    """A random-init causal LM with the study model's architecture (weights drawn on ``device``)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(study_config(key, hidden, intermediate), dtype=dtype)
    return model.eval()
