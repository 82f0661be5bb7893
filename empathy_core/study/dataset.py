"""The datasets and the rules they must obey (the scenarios themselves: ``core/scenarios.py``).

The texts were drafted by language-model writing helpers and checked by these rules and by reading
(``data/README.md`` says how).

The data lives in ``empathy_core/data/`` as JSON Lines (one record a line):

* ``pairs/SCENARIO.jsonl``     contrastive pairs: ``empathic`` vs ``task`` reply to one moment
* ``confounds/SCENARIO.jsonl`` confound controls: ``high`` vs ``low`` differ in tone, not empathy
* ``graded/SCENARIO.jsonl``    single replies labelled 0/1/2 with the EIA rubric
* ``longform/SCENARIO.jsonl``  long-form pairs (80-250 words a side: reasoning, then a choice), own split
* ``sanity/SCENARIO.jsonl``    texts a probe cannot or should not judge as empathic; never fitted on

One file per scenario and kind, so each scenario's data can be written and reviewed on its own.

``check_*`` functions return a list of human-readable problems (empty when the data is
clean); the test suite asserts they are empty, so the rules in the data README are
enforced, not just described.

Example:
    >>> from empathy_core.study import dataset
    >>> pairs = dataset.load_pairs()
    >>> len([p for p in pairs if p.split == "test"]) > 0
    True
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ..core.scenarios import DATA_DIR, SCENARIO_IDS, Scenario, get_scenario, scenarios  # noqa: F401 (re-exported for the study)
from . import data_rules

VOICES = ("game_log", "casual", "formal", "narrative")
Split = Literal["train", "dev", "test"]
SPLITS: tuple[str, ...] = ("train", "dev", "test")

# Cue words that gave the study's probe a lexical shortcut. Each pattern matches the
# word and its inflections at word boundaries ("care" matches cares/cared/caring, not
# "careful"; "feel" matches feels/feeling/felt).
CUE_PATTERNS: dict[str, str] = {
    "empathy": r"empath\w*",
    "compassion": r"compassion\w*",
    "care": r"car(?:e|es|ed|ing|er|ers)",
    "feel": r"(?:feel\w*|felt)",
    "sorry": r"sorr(?:y|ier|iest)",
    "support": r"support\w*",
    "understand": r"(?:understand\w*|understood)",
    "strategy": r"strateg\w*",
    "optimal": r"optim\w*",
    "efficient": r"efficien\w*",
    "objective": r"objective\w*",
    "task": r"task\w*",
    "goal": r"goal\w*",
    "points": r"point(?:s|ed|ing)?",
    "score": r"(?:score\w*|scoring)",
    "metric": r"metric\w*",
}
CUE_RE = re.compile(r"\b(?:" + "|".join(CUE_PATTERNS.values()) + r")\b", re.IGNORECASE)
MARKDOWN_RE = re.compile(r"\*|`|^\s*#|^\s*[-+]\s|^\s*\d+[.)]\s|__|\[[^\]]*\]\(|\n", re.MULTILINE)
MAX_LENGTH_RATIO = 1.25  # longer / shorter, in characters
MINIMAL_PAIR_SIMILARITY = 0.6  # word-level difflib ratio a pair marked minimal must reach


@dataclass(frozen=True)
class Pair:
    id: str
    scenario: str
    moment: str
    voice: str
    minimal: bool
    empathic: str
    task: str
    split: str = ""  # train | dev | test, assigned once by assign_splits()
    empathic_level: int | None = None  # rubric level of each side: the main contrast is 2 vs 0
    task_level: int | None = None
    batch: str = "r1"  # writing round: "r1" (rounds 1-2, split over the scenario), "r3" or "r4" (each split on its own)


@dataclass(frozen=True)
class Confound:
    id: str
    scenario: str
    axis: str  # sentiment | politeness | length | enthusiasm
    stance: str  # empathic | task: what both sides share
    high: str  # the more positive / polite / long / enthusiastic side
    low: str


@dataclass(frozen=True)
class Graded:
    id: str
    scenario: str
    moment: str
    voice: str
    text: str
    label: int


@dataclass(frozen=True)
class Sanity:
    """A text kept out of fitting, with the verdict a sensible probe gives it."""

    id: str
    scenario: str
    category: str  # punctuation | number | single_word | off_topic | hostile | dismissive_polite | warm_*
    text: str
    expected: str  # cannot_judge | cannot_judge_or_task | task | empathic


KINDS = ("pairs", "confounds", "graded", "longform", "sanity", "hostile_dev")
SANITY_EXPECTED = ("cannot_judge", "cannot_judge_or_task", "task", "empathic")


def _read_kind(kind: str, scenario_ids: Sequence[str] = SCENARIO_IDS) -> list[dict]:
    rows = []
    for s in scenario_ids:
        path = DATA_DIR / kind / f"{s}.jsonl"
        if not path.exists():
            continue
        with path.open() as f:
            for line in f:
                if line.strip():
                    rows.append({"scenario": s, **json.loads(line)})
    return rows


@lru_cache(maxsize=1)
def load_pairs() -> tuple[Pair, ...]:
    return tuple(Pair(**r) for r in _read_kind("pairs"))


@lru_cache(maxsize=1)
def load_confounds() -> tuple[Confound, ...]:
    return tuple(Confound(**r) for r in _read_kind("confounds"))


@lru_cache(maxsize=1)
def load_graded() -> tuple[Graded, ...]:
    return tuple(Graded(**r) for r in _read_kind("graded"))


@lru_cache(maxsize=1)
def load_longform() -> tuple[Pair, ...]:
    """The long-form pairs (their own train/dev/test split)."""
    return tuple(Pair(**r) for r in _read_kind("longform"))


@lru_cache(maxsize=1)
def load_sanity() -> tuple[Sanity, ...]:
    """The sanity set: never used in fitting or choosing."""
    return tuple(Sanity(**r) for r in _read_kind("sanity"))


@lru_cache(maxsize=1)
def load_hostile_dev() -> tuple[Sanity, ...]:
    """The dev hostile set (RULE.md amendment 2): hostile and dismissive replies, all expected on the task side,
    used only by the default choice (never fitted on, never a test)."""
    return tuple(Sanity(**r) for r in _read_kind("hostile_dev"))


def data_files() -> list[Path]:
    """Every data file, in a fixed order."""
    files = [DATA_DIR / "scenarios.json"]
    for kind in KINDS:
        files += [DATA_DIR / kind / f"{s}.jsonl" for s in SCENARIO_IDS]
    return [f for f in files if f.exists()]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dataset_sha256() -> str:
    """One hash over every data file, recorded in probes and artifacts."""
    h = hashlib.sha256()
    for path in data_files():
        h.update(path.relative_to(DATA_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- rules


def cue_words(text: str) -> list[str]:
    return [m.group(0).lower() for m in CUE_RE.finditer(text)]


def is_lexically_controlled(pair: Pair) -> bool:
    return not cue_words(pair.empathic) and not cue_words(pair.task)


def has_markdown(text: str) -> bool:
    return bool(MARKDOWN_RE.search(text))


def length_ratio(a: str, b: str) -> float:
    lo, hi = sorted((len(a), len(b)))
    return hi / max(lo, 1)


def word_similarity(a: str, b: str) -> float:
    wa, wb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    return difflib.SequenceMatcher(None, wa, wb).ratio()


def _text_problems(where: str, text: str) -> list[str]:
    out = []
    if not text.strip():
        out.append(f"{where}: empty text")
    if has_markdown(text):
        out.append(f"{where}: markdown or line break in {text[:60]!r}")
    return out


def _pair_problems(p: Pair, require_split: bool) -> list[str]:
    problems = []
    if p.scenario not in SCENARIO_IDS:
        problems.append(f"{p.id}: unknown scenario {p.scenario}")
    if p.voice not in VOICES:
        problems.append(f"{p.id}: unknown voice {p.voice}")
    if require_split and p.split not in SPLITS:
        problems.append(f"{p.id}: unknown split {p.split!r}")
    problems += _text_problems(f"{p.id}.empathic", p.empathic)
    problems += _text_problems(f"{p.id}.task", p.task)
    if p.empathic.strip() == p.task.strip():
        problems.append(f"{p.id}: both sides are the same text")
    if length_ratio(p.empathic, p.task) > MAX_LENGTH_RATIO:
        problems.append(f"{p.id}: lengths differ by more than 25% ({len(p.empathic)} vs {len(p.task)})")
    if p.minimal and word_similarity(p.empathic, p.task) < MINIMAL_PAIR_SIMILARITY:
        problems.append(f"{p.id}: marked minimal but word similarity is {word_similarity(p.empathic, p.task):.2f}")
    return problems + data_rules.check_levels([p.id], [p.empathic_level], [p.task_level])


def check_pairs(pairs: Sequence[Pair] | None = None, require_split: bool = True) -> list[str]:
    pairs = load_pairs() if pairs is None else pairs
    problems = []
    seen = set()
    for p in pairs:
        if p.id in seen:
            problems.append(f"{p.id}: duplicate id")
        seen.add(p.id)
        problems += _pair_problems(p, require_split)
    n = len(pairs)
    if n < 300:
        problems.append(f"only {n} pairs, need >= 300")
    for s in SCENARIO_IDS:
        k = sum(p.scenario == s for p in pairs)
        if k < 60:
            problems.append(f"{s}: only {k} pairs, need >= 60")
    if n:
        if sum(p.minimal for p in pairs) < 0.2 * n:
            problems.append("fewer than 20% minimal pairs")
        if sum(is_lexically_controlled(p) for p in pairs) < 0.4 * n:
            problems.append("fewer than 40% lexically controlled pairs")
        for v in VOICES:
            if sum(p.voice == v for p in pairs) < 0.1 * n:
                problems.append(f"voice {v} is used by fewer than 10% of pairs")
    return problems


def check_longform(pairs: Sequence[Pair] | None = None) -> list[str]:
    """Each long-form pair obeys the pair rules, 80-250 words a side, >= 20 per scenario, its own split."""
    pairs = load_longform() if pairs is None else pairs
    problems = [x for p in pairs for x in _pair_problems(p, require_split=True)]
    ids = [p.id for p in pairs]
    if len(ids) != len(set(ids)):
        problems.append("long-form: duplicate ids")
    return problems + data_rules.check_longform(ids, [p.scenario for p in pairs], [p.split for p in pairs],
                                                [p.empathic for p in pairs], [p.task for p in pairs], SCENARIO_IDS)


def check_tone(pairs: Sequence[Pair] | None = None) -> list[str]:
    """The tone rule over every pair, short and long-form together (``data_rules.check_tone``)."""
    pairs = [*load_pairs(), *load_longform()] if pairs is None else pairs
    return data_rules.check_tone([p.empathic for p in pairs], [p.task for p in pairs])


def check_sanity(items: Sequence[Sanity] | None = None) -> list[str]:
    """>= 60 texts with a known category and expected verdict, ids unique; no text also used for fitting."""
    items = load_sanity() if items is None else items
    problems = [f"{s.id}: unknown expected verdict {s.expected!r}" for s in items if s.expected not in SANITY_EXPECTED]
    problems += [f"{s.id}: empty text" for s in items if not s.text.strip()]
    if len(items) < 60:
        problems.append(f"only {len(items)} sanity texts, need >= 60")
    fitted = {t for p in [*load_pairs(), *load_longform()] for t in (p.empathic, p.task)}
    problems += [f"{s.id}: also a fitted pair text" for s in items if s.text in fitted]
    if len({s.id for s in items}) != len(items):
        problems.append("sanity: duplicate ids")
    return problems


def check_hostile_dev(items: Sequence[Sanity] | None = None) -> list[str]:
    """The dev hostile set: >= 40 texts, all expected on the task side, ids unique, no text also a fitted pair
    text or a sanity text (the sanity set stays a test)."""
    if items is None:
        items = load_hostile_dev()
        if not items:  # no dev set in this data version: nothing to check (the rule then has no amendment 2)
            return []
    problems = [f"{s.id}: expected must be 'task', not {s.expected!r}" for s in items if s.expected != "task"]
    problems += [f"{s.id}: empty text" for s in items if not s.text.strip()]
    problems += [f"{s.id}: markdown or line break" for s in items if has_markdown(s.text)]
    if len(items) < 40:
        problems.append(f"only {len(items)} dev hostile texts, need >= 40")
    fitted = {t for p in [*load_pairs(), *load_longform()] for t in (p.empathic, p.task)}
    sanity = {s.text for s in load_sanity()}
    problems += [f"{s.id}: also a fitted pair text" for s in items if s.text in fitted]
    problems += [f"{s.id}: also a sanity text" for s in items if s.text in sanity]
    if len({s.id for s in items}) != len(items):
        problems.append("hostile_dev: duplicate ids")
    return problems


def check_all() -> list[str]:
    """Every rule of the data README, over the whole data set."""
    graded = load_graded()
    return (check_pairs() + check_confounds() + check_graded() + check_longform() + check_tone()
            + data_rules.check_graded_length([g.text for g in graded], [g.label for g in graded]) + check_sanity()
            + check_hostile_dev())


def check_confounds(items: Sequence[Confound] | None = None) -> list[str]:
    items = load_confounds() if items is None else items
    problems = []
    for c in items:
        if c.axis not in ("sentiment", "politeness", "length", "enthusiasm"):
            problems.append(f"{c.id}: unknown axis {c.axis}")
        if c.stance not in ("empathic", "task"):
            problems.append(f"{c.id}: unknown stance {c.stance}")
        if c.scenario not in SCENARIO_IDS:
            problems.append(f"{c.id}: unknown scenario {c.scenario}")
        problems += _text_problems(f"{c.id}.high", c.high) + _text_problems(f"{c.id}.low", c.low)
    if len(items) < 50:
        problems.append(f"only {len(items)} confound controls, need >= 50")
    return problems


def check_graded(items: Sequence[Graded] | None = None) -> list[str]:
    items = load_graded() if items is None else items
    problems = []
    for g in items:
        if g.label not in (0, 1, 2):
            problems.append(f"{g.id}: label {g.label} is not 0, 1 or 2")
        if g.scenario not in SCENARIO_IDS:
            problems.append(f"{g.id}: unknown scenario {g.scenario}")
        problems += _text_problems(g.id, g.text)
    if len(items) < 100:
        problems.append(f"only {len(items)} graded replies, need >= 100")
    for s in SCENARIO_IDS:
        rows = [g for g in items if g.scenario == s]
        if len(rows) < 20:
            problems.append(f"{s}: only {len(rows)} graded replies, need >= 20")
        missing = {0, 1, 2} - {g.label for g in rows}
        if missing:
            problems.append(f"{s}: graded set lacks rubric levels {sorted(missing)}")
    return problems


def split_pairs(pairs: Sequence[Pair], seed: int = 0) -> list[Pair]:
    """Assign a 60/20/20 split stratified by scenario and writing round (used once, when the data is built).

    Deterministic: each (scenario, batch) group's pairs are ordered by a hash of their id and seed, then cut at
    60% and 80%. A later round is split on its own, so adding it leaves every earlier pair's split as it was.
    """
    out = []
    for s, batch in sorted({(p.scenario, p.batch) for p in pairs}, key=lambda k: (SCENARIO_IDS.index(k[0]), k[1])):
        rows = sorted((p for p in pairs if p.scenario == s and p.batch == batch),
                      key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest())
        n = len(rows)
        a, b = round(0.6 * n), round(0.8 * n)
        for i, p in enumerate(rows):
            split = "train" if i < a else ("dev" if i < b else "test")
            out.append(Pair(**{**asdict(p), "split": split}))
    return sorted(out, key=lambda p: p.id)


@dataclass
class TextSet:
    """Texts with binary labels (1 = empathic) and the scenario of each, for probes and metrics."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    pair_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


