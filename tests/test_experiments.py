"""Experiment pieces that need no model: success metric, coherence, lexical ablation, manifest."""

import hashlib
import json

import pytest

from empathy_core.app.plots import depth_figure
from empathy_core.store import PRECOMPUTED
from empathy_core.study import dataset
from empathy_core.study.judges import (
    COHERENCE_RULE,
    coherence,
    distinct2,
    lexicon_score,
    repetition_rate,
)
from empathy_core.study.precompute import paraphrase_cues, write_reference_study
from empathy_core.study.sweep import Condition, SweepRecord, SweepSettings, success_table


def _rec(cond, alpha, ens, seed=0, layer=5, scen="maze", coherent=True):
    return SweepRecord(condition=Condition(cond), alpha=alpha, seed=seed, layer=layer, scenario=scen, raw_alpha=alpha,
                       text="", n_tokens=0, self_probe=0.0,
                       judges={"ensemble": ens, "embedding": 0.0, "cross_model": 0.0, "lexicon": 0.0},
                       coherence={"coherent": coherent, "perplexity": 10.0, "distinct2": 1.0, "repetition": 0.0,
                                  "empty": False})


def test_success_needs_the_right_direction_delta_and_coherence():
    s = SweepSettings(delta=0.25)
    recs = [_rec("probe", 0.0, 0.0),
            _rec("probe", 0.3, 0.5),                    # up by 0.5 with alpha > 0: success
            _rec("probe", 0.1, 0.2),                    # up, but less than delta: failure
            _rec("probe", -0.3, -0.3),                  # down with alpha < 0: success
            _rec("probe", -0.2, 0.4),                   # wrong way: failure
            _rec("random", 0.3, 0.9, coherent=False),   # moved, incoherent: failure
            _rec("prompt_empathic", 0.0, 0.3, layer=None),
            _rec("prompt_task", 0.0, 0.1, layer=None)]
    t = success_table(recs, s)
    rates = {(r["condition"], r["layer"], r["sign"]): r for r in t["rates"]}
    assert rates[("probe", "all", "pos")]["successes"] == 1 and rates[("probe", "all", "pos")]["n"] == 2
    assert rates[("probe", "all", "neg")]["successes"] == 1 and rates[("probe", "all", "neg")]["n"] == 2
    assert rates[("random", "all", "pos")]["successes"] == 0
    assert rates[("prompt_empathic", "all", "pos")]["successes"] == 1
    assert rates[("prompt_task", "all", "neg")]["successes"] == 0
    lo, hi = rates[("probe", "all", "pos")]["ci"]
    assert lo < 0.5 < hi
    assert [r.success for r in recs[1:6]] == [True, False, True, False, False]


def test_dose_response_has_a_t_interval():
    s = SweepSettings()
    recs = [_rec("probe", a, a * 2 + seed * 0.1, seed=seed) for a in (0.0, 0.3) for seed in (0, 1, 2)]
    d = [x for x in success_table(recs, s)["dose_response"] if x["condition"] == "probe"]
    top = next(x for x in d if x["alpha"] == 0.3)
    assert top["n"] == 3 and top["ensemble_ci"][0] < top["ensemble_mean"] < top["ensemble_ci"][1]


def test_coherence_measures():
    assert distinct2("a b a b a b") == pytest.approx(2 / 5)
    assert repetition_rate("one two three four one two three four") == pytest.approx(1 / 5)
    assert repetition_rate("all different words in this short line") == 0.0
    c = coherence("I stay in the room and keep talking with them.", 12.0)
    assert c["coherent"] and not c["empty"]
    assert not coherence("ok", 5.0)["coherent"]
    assert not coherence("I stay in the room and keep talking with them.", COHERENCE_RULE["max_perplexity"] + 1)["coherent"]
    assert not coherence("go go go go go go go go go go go go", 3.0)["coherent"]


def test_lexicon_score_counts_word_boundaries():
    assert lexicon_score("I care and I will support you") > 0
    assert lexicon_score("Points and score, then the door") < 0
    assert lexicon_score("careful scorekeeping") == 0


def test_paraphrase_removes_every_cue_word_from_the_data():
    for p in dataset.load_pairs():
        for t in (p.empathic, p.task):
            assert dataset.cue_words(paraphrase_cues(t)) == [], t
    assert paraphrase_cues("I'm sorry, the goal is points") == "I'm well, the aim is tally"


def test_pick_layers():
    assert SweepSettings.pick_layers(10, 30) == (5, 10, 19)
    assert SweepSettings.pick_layers(0, 4) == (0, 1, 2)
    assert SweepSettings.pick_layers(17, 18) == (8, 16, 17)
    assert SweepSettings.pick_layers(12, 18) == (6, 12, 14)


def test_reproduces_committed_reference_study(tmp_path):
    """The committed file is exactly what the code writes today."""
    write_reference_study(tmp_path)
    assert (tmp_path / "reference_study.json").read_bytes() == (PRECOMPUTED / "reference_study.json").read_bytes()


def test_reference_figures_are_labelled_and_placed_by_relative_depth():
    """Reported, not reproduced: labelled as such, plausible, and drawn at (layer + 1) / n_layers,
    computed here from the file's own numbers rather than copied from the code."""
    ref = json.loads((PRECOMPUTED / "reference_study.json").read_text())
    assert ref["label"] == "reported by the original study, not reproduced here"
    for name, r in ref["test_auroc_by_layer"].items():
        assert all(0 <= int(layer) < r["n_layers"] and 0.5 <= auc <= 1.0 for layer, auc in r["auroc"].items()), name
    assert all(0 <= v <= 1 for v in ref["steering_success_rate"].values())
    cross = {"auroc_by_relative_depth": {}, "score_agreement": []}
    traces = {t.name: t for t in depth_figure(cross, ref, show_reference=True).data}
    for name, r in ref["test_auroc_by_layer"].items():
        t = traces[f"{name} (reported by the original study)"]
        want = sorted(((int(k) + 1) / r["n_layers"], v) for k, v in r["auroc"].items())
        assert list(t.x) == pytest.approx([x for x, _ in want]) and list(t.y) == pytest.approx([y for _, y in want])


def test_reproduces_committed_manifest_hashes():
    man = json.loads((PRECOMPUTED / "manifest.json").read_text())
    on_disk = {p.relative_to(PRECOMPUTED).as_posix() for p in PRECOMPUTED.rglob("*")
               if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".")}
    assert set(man["files"]) == on_disk
    for rel, digest in man["files"].items():
        assert hashlib.sha256((PRECOMPUTED / rel).read_bytes()).hexdigest() == digest, f"{rel} changed since precompute"
    assert man["dataset_sha256"] == dataset.dataset_sha256()
    assert man["schema"] == "empathy-precomputed/2"


@pytest.mark.parametrize("key", ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"])
def test_committed_results_are_small_and_safe(key):
    d = PRECOMPUTED / key
    total = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    assert total <= 5 * 2**20
    assert {p.suffix for p in d.rglob("*") if p.is_file()} <= {".json", ".safetensors"}
