"""Data rules added for issue 10: tone balance, graded-set length, long-form size, rubric levels.

Each ``check_*`` returns a list of human-readable problems (empty when the data is clean). They
work on plain strings and numbers, so ``dataset`` (which loads the files) calls them and a test
can feed them a bad mini dataset.

* Tone: per marker category (apology, politeness, hedging, warmth) the total count on the
  empathic side and on the task side of all pairs (short + long-form) are within 10% of each
  other (max / min <= 1.10; both 0 is fine; when the larger count is below 10 a gap of 1 is
  allowed), and no single marker word's presence predicts the label with AUROC outside
  [0.4, 0.6].
* Graded set: |Spearman rho(length in characters, level)| <= 0.15 over the whole set.
* Long-form pairs: each side 80-250 words; >= 20 pairs per scenario; their own train/dev/test split.
* Rubric levels: every pair side is tagged, empathic_level 2 and task_level 0 (the main contrast);
  a level-1 reply (empathy only after securing an advantage, or a promise to help later) belongs in
  the graded set.

    >>> check_tone(["I hope you are fine."] * 3, ["Door first."] * 3)[0][:7]
    'warmth:'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from scipy import stats

MARKERS: dict[str, tuple[str, ...]] = {
    "apology": ("sorry", "apologize", "apologise", "apologies", "apology", "my bad", "forgive me", "regret",
                "unfortunately", "excuse me", "pardon"),
    "politeness": ("please", "thank you", "thanks", "thank", "kindly", "appreciate", "if you don't mind",
                   "would you mind", "with respect", "respectfully", "you're welcome", "cheers"),
    "hedging": ("maybe", "perhaps", "might", "i think", "i guess", "probably", "sort of", "kind of", "possibly",
                "i suppose", "a bit", "a little", "somewhat", "i believe", "it seems"),
    "warmth": ("hope", "glad", "happy", "dear", "friend", "love", "gentle", "gently", "warm", "wish", "take care",
               "hug", "good luck", "sweet", "be kind", "smile", "okay?", "you matter", "proud"),
}
TONE_RATIO = 1.10  # larger / smaller count per category
TONE_SMALL = 10  # below this larger count, a gap of 1 is allowed
WORD_AUROC_BAND = (0.4, 0.6)
GRADED_MAX_RHO = 0.15
LONGFORM_WORDS = (80, 250)
LONGFORM_MIN_PER_SCENARIO = 20
EMPATHIC_LEVEL, TASK_LEVEL = 2, 0


def _word_re(w: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w'])" + re.escape(w) + r"(?![\w'])", re.IGNORECASE)


MARKER_RES: dict[str, list[tuple[str, re.Pattern[str]]]] = {c: [(w, _word_re(w)) for w in ws] for c, ws in MARKERS.items()}


def marker_count(text: str, category: str) -> int:
    """How many times the category's marker words occur in ``text``."""
    return sum(len(r.findall(text)) for _, r in MARKER_RES[category])


def check_tone(empathic: Sequence[str], task: Sequence[str]) -> list[str]:
    """The tone rule over the two sides of every pair (short and long-form together)."""
    problems = []
    for cat in MARKERS:
        ce, ct = sum(marker_count(t, cat) for t in empathic), sum(marker_count(t, cat) for t in task)
        hi, lo = max(ce, ct), min(ce, ct)
        if not (hi == 0 or hi <= TONE_RATIO * lo or (hi < TONE_SMALL and hi - lo <= 1)):
            problems.append(f"{cat}: {ce} markers on the empathic side vs {ct} on the task side (must be within 10%)")
    n = len(empathic)
    lo_b, hi_b = WORD_AUROC_BAND
    for words in MARKER_RES.values():
        for w, r in words:
            ke, kt = sum(bool(r.search(t)) for t in empathic), sum(bool(r.search(t)) for t in task)
            auc = 0.5 + (ke - kt) / (2 * n) if n else 0.5  # presence as a 0/1 score, one text per side per pair
            if not lo_b <= auc <= hi_b:
                problems.append(f"marker {w!r} alone predicts the label: AUROC {auc:.3f} "
                                f"(in {ke} empathic vs {kt} task texts)")
    return problems


def check_graded_length(texts: Sequence[str], levels: Sequence[int]) -> list[str]:
    """|rho(length, level)| <= 0.15 over the graded set."""
    if len(texts) < 3 or len(set(levels)) < 2:
        return []
    rho = float(stats.spearmanr([len(t) for t in texts], list(levels)).statistic)
    if abs(rho) > GRADED_MAX_RHO:
        return [f"graded set: length predicts the level, |rho(length, level)| = {abs(rho):.3f} > {GRADED_MAX_RHO}"]
    return []


def check_longform(ids: Sequence[str], scenarios: Sequence[str], splits: Sequence[str], empathic: Sequence[str],
                   task: Sequence[str], scenario_ids: Sequence[str]) -> list[str]:
    """Word counts, pairs per scenario and the long-form split."""
    lo, hi = LONGFORM_WORDS
    problems = []
    for i, e, t in zip(ids, empathic, task):
        for side, text in (("empathic", e), ("task", t)):
            nw = len(text.split())
            if not lo <= nw <= hi:
                problems.append(f"{i}.{side}: {nw} words (long-form needs {lo}-{hi})")
    for s in scenario_ids:
        k = sum(sc == s for sc in scenarios)
        if k < LONGFORM_MIN_PER_SCENARIO:
            problems.append(f"long-form {s}: only {k} pairs, need >= {LONGFORM_MIN_PER_SCENARIO}")
        got = {sp for sc, sp in zip(scenarios, splits) if sc == s}
        if k and not {"train", "dev", "test"} <= got:
            problems.append(f"long-form {s}: split lacks {sorted({'train', 'dev', 'test'} - got)}")
    for i, sp in zip(ids, splits):
        if sp not in ("train", "dev", "test"):
            problems.append(f"{i}: unknown split {sp!r}")
    return problems


def check_levels(ids: Sequence[str], empathic_levels: Sequence[int | None], task_levels: Sequence[int | None]) -> list[str]:
    """Every pair is the main contrast: empathic side at rubric level 2, task side at level 0."""
    return [f"{i}: needs empathic_level {EMPATHIC_LEVEL} and task_level {TASK_LEVEL} (got {e}, {t}); "
            "a level-1 reply belongs in the graded set"
            for i, e, t in zip(ids, empathic_levels, task_levels) if e != EMPATHIC_LEVEL or t != TASK_LEVEL]