def pair_texts(pairs: Sequence[Pair]) -> TextSet:
    """Flatten pairs into texts: empathic (label 1) then task (label 0) for each pair."""
    ts = TextSet()
    for p in pairs:
        for text, label in ((p.empathic, 1), (p.task, 0)):
            ts.texts.append(text)
            ts.labels.append(label)
            ts.scenarios.append(p.scenario)
            ts.pair_ids.append(p.id)
    return ts


def confound_texts(items: Sequence[Confound]) -> TextSet:
    """High side labelled 1, low side 0: a probe reading tone, not empathy, scores AUROC far from 0.5."""
    ts = TextSet()
    for c in items:
        for text, label in ((c.high, 1), (c.low, 0)):
            ts.texts.append(text)
            ts.labels.append(label)
            ts.scenarios.append(c.scenario)
            ts.pair_ids.append(c.id)
    return ts


def check_scenario_part(scenario_id: str) -> list[str]:
    """Stricter per-scenario targets used while writing one scenario's files.

    Each scenario aims above the global floors so the merged set clears them with room.
    """
    pairs = [Pair(**r) for r in _read_kind("pairs", [scenario_id])]
    conf = [Confound(**r) for r in _read_kind("confounds", [scenario_id])]
    graded = [Graded(**r) for r in _read_kind("graded", [scenario_id])]
    problems = [x for x in check_pairs(pairs, require_split=False)
                if not x.startswith(("only", "fewer", "voice")) and ": only" not in x]
    problems += [x for x in check_confounds(conf) if not x.startswith("only")]
    others = tuple(f"{o}:" for o in SCENARIO_IDS if o != scenario_id)
    problems += [x for x in check_graded(graded) if "only" not in x and not x.startswith(others)]
    n = len(pairs)
    if n < 62:
        problems.append(f"{n} pairs, aim for >= 62")
    if n and sum(p.minimal for p in pairs) < 0.25 * n:
        problems.append(f"{sum(p.minimal for p in pairs)} minimal pairs, aim for >= 25%")
    lex = sum(is_lexically_controlled(p) for p in pairs)
    if n and lex < 0.5 * n:
        problems.append(f"{lex} lexically controlled pairs, aim for >= 50%")
    for v in VOICES:
        k = sum(p.voice == v for p in pairs)
        if n and k < 0.15 * n:
            problems.append(f"voice {v}: {k} pairs, aim for >= 15%")
    if len(conf) < 11:
        problems.append(f"{len(conf)} confound controls, aim for >= 11")
    for axis in ("sentiment", "politeness", "length", "enthusiasm"):
        if not any(c.axis == axis for c in conf):
            problems.append(f"no confound control on axis {axis}")
    for stance in ("empathic", "task"):
        if not any(c.stance == stance for c in conf):
            problems.append(f"no confound control with stance {stance}")
    if len(graded) < 22:
        problems.append(f"{len(graded)} graded replies, aim for >= 22")
    for level in (0, 1, 2):
        k = sum(g.label == level for g in graded)
        if k < 6:
            problems.append(f"graded level {level}: {k} replies, aim for >= 6")
    ids = [p.id for p in pairs] + [c.id for c in conf] + [g.id for g in graded]
    if len(ids) != len(set(ids)):
        problems.append("duplicate ids")
    return problems


