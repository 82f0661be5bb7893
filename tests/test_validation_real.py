"""The committed judge validation (precomputed/judge_validation.json) is what the code computes now."""

import json

import pytest

from empathy_core.store import PRECOMPUTED
from empathy_core.study import validation
from empathy_core.study.labels import LABELS_PATH, load_labels

pytestmark = pytest.mark.real
TOL_AUROC = 2e-3


def test_recomputes_committed_judge_validation(smol, gemma, embedding_judge):
    from tests.conftest import real_model

    committed = json.loads((PRECOMPUTED / "judge_validation.json").read_text())
    from empathy_core.study.dataset import file_sha256

    assert committed["labels"]["sha256"] == file_sha256(LABELS_PATH)
    rows = validation.compute_rows(load_labels(), load=real_model, pairs_judge=embedding_judge)
    fresh = validation.validate(rows)
    for k, v in committed["thresholds"].items():
        assert fresh["thresholds"][k] == pytest.approx(v, rel=1e-3, abs=1e-3), k
    for k, v in committed["cutoffs"].items():
        assert fresh["cutoffs"][k] == pytest.approx(v, abs=1e-3), k
    for stage, want in committed["test"].items():
        got = fresh["test"][stage]
        if "true_positives" in want:
            # a score within float noise of a cut-off may flip one reply
            assert abs(got["predicted"] - want["predicted"]) <= 1 and abs(got["true_positives"] - want["true_positives"]) <= 1, stage
    assert fresh["n"] == committed["n"] == {"train": 333, "test": 855}
    assert fresh["gate_rule"] == committed["gate_rule"]
    for part, want in committed["judge_auroc"].items():
        for name in ("label_judge", "pair_judge"):
            assert fresh["judge_auroc"][part][name] == pytest.approx(want[name], abs=TOL_AUROC), (part, name)
    from empathy_core.study.labels import label_rates

    assert committed["label_rates"] == json.loads(json.dumps(label_rates(load_labels())))
    assert committed["goal"]["precision"] == fresh["goal"]["precision"] or abs(
        fresh["test"]["empathic_call"]["predicted"] - committed["test"]["empathic_call"]["predicted"]) <= 1
    # the fresh batch (labelled blind after the rule was fixed, held out whole) is where the goal is judged
    for stage in ("all_gates_pass", "empathic_call", "task_call"):
        got, want = fresh["test_fresh"][stage], committed["test_fresh"][stage]
        assert abs(got["predicted"] - want["predicted"]) <= 1 and abs(got["true_positives"] - want["true_positives"]) <= 1
    assert "fresh batch" in committed["goal"]["rule"] and committed["goal"]["predicted"] >= 30
    # the success call itself, on the fresh (baseline, reply told to help) pairs
    got, want = fresh["test_fresh_success"], committed["test_fresh_success"]
    for k in ("n", "predicted", "true_positives", "actual"):
        assert abs(got["same_seed"][k] - want["same_seed"][k]) <= 1, k
    assert abs(got["any_seed"]["pairs"] - want["any_seed"]["pairs"]) <= 31
    assert got["any_seed"]["precision"] == pytest.approx(want["any_seed"]["precision"], abs=0.05)
    assert fresh["success_goal"]["met"] == committed["success_goal"]["met"]
    assert committed["success_goal"]["predicted"] >= 3 and "success call" in committed["success_goal"]["rule"]
    # steering judged by the labels alone (batch8): the rates are label counts, the call's firings within float noise
    want = {(p["push"], p["condition"]): p for p in committed["labelled_pushes"]}
    got = {(p["push"], p["condition"]): p for p in fresh["labelled_pushes"]}
    assert set(got) == set(want) and len(want) == 6
    for k, w in want.items():
        assert (got[k]["n"], got[k]["successes"], got[k]["labels"], got[k]["unchanged"]) == (
            w["n"], w["successes"], w["labels"], w["unchanged"]), k
        assert got[k]["ci"] == pytest.approx(w["ci"]) and got[k]["ci_scenarios"] == pytest.approx(w["ci_scenarios"]), k
        assert got[k]["readable_share"] == w["readable_share"] and got[k]["scenarios"] == w["scenarios"], k
        assert abs(got[k]["success_call"]["predicted"] - w["success_call"]["predicted"]) <= 1, k
    assert fresh["labelled_pushes_goals"].keys() == committed["labelled_pushes_goals"].keys() == {"chosen", "strongest"}
    for push, g in committed["labelled_pushes_goals"].items():
        for k, w in g.items():
            v = fresh["labelled_pushes_goals"][push][k]
            assert v == (pytest.approx(w) if isinstance(w, (float, list)) else w), (push, k)


def test_two_calls_at_once_clear_every_models_noise_band():
    """On (baseline, other reply) pairs the success call is the two calls together (``validation.prompted_pairs``):
    an empathic call and a task call differ in judge score by at least t_empathic - t_task, above each model's band."""
    cut = json.loads((PRECOMPUTED / "judge_validation.json").read_text())["cutoffs"]
    for key in ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"):
        band = json.loads((PRECOMPUTED / key / "steering.json").read_text())["evaluation"]["noise_band"]
        assert cut["t_empathic"] - cut["t_task"] > band, key
