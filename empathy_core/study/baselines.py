"""Text-only baselines (no language model): TF-IDF logistic regression and a MiniLM embedding classifier.

Both are fitted on a train split with C chosen on a dev split (highest dev AUROC; ties keep the
smaller C), and score any texts with the log-odds of "empathic" (threshold 0). A probe that reads
the model's hidden states should beat these; where it does not, the app says so.

    >>> b = TfidfBaseline.fit(["I stay with you.", "I run."], [1, 0], ["I stay.", "I go."], [1, 0])
    >>> b.score(["I stay with you."]).shape
    (1,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from . import metrics
from .dataset import SCENARIO_IDS
from .tables import Table

CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
NAMES = {"tfidf_logreg": "TF-IDF word 1-2-gram logistic regression",
         "minilm_logreg": "MiniLM (all-MiniLM-L6-v2) embedding logistic regression"}


def _fit_lr(F_tr: Any, y_tr: np.ndarray, F_dev: Any, y_dev: np.ndarray, cs: Sequence[float] = CS) -> tuple[float, Any, float]:
    from sklearn.linear_model import LogisticRegression

    best: tuple[float, Any, float] | None = None
    for c in cs:
        lr = LogisticRegression(C=c, max_iter=5000).fit(F_tr, y_tr)
        a = metrics.auroc(lr.decision_function(F_dev), y_dev)
        if best is None or a > best[2] + 1e-12:
            best = (c, lr, a)
    if best is None:
        raise ValueError("No C values to choose from.")
    return best


class Baseline(Protocol):
    C: float
    dev_auroc: float

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class TfidfBaseline:
    """TF-IDF of word 1-2-grams (lower-cased, sublinear tf) + L2 logistic regression."""

    vectorizer: Any
    clf: Any
    C: float
    dev_auroc: float

    @classmethod
    def fit(cls, train_texts: Sequence[str], train_labels: ArrayLike, dev_texts: Sequence[str], dev_labels: ArrayLike,
            cs: Sequence[float] = CS) -> TfidfBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), lowercase=True, sublinear_tf=True, min_df=1)
        F_tr = vec.fit_transform(list(train_texts))
        c, lr, a = _fit_lr(F_tr, np.asarray(train_labels), vec.transform(list(dev_texts)), np.asarray(dev_labels), cs)
        return cls(vec, lr, c, a)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.clf.decision_function(self.vectorizer.transform(list(texts))))


class MemoEmbedder:
    """The judge's MiniLM embeddings (``judges.MiniLM``), computed once per distinct text."""

    def __init__(self) -> None:
        from .judges import MiniLM

        self.minilm = MiniLM()
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            self._memo.update(zip(todo, self.minilm.embed(todo)))
        return np.stack([self._memo[t] for t in texts])


@dataclass
class EmbeddingBaseline:
    """Logistic regression on MiniLM embeddings (the embedding judge's features, with C chosen on dev)."""

    embedder: MemoEmbedder
    clf: Any
    C: float
    dev_auroc: float

    @classmethod
    def fit(cls, embedder: MemoEmbedder, train_texts: Sequence[str], train_labels: ArrayLike, dev_texts: Sequence[str],
            dev_labels: ArrayLike, cs: Sequence[float] = CS) -> EmbeddingBaseline:
        c, lr, a = _fit_lr(embedder.embed(train_texts), np.asarray(train_labels), embedder.embed(dev_texts),
                           np.asarray(dev_labels), cs)
        return cls(embedder, lr, c, a)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.clf.decision_function(self.embedder.embed(list(texts))))