def assign_splits(seed: int = 0) -> None:
    """Write a split into every pair file (run once, when the data is first built)."""
    for s in SCENARIO_IDS:
        path = DATA_DIR / "pairs" / f"{s}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        pairs = [Pair(scenario=s, **{k: v for k, v in r.items() if k != "split"}) for r in rows]
        by_id = {p.id: p.split for p in split_pairs(pairs, seed)}
        with path.open("w") as f:
            for r in rows:
                r["split"] = by_id[r["id"]]
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m empathy_core.dataset check [SCENARIO] | table | assign-splits`` (see data/README.md)."""
    import sys

    args = sys.argv[1:] if argv is None else argv

    if args[:1] == ["assign-splits"]:
        assign_splits()
    elif args[:1] == ["table"]:  # the counts and hashes table of data/README.md
        print("| file | records | sha256 |\n|---|---|---|")
        for path in data_files():
            n = sum(1 for line in path.read_text().splitlines() if line.strip()) if path.suffix == ".jsonl" else 5
            print(f"| {path.relative_to(DATA_DIR).as_posix()} | {n} | {file_sha256(path)} |")
    elif args[:1] == ["check"] and len(args) == 2:
        found = check_scenario_part(args[1])
        lexn = [p for p in (Pair(**r) for r in _read_kind("pairs", [args[1]]))]
        print(f"{len(lexn)} pairs, {sum(p.minimal for p in lexn)} minimal, "
              f"{sum(is_lexically_controlled(p) for p in lexn)} lexically controlled")
        print("\n".join(found) if found else "OK")
        return 1 if found else 0
    else:
        found = check_all()
        print("\n".join(found) if found else "OK")
        return 1 if found else 0
    return 0
