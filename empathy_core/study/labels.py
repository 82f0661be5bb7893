"""Blind labels of real sweep generations: the dataset that every steering judgment is checked against.

    >>> from empathy_core.study import labels
    >>> items = labels.load_labels()                  # 330 labelled replies         # doctest: +SKIP
    >>> train = [x for x in items if x.split == "train"]   # fit and choose here only  # doctest: +SKIP

The file ``empathy_core/data/labels/generations.jsonl`` holds one labelled reply per line: the
reply, its scenario, the key (model, layer, seed, alpha, condition), the labels of the two
independent passes A and B, the third read C where they disagreed, the final label and the split.
``empathy_core/data/labels/README.md`` says who labelled what and how.

The split is fixed and recorded in each line: within each model, the replies sorted by a hash of
their id, the first half (rounded down) is ``test`` and the rest ``train`` (``split_labels``; a test
checks that the file agrees). A batch in ``FRESH_BATCHES``, labelled after the rules were fixed, is ``test``
whole. The test part is never used to fit or choose anything.

It is rebuilt from the staged labelling files by
``python -m empathy_core.study.labels build staging/labels`` (a command, so the merge is code).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ..core.scenarios import DATA_DIR

LABELS_PATH = DATA_DIR / "labels" / "generations.jsonl"
# Which labelled reply is which push's reply for which labelled baseline (labels batch8): one line per
# (scenario, seed, push, condition) with ``baseline_id`` and ``reply_id``, both ids of ``generations.jsonl``, and the
# push's direction, layer and alpha ("" / None / 0 for the unsteered controls).
PUSHES_PATH = DATA_DIR / "labels" / "pushes.jsonl"
PUSH_FIELDS = ("scenario", "seed", "push", "condition", "direction", "layer", "alpha", "baseline_id", "reply_id")
Label = Literal["empathic_choice", "task_choice", "unclear", "off_topic", "incoherent", "echo_or_meta"]
LABEL_NAMES: tuple[str, ...] = ("incoherent", "echo_or_meta", "off_topic", "empathic_choice", "task_choice", "unclear")
SPLIT_SALT = "labels-v1"
TEST_FRACTION = 0.5
# Batches labelled after the pipeline's rules were fixed: held out whole, never split into train, so that the
# call is tested on replies nobody had read when it was fitted (``validation`` reports them on their own).
# Planned in session 7 as batch5; that name went to session 8's enrichment batch (split like batches 1-4), so the
# fresh batch is batch6.
FRESH_BATCHES: tuple[str, ...] = ("batch6", "batch7", "batch8")


@dataclass(frozen=True)
class LabelledReply:
    """One blind-labelled generation (a line of ``generations.jsonl``)."""

    id: str
    batch: str
    model: str
    scenario: str
    layer: int | None
    seed: int
    alpha: float
    condition: str
    reply: str
    label_a: str
    label_b: str
    label_c: str | None  # the third read, only where A and B disagree
    label: str  # A where A = B, else C
    split: str  # "train" or "test"

    @property
    def coherent(self) -> bool:
        """Readable English that acts in the game (neither incoherent nor echo/meta)."""
        return self.label not in ("incoherent", "echo_or_meta")

    @property
    def on_topic(self) -> bool:
        """Coherent and about this scenario."""
        return self.coherent and self.label != "off_topic"


def cohens_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two labellings of the same items."""
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two labellings of the same, non-empty items")
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / n ** 2
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def split_labels(ids_by_model: Mapping[str, Sequence[str]], fraction: float = TEST_FRACTION) -> dict[str, str]:
    """The fixed split: per model, ids sorted by a salted sha256; the first ``fraction`` (rounded down) is test."""
    out = {}
    for ids in ids_by_model.values():
        order = sorted(ids, key=lambda i: hashlib.sha256(f"{SPLIT_SALT}:{i}".encode()).hexdigest())
        k = int(len(order) * fraction)
        out.update({i: ("test" if n < k else "train") for n, i in enumerate(order)})
    return out


def split_groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The groups the split is drawn within: one per (model, batch), so that a later batch leaves the split of
    the earlier ones as it was."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        out[f"{r['model']}/{r['batch']}"].append(r["id"])
    return out


