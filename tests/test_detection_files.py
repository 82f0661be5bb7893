"""The committed detection results: the dev-only choice replays from their own dev numbers, the probe file
holds both directions with the rule's version, the sweep keeps the direction it used, and the About text and the
README carry the numbers of detection.json (nothing hand-typed)."""

import hashlib
import json
from pathlib import Path

import pytest

from empathy_core import store
from empathy_core.core.models import BUNDLED
from empathy_core.store import PRECOMPUTED
from empathy_core.study import dataset, detection, report

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("key", BUNDLED)
def test_the_default_is_what_the_rule_picks_from_the_committed_dev_numbers(key):
    det = store.load_detection(key)
    assert det["dataset_sha256"] == dataset.dataset_sha256()
    again = detection.choose_default(det["candidates_dev"])
    assert again == det["default"]
    # the rule stored is the pre-registered text, verbatim, and the study's layer is the best_layer rule's
    assert det["rule"]["text"] == detection.rule_text() and det["rule"]["sha256"] == detection.rule_sha256()
    assert det["study"]["layer"] == det["best_layer"] and det["reports"]["study_mean_diff"]["layer"] == det["best_layer"]
    # test-side numbers exist only for what was chosen, not for a sweep over candidates picked afterwards
    assert set(det["reports"]) == {"default", "study_mean_diff"}
    assert len(det["default_curve"]) == det["n_layers"] == len(det["layers"])


@pytest.mark.parametrize("key", BUNDLED)
def test_probe_file_keeps_both_directions_and_the_rule(key):
    probe = store.load_probe(key)
    det = store.load_detection(key)
    d = probe.detection
    assert d is not None and (d.method, d.pooling, d.layer) == (det["default"]["method"], det["default"]["pooling"],
                                                                det["default"]["layer"])
    assert d.meta["rule_sha256"] == detection.rule_sha256() and d.meta["rule_version"] == detection.RULE_VERSION
    assert d.meta["rule_text"] == detection.rule_text()
    assert d.meta["gate"]["max_distance"] == pytest.approx(det["gate"]["max_distance"])
    # steering keeps the study's mean difference, under its own name
    assert probe.meta["steering_direction"].startswith("directions (the study's mean difference)")
    assert probe.meta["method"] == "mean_diff" and probe.meta["dataset_sha256"] == dataset.dataset_sha256()
    assert probe.directions.shape == d.directions.shape


@pytest.mark.parametrize("key", BUNDLED)
def test_the_steering_evaluation_ran_on_the_current_probe(key):
    st = store.load_optional(key, "steering.json")
    judges = store.load_optional(key, "judges.json")
    now = dataset.dataset_sha256()
    assert st["dataset_sha256"] == judges["dataset_sha256"] == store.load_probe(key).meta["dataset_sha256"] == now
    man = json.loads((PRECOMPUTED / "manifest.json").read_text())
    per = man["dataset_sha256_per_file"]
    assert per[f"{key}/steering.json"] == per[f"{key}/judges.json"] == per[f"{key}/detection.json"] == now
    assert not (store.model_dir(key) / store.SWEEP_DIRECTION).exists() and report.sweep_note() == ""


def test_manifest_schema_and_sweep_note_in_the_app_texts():
    man = json.loads((PRECOMPUTED / "manifest.json").read_text())
    assert man["schema"] == "empathy-precomputed/2"
    about = report.render_about((ROOT / "assets" / "about.md").read_text())
    assert "{{" not in about and report.sweep_note() in about


@pytest.mark.parametrize("key", BUNDLED)
def test_about_and_readme_show_the_committed_goal_tables(key):
    det = store.load_detection(key)
    table = report.goal_table(det)
    about = report.render_about((ROOT / "assets" / "about.md").read_text())
    readme = (ROOT / "README.md").read_text()
    assert table in about and table in readme
    assert f"{det['reports']['default']['test_auroc']:.3f}" in table
    assert f"{det['baselines']['tfidf_logreg']['test_auroc']:.3f}" in table


@pytest.mark.parametrize("key", BUNDLED)
def test_sanity_set_floors(key):
    """Floors a little below what was measured (README), so a regression fails; none is a goal met."""
    s = store.load_detection(key)["reports"]["default"]["sanity"]
    m = s["summary"]
    assert m["cannot_judge_items_caught"] == 1.0  # every punctuation / number / single-word text
    assert m["off_topic_cannot_judge_or_task"] >= FLOORS[key]["off_topic"]
    assert m["hostile_dismissive_task_side_or_cannot_judge"] >= FLOORS[key]["hostile_or_cj"]
    assert m["warm_empathic_side"] >= FLOORS[key]["warm"]
    assert max(s["gate_false_cannot_judge"].values()) <= FLOORS[key]["gate_false_max"]
    assert s["per_category"]["punctuation"]["cannot_judge"] == s["per_category"]["number"]["cannot_judge"] == 1.0
    # and the sanity texts were never fitted on
    fitted = {t for p in [*dataset.load_pairs(), *dataset.load_longform()] for t in (p.empathic, p.task)}
    assert not fitted & {i["text"] for i in s["items"]}


