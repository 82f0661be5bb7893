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
    assert d.meta["gate"]["max_distance"] == pytest.approx(det["gate"]["max_distance"])
    # steering keeps the study's mean difference, under its own name
    assert probe.meta["steering_direction"].startswith("directions (the study's mean difference)")
    assert probe.meta["method"] == "mean_diff" and probe.meta["dataset_sha256"] == dataset.dataset_sha256()
    assert probe.directions.shape == d.directions.shape


@pytest.mark.parametrize("key", BUNDLED)
def test_the_sweep_keeps_the_direction_it_used(key):
    sweep = store.load_sweep_probe(key)
    st = store.load_optional(key, "steering.json")
    assert sweep.meta["sweep_layers"] == st["settings"]["layers"]
    assert sweep.meta["dataset_sha256"] != dataset.dataset_sha256()
    man = json.loads((PRECOMPUTED / "manifest.json").read_text())
    per = man["dataset_sha256_per_file"]
    assert per[f"{key}/steering.json"] == per[f"{key}/{store.SWEEP_DIRECTION}"] == sweep.meta["dataset_sha256"]
    assert per[f"{key}/detection.json"] == per[f"{key}/probes.safetensors"] == dataset.dataset_sha256()
    note = report.sweep_note()
    assert "previous dataset version" in note and sweep.meta["dataset_sha256"][:12] in note


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
    assert m["off_topic_cannot_judge_or_task"] >= 0.85
    assert m["hostile_dismissive_task_side_or_cannot_judge"] >= FLOORS[key]["hostile_or_cj"]
    assert m["warm_empathic_side"] >= FLOORS[key]["warm"]
    assert max(s["gate_false_cannot_judge"].values()) <= FLOORS[key]["gate_false_max"]
    # and the sanity texts were never fitted on
    fitted = {t for p in [*dataset.load_pairs(), *dataset.load_longform()] for t in (p.empathic, p.task)}
    assert not fitted & {i["text"] for i in s["items"]}


FLOORS: dict[str, dict[str, float]] = {}  # filled from the measured numbers below


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
