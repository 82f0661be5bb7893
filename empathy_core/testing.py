"""Tiny random-init models of real architectures, built in memory: for tests, never for results.

    >>> from empathy_core.testing import tiny_model
    >>> h = tiny_model("llama", n_layers=4, hidden=64)   # doctest: +SKIP

The tokenizer is word-level over the project's own data and scenarios, with a small chat
template, so no download is needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from .core.models import ModelHandle, find_layers

TINY_ARCHS = ("llama", "qwen2", "phi3", "gemma3", "gpt2")


def tiny_tokenizer(extra_words: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with a chat template, built in memory (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from .study import dataset

    words = set(extra_words)
    for p in dataset.load_pairs() if (dataset.DATA_DIR / "pairs").exists() else ():
        for t in (p.empathic, p.task, p.moment):
            words.update(_split_words(t))
    # every text the detection experiment reads (long-form, confounds, graded, sanity): none may be all <unk>
    for lf in dataset.load_longform() if (dataset.DATA_DIR / "longform").exists() else ():
        words.update(_split_words(lf.empathic + " " + lf.task))
    for c in dataset.load_confounds() if (dataset.DATA_DIR / "confounds").exists() else ():
        words.update(_split_words(c.high + " " + c.low))
    for g in dataset.load_graded() if (dataset.DATA_DIR / "graded").exists() else ():
        words.update(_split_words(g.text))
    for sn in dataset.load_sanity() if (dataset.DATA_DIR / "sanity").exists() else ():
        words.update(_split_words(sn.text))
    for s in dataset.scenarios().values():
        words.update(_split_words(s.describe()))
    specials = ["<pad>", "<unk>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(words))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    from tokenizers import processors

    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|> {% endif %}")
    return tok


def _split_words(text: str) -> list[str]:
    """Words and punctuation, single marks and runs ("...", "?!"): the Whitespace pre-tokenizer keeps runs whole."""
    return re.findall(r"\w+|[^\w\s]", text) + re.findall(r"[^\w\s]+", text)


def tiny_model(arch: str = "llama", n_layers: int = 4, hidden: int = 64, seed: int = 0, vocab_size: int | None = None,
               tokenizer: PreTrainedTokenizerFast | None = None) -> ModelHandle:
    """A random-init model of a real architecture, small enough for fast tests."""
    import transformers as tf

    tok = tokenizer or tiny_tokenizer()
    vocab = vocab_size or len(tok)
    common: dict[str, Any] = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layers,
                  num_attention_heads=4, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    cfg: Any
    cls: Any
    if arch == "llama":
        cfg, cls = tf.LlamaConfig(num_key_value_heads=2, **common), tf.LlamaForCausalLM
    elif arch == "qwen2":
        cfg, cls = tf.Qwen2Config(num_key_value_heads=2, **common), tf.Qwen2ForCausalLM
    elif arch == "phi3":
        cfg, cls = tf.Phi3Config(num_key_value_heads=4, **common), tf.Phi3ForCausalLM
    elif arch == "gemma3":
        cfg = tf.Gemma3TextConfig(num_key_value_heads=1, head_dim=16, sliding_window=16, **common)
        cls = tf.Gemma3ForCausalLM
    elif arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=n_layers, n_head=4, n_positions=512,
                            bos_token_id=2, eos_token_id=3, pad_token_id=0)
        cls = tf.GPT2LMHeadModel
    else:
        raise ValueError(f"Unknown tiny architecture {arch!r}; choose from {TINY_ARCHS}.")
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    return ModelHandle(key=f"tiny-{arch}", model=model, tokenizer=tok, layers=find_layers(model), revision=f"random-init:{seed}",
                       is_chat=True)


def save_tiny_model(path: str | Path, arch: str = "llama", n_layers: int = 4, hidden: int = 64, seed: int = 0) -> Path:
    """A tiny random-init model and its tokenizer saved as a local model directory (``save_pretrained``)."""
    h = tiny_model(arch, n_layers=n_layers, hidden=hidden, seed=seed)
    out = Path(path)
    h.model.save_pretrained(out)
    h.tokenizer.save_pretrained(out)
    return out