# measured (detection.json) minus about 0.1 (two of 20 texts) for the fractions, plus 0.05 for the gate's false rate
FLOORS: dict[str, dict[str, float]] = {
    "smollm2-135m": {"hostile_or_cj": 0.85, "warm": 0.80, "off_topic": 0.90, "gate_false_max": 0.13},
    "qwen2.5-coder-0.5b": {"hostile_or_cj": 0.70, "warm": 0.85, "off_topic": 0.80, "gate_false_max": 0.13},
    "gemma3-270m": {"hostile_or_cj": 0.75, "warm": 0.50, "off_topic": 0.90, "gate_false_max": 0.24},
}

# The dev-chosen default's test-side numbers, about 0.05 below what was measured: regression floors, not the issue's
# goals (test >= 0.90 and >= TF-IDF + 0.03, minimal >= 0.85, LOSO >= 0.80, graded >= 0.70, long-form >= 0.85), which
# neither model reaches but for long-form transfer (README, Detection results). Gemma's default after round 4 is a
# near-chance probe (test 0.560; README) and has no floors here.
GOAL_FLOORS: dict[str, dict[str, float]] = {
    "smollm2-135m": {"test_auroc": 0.80, "minimal_test_auroc": 0.72, "loso_test_auroc_mean": 0.68, "graded_spearman": 0.55,
                     "longform_test_auroc_short_fit": 0.82},
    "qwen2.5-coder-0.5b": {"test_auroc": 0.80, "minimal_test_auroc": 0.77, "loso_test_auroc_mean": 0.68,
                           "graded_spearman": 0.63, "longform_test_auroc_short_fit": 0.80},
}


@pytest.mark.parametrize("key", ["qwen2.5-coder-0.5b"])
def test_default_probe_stays_blind_to_tone_on_the_held_back_confounds(key):
    """The tone goal, met by Qwen's default: on every axis the held-back confound AUROC is in [0.40, 0.60] with its
    bootstrap CI in [0.35, 0.65]. SmolLM2's round-4 default misses it on length (CI from 0.348) and Gemma's on
    enthusiasm (README)."""
    conf = store.load_detection(key)["reports"]["default"]["confound_heldout"]
    for axis in ("sentiment", "politeness", "length", "enthusiasm"):
        a = conf[axis]
        assert a["n_items"] >= 30 and 0.40 <= a["auroc"] <= 0.60 and 0.35 <= a["ci"][0] and a["ci"][1] <= 0.65, (axis, a)


@pytest.mark.parametrize("key", sorted(GOAL_FLOORS))
def test_default_probe_floors_and_the_goals_it_misses(key):
    det = store.load_detection(key)
    rep, tf = det["reports"]["default"], det["baselines"]["tfidf_logreg"]
    for k, floor in GOAL_FLOORS[key].items():
        assert rep[k] >= floor, (k, rep[k], floor)
    # what the README says plainly: the text-only TF-IDF baseline beats the dev-chosen probe on the short test split
    assert rep["test_auroc"] < tf["test_auroc"], "the README's plain statement no longer holds: update it"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_about_and_readme_show_the_committed_steering_table():
    """The steering table is rendered from every model's steering.json; a changed file changes it."""
    table = report.steering_results()
    about = report.render_about((ROOT / "assets" / "about.md").read_text())
    readme = (ROOT / "README.md").read_text()
    assert table in about and table in readme
    assert report.validation_table(store.load_shared("judge_validation.json")) in readme
    for key in BUNDLED:
        ev = store.load_optional(key, "steering.json")["evaluation"]
        probe = next((r for r in ev["rates"] if r["condition"] == "probe" and r["sign"] == "pos"), None)
        want = "— (n = 0)" if probe is None else f"({probe['successes']}/{probe['n']})"  # no eligible baseline: no rate
        assert want in _cell(table, "probe direction, α > 0", key) and f"layer {ev['chosen']['layer']}" in _cell(
            table, "chosen on the choose-seeds", key)


def _cell(table: str, row: str, key: str) -> str:
    """One model's cell of a markdown table whose header names the models."""
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    (line,) = [ln for ln in lines if ln.strip("|").split("|")[0].strip().startswith(row)]
    return [c.strip() for c in line.strip("|").split("|")][header.index(key)]
