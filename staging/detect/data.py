"""Loading the staged issue-10 data (pairs, long-form, confounds, graded, sanity) as flat text tables.

Every record kind is flattened into a :class:`Table`: one row per text with its label, the id of
the pair (or item) it belongs to, its scenario, its split and a few per-kind fields. The scenario id
is the file stem. Nothing here touches a model.

    >>> from detect.data import load_all
    >>> d = load_all("staging/data-v2")          # doctest: +SKIP
    >>> d["pairs"].texts[:2], d["pairs"].labels[:2]  # empathic (1) then task (0) of the first pair
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCENARIO_IDS = ("food_delivery", "listener", "maze", "protector", "duel")
AXES = ("sentiment", "politeness", "length", "enthusiasm")
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data-v2"


@dataclass
class Table:
    """Texts with per-text fields, all lists of equal length."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # pairs: 1 empathic / 0 task; confounds: 1 high / 0 low; graded: 0-2
    groups: list[str] = field(default_factory=list)  # pair / item id (both sides of a pair share it)
    scenarios: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)  # train/dev/test for pairs & long-form; conf_train/conf_heldout for confounds
    extra: dict[str, list] = field(default_factory=dict)  # minimal, lexical, axis, stance, category, expected ...

    def __len__(self) -> int:
        return len(self.texts)

    def arr(self, name: str) -> np.ndarray:
        """A field as a numpy array (``labels``, ``groups``, ``scenarios``, ``splits`` or an ``extra`` key)."""
        if name in ("texts", "labels", "groups", "scenarios", "splits"):
            return np.asarray(getattr(self, name))
        return np.asarray(self.extra[name])


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rows(data_dir: Path, kind: str) -> list[dict]:
    out = []
    for s in SCENARIO_IDS:
        f = data_dir / kind / f"{s}.jsonl"
        if f.exists():
            out += [{"scenario": s, **r} for r in _read(f)]
    return out


def _cue_free(text: str) -> bool:
    from empathy_core.study.dataset import cue_words

    return not cue_words(text)


def pair_table(rows: list[dict]) -> Table:
    """Pairs (short or long-form) -> empathic (1) and task (0) rows."""
    t = Table(extra={"minimal": [], "lexical": [], "voice": []})
    for r in rows:
        lexical = _cue_free(r["empathic"]) and _cue_free(r["task"])
        for text, lab in ((r["empathic"], 1), (r["task"], 0)):
            t.texts.append(text)
            t.labels.append(lab)
            t.groups.append(r["id"])
            t.scenarios.append(r["scenario"])
            t.splits.append(r["split"])
            t.extra["minimal"].append(bool(r.get("minimal", False)))
            t.extra["lexical"].append(lexical)
            t.extra["voice"].append(r.get("voice", ""))
    return t


def confound_split(item_id: str, axis: str, ids_same_axis: list[str]) -> str:
    """50/50 split of confound controls, stratified by axis, by a hash of the id.

    Within each axis the items are ordered by sha256(id) and the first half (rounded up) is
    ``conf_train`` (used to fit erasers and to choose the default), the rest ``conf_heldout``.
    """
    order = sorted(ids_same_axis, key=lambda i: hashlib.sha256(f"confound:{i}".encode()).hexdigest())
    return "conf_train" if order.index(item_id) < (len(order) + 1) // 2 else "conf_heldout"


def confound_table(rows: list[dict]) -> Table:
    """Confound controls -> high (1) and low (0) rows, each tagged with its axis, stance and 50/50 part."""
    by_axis: dict[str, list[str]] = {}
    for r in rows:
        by_axis.setdefault(r["axis"], []).append(r["id"])
    t = Table(extra={"axis": [], "stance": []})
    for r in rows:
        part = confound_split(r["id"], r["axis"], by_axis[r["axis"]])
        for text, lab in ((r["high"], 1), (r["low"], 0)):
            t.texts.append(text)
            t.labels.append(lab)
            t.groups.append(r["id"])
            t.scenarios.append(r["scenario"])
            t.splits.append(part)
            t.extra["axis"].append(r["axis"])
            t.extra["stance"].append(r["stance"])
    return t


def graded_table(rows: list[dict]) -> Table:
    t = Table()
    for r in rows:
        t.texts.append(r["text"])
        t.labels.append(int(r["label"]))
        t.groups.append(r["id"])
        t.scenarios.append(r["scenario"])
        t.splits.append("graded")
    return t


def sanity_table(rows: list[dict]) -> Table:
    t = Table(extra={"category": [], "expected": []})
    for r in rows:
        t.texts.append(r["text"])
        t.labels.append(-1)
        t.groups.append(r["id"])
        t.scenarios.append(r["scenario"])
        t.splits.append("sanity")
        t.extra["category"].append(r["category"])
        t.extra["expected"].append(r["expected"])
    return t


def load_all(data_dir: str | Path = DEFAULT_DATA_DIR) -> dict[str, Table]:
    """All five kinds as tables: ``pairs``, ``longform``, ``confounds``, ``graded``, ``sanity``."""
    d = Path(data_dir)
    return {"pairs": pair_table(_rows(d, "pairs")), "longform": pair_table(_rows(d, "longform")),
            "confounds": confound_table(_rows(d, "confounds")), "graded": graded_table(_rows(d, "graded")),
            "sanity": sanity_table(_rows(d, "sanity"))}


def data_sha256(data_dir: str | Path = DEFAULT_DATA_DIR) -> str:
    """One hash over every staged data file (kind/scenario.jsonl), in a fixed order."""
    d = Path(data_dir)
    h = hashlib.sha256()
    for kind in ("pairs", "longform", "confounds", "graded", "sanity"):
        for s in SCENARIO_IDS:
            f = d / kind / f"{s}.jsonl"
            if f.exists():
                h.update(f"{kind}/{s}.jsonl".encode())
                h.update(f.read_bytes())
    return h.hexdigest()
