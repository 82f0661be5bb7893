"""The hand-written datasets obey the rules in empathy_core/data/README.md."""

import collections
import hashlib
import re

import pytest

from empathy_core.study import dataset


def test_pairs_obey_every_rule():
    assert dataset.check_pairs() == []


def test_confounds_and_graded_obey_every_rule():
    assert dataset.check_confounds() == []
    assert dataset.check_graded() == []


def test_counts_meet_the_floors():
    pairs = dataset.load_pairs()
    assert len(pairs) >= 300
    per = collections.Counter(p.scenario for p in pairs)
    assert set(per) == set(dataset.SCENARIO_IDS) and min(per.values()) >= 60
    assert sum(p.minimal for p in pairs) >= 0.2 * len(pairs)
    assert sum(dataset.is_lexically_controlled(p) for p in pairs) >= 0.4 * len(pairs)
    assert len(dataset.load_confounds()) >= 50
    graded = dataset.load_graded()
    assert len(graded) >= 100
    for s in dataset.SCENARIO_IDS:
        rows = [g for g in graded if g.scenario == s]
        assert len(rows) >= 20 and {g.label for g in rows} == {0, 1, 2}


def test_split_is_60_20_20_stratified_and_recorded():
    pairs = dataset.load_pairs()
    for s in dataset.SCENARIO_IDS:
        rows = [p for p in pairs if p.scenario == s]
        c = collections.Counter(p.split for p in rows)
        n = len(rows)
        assert abs(c["train"] - 0.6 * n) <= 1 and abs(c["dev"] - 0.2 * n) <= 1 and abs(c["test"] - 0.2 * n) <= 1
    # the recorded split is the one the deterministic rule gives
    recomputed = {p.id: p.split for p in dataset.split_pairs(pairs)}
    assert all(recomputed[p.id] == p.split for p in pairs)


def test_voices_do_not_give_away_the_label():
    pairs = dataset.load_pairs()
    voices = collections.Counter(p.voice for p in pairs)
    assert set(voices) == set(dataset.VOICES)
    assert min(voices.values()) >= 0.15 * len(pairs)


def test_no_side_is_systematically_longer_or_louder():
    pairs = dataset.load_pairs()
    emp = sum(len(p.empathic) for p in pairs) / len(pairs)
    task = sum(len(p.task) for p in pairs) / len(pairs)
    assert abs(emp - task) / task < 0.05
    assert sum(p.empathic.count("!") for p in pairs) <= sum(p.task.count("!") for p in pairs) + 10


@pytest.mark.parametrize("text,hits", [
    ("I care about you", ["care"]), ("She was caring and felt it", ["caring", "felt"]),
    ("Be careful on the bridge", []), ("Our scores and points", ["scores", "points"]),
    ("He understood the strategic goal", ["understood", "strategic", "goal"]),
    ("I will optimise the route efficiently", ["optimise", "efficiently"]),
    ("Sorry, no", ["sorry"]), ("a tasking objective", ["tasking", "objective"]),
])
def test_cue_word_matcher(text, hits):
    assert dataset.cue_words(text) == hits


def test_markdown_is_detected():
    assert dataset.has_markdown("I **run** to the door")
    assert dataset.has_markdown("- a bullet")
    assert dataset.has_markdown("two\nlines")
    assert not dataset.has_markdown("Plain prose, with a comma; and a dash - inside.")


def test_data_readme_lists_current_hashes():
    readme = (dataset.DATA_DIR / "README.md").read_text()
    for path in dataset.data_files():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rel = path.relative_to(dataset.DATA_DIR).as_posix()
        assert re.search(rf"{re.escape(rel)}.*{digest}", readme), f"README lacks the current sha256 of {rel}"


def test_unknown_scenario_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown scenario 'nope'"):
        dataset.get_scenario("nope")
