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


# ------------------------------------------------------------------ issue 10 rules: each one can fail
from dataclasses import replace  # noqa: E402

from empathy_core.study import data_rules  # noqa: E402


def test_the_whole_data_set_passes_every_rule():
    assert dataset.check_all() == []
    assert dataset.main(["check"]) == 0


def test_tone_rule_catches_markers_on_one_side():
    emp = [f"I stay with them, I hope it helps {i}." for i in range(30)]
    task = [f"I run to the door now {i}." for i in range(30)]
    found = data_rules.check_tone(emp, task)
    assert any(f.startswith("warmth:") for f in found)
    assert any("marker 'hope' alone predicts the label" in f for f in found)
    # balanced: the same marker on both sides passes
    assert data_rules.check_tone(emp, [t.replace("now", "now, I hope") for t in task]) == []


def test_tone_rule_catches_one_predictive_word_even_when_categories_balance():
    emp = ["Please wait, I stay."] * 10 + ["I stay."] * 10
    task = ["Thanks, I go."] * 10 + ["I go."] * 10  # politeness 10 vs 10, but 'please' only on one side
    found = data_rules.check_tone(emp, task)
    assert not any(f.startswith("politeness:") for f in found)
    assert any("'please'" in f for f in found) and any("'thanks'" in f for f in found)


def test_graded_length_rule():
    texts = ["short"] * 10 + ["a much longer reply here"] * 10
    assert data_rules.check_graded_length(texts, [0] * 10 + [2] * 10)
    assert data_rules.check_graded_length(texts, [0, 2] * 10) == []


def test_longform_rules():
    lf = dataset.load_longform()
    assert dataset.check_longform() == []
    short = replace(lf[0], empathic="Too short to be long-form.")
    assert any("words (long-form needs 80-250)" in f for f in dataset.check_longform([short, *lf[1:]]))
    one_scenario_less = [p for p in lf if p.scenario != "maze"] + [p for p in lf if p.scenario == "maze"][:5]
    assert any("long-form maze: only 5 pairs" in f for f in dataset.check_longform(one_scenario_less))
    no_test = [replace(p, split="train") if p.scenario == "duel" and p.split == "test" else p for p in lf]
    assert any("long-form duel: split lacks ['test']" in f for f in dataset.check_longform(no_test))


def test_level_tags_main_contrast():
    pairs = list(dataset.load_pairs())
    bad = [replace(pairs[0], task_level=1), replace(pairs[1], empathic_level=None), *pairs[2:]]
    found = dataset.check_pairs(bad)
    assert any(f.startswith(f"{pairs[0].id}: needs empathic_level 2") for f in found)
    assert any(f.startswith(f"{pairs[1].id}: needs empathic_level 2") for f in found)


def test_sanity_set_rules():
    items = list(dataset.load_sanity())
    assert dataset.check_sanity() == []
    assert len(items) >= 60 and {s.expected for s in items} == set(dataset.SANITY_EXPECTED)
    leaked = replace(items[0], text=dataset.load_pairs()[0].empathic)
    assert any("also a fitted pair text" in f for f in dataset.check_sanity([leaked, *items[1:]]))
    assert any("only 10 sanity texts" in f for f in dataset.check_sanity(items[:10]))


def test_dev_hostile_set_rules():
    items = list(dataset.load_hostile_dev())
    assert dataset.check_hostile_dev() == []
    if items:  # the committed dev set (RULE.md amendment 2)
        assert len(items) >= 40 and {s.expected for s in items} == {"task"}
        assert {s.scenario for s in items} == set(dataset.SCENARIO_IDS)
    made = [dataset.Sanity(f"mz-h{i:03d}", "maze", "hostile", f"Figure out door number {i} yourself, I'm leaving.", "task")
            for i in range(45)]
    assert dataset.check_hostile_dev(made) == []
    leaked = replace(made[0], text=dataset.load_sanity()[5].text)  # the sanity set stays a test
    fitted = replace(made[1], text=dataset.load_pairs()[0].task)
    warm = replace(made[2], expected="empathic")
    found = dataset.check_hostile_dev([leaked, fitted, warm, *made[3:]])
    assert any("also a sanity text" in f for f in found) and any("also a fitted pair text" in f for f in found)
    assert any("expected must be 'task'" in f for f in found)
    assert any("only 10 dev hostile texts" in f for f in dataset.check_hostile_dev(made[:10]))


def test_check_command_fails_on_bad_data(monkeypatch):
    monkeypatch.setattr(dataset, "check_tone", lambda pairs=None: ["warmth: 10 vs 1"])
    assert dataset.main(["check"]) == 1


def test_a_later_writing_round_is_split_on_its_own():
    """Adding a round's pairs leaves every earlier pair's split as it was; the new round gets its own 60/20/20."""
    from dataclasses import replace

    first = [p for p in dataset.load_pairs() if p.batch == "r1"]
    before = {p.id: p.split for p in dataset.split_pairs(first)}
    extra = [replace(first[i], id=f"zz-p{i:03d}", batch="r9", split="") for i in range(20)]
    after = {p.id: p.split for p in dataset.split_pairs(first + extra)}
    assert all(after[i] == s for i, s in before.items())
    new = collections.Counter(after[p.id] for p in extra)
    assert sum(new.values()) == 20 and all(new[s] > 0 for s in ("train", "dev", "test"))