@lru_cache(maxsize=1)
def load_labels(path: Path = LABELS_PATH) -> tuple[LabelledReply, ...]:
    """Every labelled reply, in file order."""
    return tuple(LabelledReply(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip())


def load_pushes(path: Path = PUSHES_PATH, items: Sequence[LabelledReply] | None = None) -> tuple[dict, ...]:
    """The pairing of labels batch8 (empty where the file does not exist): every line must name labelled ids."""
    if not Path(path).exists():
        return ()
    by = {x.id: x for x in (load_labels() if items is None else items)}
    out, seen = [], set()
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        missing = [f for f in PUSH_FIELDS if f not in r]
        if missing:
            raise ValueError(f"{path}:{n}: missing {', '.join(missing)}")
        for f in ("baseline_id", "reply_id"):
            if r[f] not in by:
                raise ValueError(f"{path}:{n}: {f} {r[f]!r} is not a labelled reply")
        base, reply = by[r["baseline_id"]], by[r["reply_id"]]
        if not base.scenario == reply.scenario == r["scenario"] or base.model != reply.model:
            raise ValueError(f"{path}:{n}: the baseline and the reply are not of one model and scenario {r['scenario']!r}")
        key = (r["scenario"], r["seed"], r["push"], r["condition"])
        if key in seen:
            raise ValueError(f"{path}:{n}: {key} appears twice")
        seen.add(key)
        out.append({f: r[f] for f in PUSH_FIELDS})
    return tuple(out)


def summary(items: Sequence[LabelledReply]) -> dict:
    """Counts, agreement and kappa per batch, and final-label counts per model and split (for the README)."""
    out: dict = {"n": len(items), "batches": {}, "by_model": {}}
    batches: dict[str, list[LabelledReply]] = defaultdict(list)
    for x in items:
        batches[x.batch].append(x)
    for b, xs in sorted(batches.items()):
        out["batches"][b] = {"n": len(xs), "models": sorted({x.model for x in xs}),
                             "agreement": sum(x.label_a == x.label_b for x in xs) / len(xs),
                             "kappa": cohens_kappa([x.label_a for x in xs], [x.label_b for x in xs]),
                             "third_reads": sum(x.label_c is not None for x in xs)}
    for m in sorted({x.model for x in items}):
        xs = [x for x in items if x.model == m]
        out["by_model"][m] = {s: dict(Counter(x.label for x in xs if x.split == s)) for s in ("train", "test")}
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def label_rates(items: Sequence[LabelledReply]) -> list[dict]:
    """What the blind labels say about the generations themselves, with no pipeline in between: per (model, batch,
    condition, sign of alpha), the count of each final label and the share of empathic choices (Wilson 95% CI).
    A batch is a sample drawn by its own design (see the README), so shares are comparable within a batch only."""
    from .metrics import wilson_ci

    groups: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for x in items:
        sign = "alpha > 0" if x.alpha > 0 else "alpha < 0" if x.alpha < 0 else "alpha = 0"
        groups[(x.model, x.batch, x.condition, sign)].append(x.label)
    out = []
    for (model, batch, cond, sign), labs in sorted(groups.items()):
        k, n = labs.count("empathic_choice"), len(labs)
        lo, hi = wilson_ci(k, n)
        out.append({"model": model, "batch": batch, "condition": cond, "alpha": sign, "n": n,
                    "counts": dict(sorted(Counter(labs).items())), "empathic_share": k / n, "empathic_ci": [lo, hi],
                    "task_share": labs.count("task_choice") / n})
    return out


def _batch_rows(staging: Path, batch: str) -> list[dict]:
    """One batch's blind items joined with its key and its A, B and C labels (C only for disagreements)."""
    items = _read_jsonl(staging / f"{batch}_blind.jsonl")
    key = {r["id"]: r for r in _read_jsonl(staging / f"{batch}_key.jsonl")}
    lab = {w: {r["id"]: r["label"] for r in _read_jsonl(staging / f"{batch}_labels_{w}.jsonl")} for w in "ABC"}
    rows = []
    for it in items:
        i = it["id"]
        a, b = lab["A"][i], lab["B"][i]
        c = lab["C"].get(i) if a != b else None
        if a != b and c is None:
            raise ValueError(f"{batch}: item {i} has no third read (A={a}, B={b})")
        final = a if a == b else c
        for x in (a, b, final):
            if x not in LABEL_NAMES:
                raise ValueError(f"{batch}: item {i} has an unknown label {x!r}")
        k = key[i]
        rows.append({"id": i, "batch": batch, "model": k["model"], "scenario": k["scenario"], "layer": k["layer"],
                     "seed": k["seed"], "alpha": float(k["alpha"]), "condition": k["condition"], "reply": it["reply"],
                     "label_a": a, "label_b": b, "label_c": c, "label": final})
    return rows


def build(staging: Path, out: Path = LABELS_PATH) -> list[LabelledReply]:
    """Merge the staged batches into ``generations.jsonl`` with the fixed split; returns the items."""
    names = (f.name[: -len("_blind.jsonl")] for f in Path(staging).glob("batch*_blind.jsonl"))
    batches = sorted((b for b in names if b[len("batch"):].isdigit()), key=lambda b: int(b[len("batch"):]))
    rows = [r for b in batches for r in _batch_rows(staging, b)]
    if len({r["id"] for r in rows}) != len(rows):
        raise ValueError("duplicate ids across batches")
    split = split_labels(split_groups([r for r in rows if r["batch"] not in FRESH_BATCHES]))
    split.update({r["id"]: "test" for r in rows if r["batch"] in FRESH_BATCHES})
    items = [LabelledReply(**r, split=split[r["id"]]) for r in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(asdict(x), ensure_ascii=False) + "\n" for x in items))
    load_labels.cache_clear()
    return items


def main(argv: list[str] | None = None) -> int:
    """``build STAGING_DIR`` writes the dataset; ``summary`` prints counts and kappas as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "build":
        items = build(Path(argv[1]))
        print(f"{len(items)} labelled replies -> {LABELS_PATH}")
        return 0
    if argv == ["summary"]:
        print(json.dumps(summary(load_labels()), indent=1))
        return 0
    print("usage: python -m empathy_core.study.labels build STAGING_DIR | summary", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
