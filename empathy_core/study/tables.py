"""Every kind of data as a flat text table, for the detection experiment (no model here).

Each kind (``pairs``, ``longform``, ``confounds``, ``graded``, ``sanity``, ``hostile_dev``) becomes a :class:`Table`:
one row per text with its label, the id of the pair or item it belongs to, its scenario, its
split and a few per-kind fields. Pairs give the empathic side (label 1) then the task side (0);
confound controls the high side (1) then the low side (0).

The confound controls are split 50/50, stratified by axis, by a hash of the id
(:func:`confound_part`): ``conf_train`` fits erasers and enters the default choice; ``conf_heldout``
is only ever measured.

    >>> t = load_tables()["pairs"]
    >>> t.texts[0] == load_tables()["pairs"].texts[0] and t.labels[:2] == [1, 0]
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import dataset

AXES: tuple[str, ...] = ("sentiment", "politeness", "length", "enthusiasm")
TABLE_KINDS: tuple[str, ...] = ("pairs", "longform", "confounds", "graded", "sanity", "hostile_dev")


@dataclass
class Table:
    """Texts with per-text fields, all lists of equal length."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # pairs 1/0; confounds 1 high / 0 low; graded 0-2; sanity -1
    groups: list[str] = field(default_factory=list)  # pair / item id
    scenarios: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)  # train/dev/test; conf_train/conf_heldout; graded; sanity
    extra: dict[str, list] = field(default_factory=dict)  # minimal, lexical, axis, stance, category, expected

    def __len__(self) -> int:
        return len(self.texts)

    def arr(self, name: str) -> np.ndarray:
        """A field as a numpy array (``labels``, ``groups``, ``scenarios``, ``splits`` or an ``extra`` key)."""
        if name in ("texts", "labels", "groups", "scenarios", "splits"):
            return np.asarray(getattr(self, name))
        return np.asarray(self.extra[name])

    def add(self, text: str, label: int, group: str, scenario: str, split: str, **extra: object) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.groups.append(group)
        self.scenarios.append(scenario)
        self.splits.append(split)
        for k, v in extra.items():
            self.extra.setdefault(k, []).append(v)


def pair_table(pairs: Sequence[dataset.Pair]) -> Table:
    """Pairs (short or long-form) -> empathic (1) and task (0) rows."""
    t = Table()
    for p in pairs:
        lexical = dataset.is_lexically_controlled(p)
        for text, lab in ((p.empathic, 1), (p.task, 0)):
            t.add(text, lab, p.id, p.scenario, p.split, minimal=bool(p.minimal), lexical=lexical)
    return t


def confound_part(item_id: str, ids_same_axis: Sequence[str]) -> str:
    """Within an axis, items ordered by sha256("confound:" + id): the first half (rounded up) is
    ``conf_train``, the rest ``conf_heldout``."""
    order = sorted(ids_same_axis, key=lambda i: hashlib.sha256(f"confound:{i}".encode()).hexdigest())
    return "conf_train" if order.index(item_id) < (len(order) + 1) // 2 else "conf_heldout"


def confound_table(items: Sequence[dataset.Confound]) -> Table:
    by_axis: dict[str, list[str]] = {}
    for c in items:
        by_axis.setdefault(c.axis, []).append(c.id)
    t = Table()
    for c in items:
        part = confound_part(c.id, by_axis[c.axis])
        for text, lab in ((c.high, 1), (c.low, 0)):
            t.add(text, lab, c.id, c.scenario, part, axis=c.axis, stance=c.stance)
    return t


def load_tables() -> dict[str, Table]:
    """All five kinds as tables, from ``empathy_core/data``."""
    graded, sanity, hostile = Table(), Table(), Table()
    for g in dataset.load_graded():
        graded.add(g.text, int(g.label), g.id, g.scenario, "graded")
    for s in dataset.load_sanity():
        sanity.add(s.text, -1, s.id, s.scenario, "sanity", category=s.category, expected=s.expected)
    for s in dataset.load_hostile_dev():  # dev only: the default choice's hostile criterion (RULE.md amendment 2)
        hostile.add(s.text, 0, s.id, s.scenario, "hostile_dev", category=s.category, expected=s.expected)
    return {"pairs": pair_table(dataset.load_pairs()), "longform": pair_table(dataset.load_longform()),
            "confounds": confound_table(dataset.load_confounds()), "graded": graded, "sanity": sanity,
            "hostile_dev": hostile}
