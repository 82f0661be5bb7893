"""Text-only baselines (no language model): TF-IDF logistic regression and a MiniLM embedding classifier.

Both are fitted on the short-pair train split with C chosen on the short dev split (highest dev
AUROC; ties -> the smaller C), and score any texts with the log-odds of "empathic".

    >>> b = TfidfBaseline.fit(train_texts, train_labels, dev_texts, dev_labels)   # doctest: +SKIP
    >>> b.score(["I stop and stay with them."])                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from empathy_core.study import metrics

CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)


def _fit_lr(F_tr, y_tr, F_dev, y_dev, cs: Sequence[float] = CS):
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in cs:
        lr = LogisticRegression(C=c, max_iter=5000).fit(F_tr, y_tr)
        a = metrics.auroc(lr.decision_function(F_dev), y_dev)
        if best is None or a > best[2] + 1e-12:
            best = (c, lr, a)
    return best


@dataclass
class TfidfBaseline:
    """TF-IDF of word 1-2-grams (lower-cased, sublinear tf) + L2 logistic regression."""

    vectorizer: object
    clf: object
    C: float
    dev_auroc: float

    @classmethod
    def fit(cls, train_texts, train_labels, dev_texts, dev_labels, cs: Sequence[float] = CS) -> TfidfBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), lowercase=True, sublinear_tf=True, min_df=1)
        F_tr = vec.fit_transform(train_texts)
        c, lr, a = _fit_lr(F_tr, np.asarray(train_labels), vec.transform(dev_texts), np.asarray(dev_labels), cs)
        return cls(vec, lr, c, a)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.clf.decision_function(self.vectorizer.transform(list(texts)))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 embeddings exactly as ``empathy_core.judges.EmbeddingJudge.embed`` computes them
    (mean-pooled, L2-normalised, truncated at 256 tokens), without fitting the judge on the repo's data."""

    def __init__(self):
        from transformers import AutoModel, AutoTokenizer

        from empathy_core.study.judges import embedding_model_dir

        d = embedding_model_dir()
        self.tok = AutoTokenizer.from_pretrained(str(d))
        self.model = AutoModel.from_pretrained(str(d)).eval()
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from empathy_core.study.judges import EmbeddingJudge

        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            E = EmbeddingJudge.embed(self, [t if t.strip() else "." for t in todo])  # reuse the judge's code
            self._memo.update(zip(todo, E))
        return np.stack([self._memo[t] for t in texts])


@dataclass
class EmbeddingBaseline:
    """Logistic regression on MiniLM embeddings (the judge's classifier, with C chosen on dev)."""

    embedder: MiniLMEmbedder
    clf: object
    C: float
    dev_auroc: float
    extra: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, embedder: MiniLMEmbedder, train_texts, train_labels, dev_texts, dev_labels,
            cs: Sequence[float] = CS) -> EmbeddingBaseline:
        c, lr, a = _fit_lr(embedder.embed(train_texts), np.asarray(train_labels), embedder.embed(dev_texts),
                           np.asarray(dev_labels), cs)
        return cls(embedder, lr, c, a)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.clf.decision_function(self.embedder.embed(list(texts)))