def _report(make: Callable[..., Baseline], d: dict[str, Table], m: dict[str, np.ndarray], n_boot: int) -> dict:
    """Every number the probes report, for one baseline kind (fitted on short train, C on short dev)."""
    from .detection import auc, conf_axis_aurocs, confound_heldout

    P, LF, C, G, S = d["pairs"], d["longform"], d["confounds"], d["graded"], d["sanity"]
    T, TL = np.asarray(P.texts, dtype=object), np.asarray(LF.texts, dtype=object)
    ys, gs, yl, gl = P.arr("labels"), P.arr("groups"), LF.arr("labels"), LF.arr("groups")
    te, mi, lx, lt = m["s_test"], m["s_test_minimal"], m["s_test_lexical"], m["l_test"]
    b = make(list(T[m["s_train"]]), ys[m["s_train"]], list(T[m["s_dev"]]), ys[m["s_dev"]])
    s, sl, sc, sg = b.score(P.texts), b.score(LF.texts), b.score(C.texts), b.score(G.texts)
    ci = metrics.pair_bootstrap_ci
    r = {"C": b.C, "dev_auroc": b.dev_auroc,
         "test_auroc": auc(s[te], ys[te]), "test_auroc_ci": ci(s[te], ys[te], gs[te], n_boot),
         "minimal_test_auroc": auc(s[mi], ys[mi]), "minimal_test_auroc_ci": ci(s[mi], ys[mi], gs[mi], n_boot),
         "lexical_test_auroc": auc(s[lx], ys[lx]), "lexical_test_auroc_ci": ci(s[lx], ys[lx], gs[lx], n_boot),
         "longform_dev_auroc_short_fit": auc(sl[m["l_dev"]], yl[m["l_dev"]]),
         "longform_test_auroc_short_fit": auc(sl[lt], yl[lt]),
         "longform_test_auroc_short_fit_ci": ci(sl[lt], yl[lt], gl[lt], n_boot),
         "confound_heldout": confound_heldout(sc, C, m, n_boot), "confound_train_part": conf_axis_aurocs(sc, C, m["c_train"])}
    rho, lo, hi = metrics.correlation_ci(sg, G.arr("labels"), "spearman", n_boot=n_boot)
    r["graded_spearman"], r["graded_spearman_ci"] = rho, [lo, hi]
    bl = make(list(TL[m["l_train"]]), yl[m["l_train"]], list(TL[m["l_dev"]]), yl[m["l_dev"]])
    s2 = bl.score(list(T[te]))
    r["short_test_auroc_longform_fit"] = auc(s2, ys[te])
    r["short_test_auroc_longform_fit_ci"] = ci(s2, ys[te], gs[te], n_boot)
    sc_s = P.arr("scenarios")
    loso = {}
    for held in SCENARIO_IDS:
        tr, dv, tt = m["s_train"] & (sc_s != held), m["s_dev"] & (sc_s != held), te & (sc_s == held)
        if tt.sum():
            loso[held] = auc(make(list(T[tr]), ys[tr], list(T[dv]), ys[dv]).score(list(T[tt])), ys[tt])
    r["loso_test_auroc"], r["loso_test_auroc_mean"] = loso, float(np.mean(list(loso.values())))
    ss = b.score(S.texts)
    hostile = np.isin(S.arr("category"), ["hostile", "dismissive_polite"])
    r["sanity"] = {"hostile_dismissive_task_side": float((ss[hostile] < 0).mean()),
                   "warm_empathic_side": float((ss[S.arr("expected") == "empathic"] >= 0).mean()),
                   "threshold": "log-odds 0"}
    return r


def baseline_reports(d: dict[str, Table], m: dict[str, np.ndarray], n_boot: int = 1000,
                     kinds: Sequence[str] = ("tfidf_logreg", "minilm_logreg")) -> dict:
    """TF-IDF and MiniLM baselines on the probes' splits (model-independent, so kept in
    ``$EMPATHY_CACHE/baselines/`` per dataset sha256, bootstrap size and code version: every model's run reuses them)."""
    import hashlib
    import json

    from .. import __version__
    from ..core.models import cache_root
    from .dataset import dataset_sha256

    tag = hashlib.sha256(json.dumps([dataset_sha256(), n_boot, list(kinds), __version__]).encode()).hexdigest()[:20]
    path = cache_root() / "baselines" / f"{tag}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    out = _baseline_reports(d, m, n_boot, kinds)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _baseline_reports(d: dict[str, Table], m: dict[str, np.ndarray], n_boot: int, kinds: Sequence[str]) -> dict:
    out = {}
    if "tfidf_logreg" in kinds:
        out["tfidf_logreg"] = {"name": NAMES["tfidf_logreg"], **_report(TfidfBaseline.fit, d, m, n_boot)}
    if "minilm_logreg" in kinds:
        emb = MemoEmbedder()

        def make(tr_t: Sequence[str], tr_y: ArrayLike, dv_t: Sequence[str], dv_y: ArrayLike) -> EmbeddingBaseline:
            return EmbeddingBaseline.fit(emb, tr_t, tr_y, dv_t, dv_y)

        out["minilm_logreg"] = {"name": NAMES["minilm_logreg"], **_report(make, d, m, n_boot)}
    return out
