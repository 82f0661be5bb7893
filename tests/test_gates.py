"""The steering gates and their validation logic, on hand-made replies and rows (no model)."""

import dataclasses
import json

import numpy as np
import pytest

from empathy_core.study import gates, validation
from empathy_core.study.gates import GateThresholds
from empathy_core.study.labels import LabelledReply


def test_echo_overlap_reads_the_prompt():
    copied = gates.prompt_text("maze")[:300]
    assert gates.echo_overlap(copied, "maze") > 0.9
    assert gates.echo_overlap("I tell the newcomer the left door is wrong and walk on.", "maze") < 0.1
    f = gates.text_features("Your answer should say which door you pick.", "maze")
    assert f["meta_phrases"] >= 1
    assert gates.text_features("You go back to the water source.", "food_delivery")["opens_with_you"] == 1


def test_repetition_and_form_flags():
    t = GateThresholds()
    loop = "I walk to the door. " * 8
    assert gates.repetition_flag(gates.text_features(loop, "listener"), t)
    soup = "<div><p>1 2 3 4 5 6 7 8</p></div> <br> <td>"
    assert gates.repetition_flag(gates.text_features(soup, "listener"), t)
    fused = "therewerenottheydidnotwanttogothere and then I left"
    assert gates.text_features(fused, "listener")["fused_words"] == 1
    fine = "I stay in the room and write back that I am here and want to listen, even if I lose a heart."
    assert not gates.repetition_flag(gates.text_features(fine, "listener"), t)


def test_verdicts_combine_and_serialise():
    t = GateThresholds(min_topic_similarity=0.3, max_log_perplexity=float(np.log(100)))
    f = gates.text_features("I stay and talk with them, the door can wait a while.", "listener")
    ok = gates.verdicts(f, 20.0, 0.5, t)
    assert ok.passes and ok.coherent and ok.to_dict()["passes"]
    assert not gates.verdicts(f, 500.0, 0.5, t).coherent
    assert not gates.verdicts(f, 20.0, 0.1, t).passes
    assert gates.verdicts(f, float("inf"), 0.5, t).to_dict()["scores"]["perplexity"] is None


def test_reference_model_is_never_the_steered_one():
    for key in ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "phi3-mini"):
        assert gates.reference_model(key) != key


def _row(i, label, split, model="m", empathy=0.0, rep=0.0, topic=0.5, ppl=20.0, alpha=0.0, reply="I help them."):
    item = LabelledReply(id=f"x{i}", batch="b", model=model, scenario="maze", layer=1, seed=i, alpha=alpha,
                         condition="probe", reply=reply, label_a=label, label_b=label, label_c=None, label=label,
                         split=split)
    f = gates.text_features(reply, "maze")
    f["repetition"] = rep
    return validation.Row(item, f, ppl, topic, empathy)


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(120):
        split = "train" if i % 2 else "test"
        kind = ["incoherent", "task_choice", "empathic_choice", "unclear"][(i // 2) % 4]  # every kind in both parts
        rep = rng.choice([0.6, 0.8]) if kind == "incoherent" else rng.choice([0.0, 0.1])
        emp = {"empathic_choice": 2.0, "task_choice": -2.0}.get(kind, 0.0) + rng.normal(0, 0.3)
        rows.append(_row(i, kind, split, empathy=emp, rep=rep, topic=rng.uniform(0.35, 0.6)))
    return rows


def test_fitted_thresholds_separate_a_toy_and_calls_are_exact():
    rows = _toy()
    rep = validation.validate(rows)
    assert 0.05 <= rep["thresholds"]["max_repetition"] < 0.5
    assert rep["test"]["repetition"]["precision"] == 1.0 and rep["test"]["repetition"]["recall"] == 1.0
    assert rep["test"]["empathic_call"]["precision"] == 1.0 and rep["goal"]["met"]


def test_the_test_part_is_never_used_to_fit():
    rows = _toy()
    scrambled = [r if r.item.split == "train" else dataclasses.replace(
        r, item=dataclasses.replace(r.item, label="task_choice"), empathy=-r.empathy) for r in rows]
    a, b = validation.validate(rows), validation.validate(scrambled)
    assert a["thresholds"] == b["thresholds"] and a["cutoffs"] == b["cutoffs"]
    assert a["gate_rule_cv"] == b["gate_rule_cv"]
    assert a["test"] != b["test"]


def test_precision_recall_counts():
    pr = validation._pr(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert (pr["precision"], pr["recall"], pr["true_positives"]) == (0.5, 0.5, 1)
    assert validation._pr(np.zeros(3, bool), np.zeros(3, bool))["precision"] is None


@pytest.mark.parametrize("upper", [True, False])
def test_best_cut_direction(upper):
    v = np.array([0.1, 0.2, 0.3, 0.8, 0.9]) if upper else np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    bad = np.array([0, 0, 0, 1, 1], bool)
    c = validation._best_cut(v, bad, upper=upper)
    flag = v > c if upper else v < c
    assert (flag == bad).all()


def test_joint_cuts_find_a_planted_two_feature_gate():
    # positives are high on x OR low on y; each feature alone catches half of them
    rng = np.random.default_rng(3)
    n = 200
    x, y = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    target = (x > 0.9) | (y < 0.1)
    cut = validation._joint_cuts({"x": (x, True), "y": (y, False)}, np.zeros(n, bool), target)
    flag = (x > cut["x"]) | (y < cut["y"])
    assert (flag == target).all()
    # a column that only adds false flags is left without a cut
    noise = rng.uniform(0, 1, n)
    cut = validation._joint_cuts({"x": (x, True), "y": (y, False), "noise": (noise, True)}, np.zeros(n, bool), target)
    assert cut["noise"] == np.inf


def test_gate_rules_are_compared_inside_train_only():
    rows = [r for r in _toy() if r.item.split == "train"]
    cv = validation.cross_validate_rules(rows)
    assert set(cv) == set(validation.GATE_RULES)
    for rule in cv.values():
        assert rule["all_gates_pass"]["n"] == len(rows)
        assert rule["task_call"]["precision"] == 1.0  # the toy separates perfectly
    with pytest.raises(ValueError, match="unknown gate rule"):
        validation.fit_thresholds(rows, rule="nope")


def test_precision_cut_is_the_most_credibly_precise_cut_that_reaches_the_target():
    # scores high to low: E E T E E E E T T ...; precision of s >= cut: 1 (1/1), 1 (2/2), .67, .75, .8, .83 (5/6), ...
    s = np.arange(12, 0, -1, dtype=float)
    pos = np.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    # Wilson lower bounds: 2/2 0.34, 6/7 0.49, 5/6 0.44: six of seven is the most credible
    assert validation._precision_cut(s, pos, 0.8) == 6.0
    assert validation._precision_cut(s, pos, 0.9) == 11.0  # only 1/1 and 2/2 reach 0.9
    never = validation._precision_cut(s, np.zeros(12, bool), 0.8)
    assert never > s.max()  # no cut reaches it: the call never fires


def test_a_fresh_batch_is_reported_on_its_own_and_holds_the_goal():
    from empathy_core.study.labels import FRESH_BATCHES

    FRESH = FRESH_BATCHES[0]
    rows = _toy()
    fresh = [dataclasses.replace(r, item=dataclasses.replace(r.item, id="f" + r.item.id, batch=FRESH, split="test",
                                                             label="task_choice"))
             for r in rows[:40] if r.item.label == "empathic_choice"]  # called empathic, labelled task: all wrong
    rep = validation.validate(rows + fresh)
    base = validation.validate(rows)
    assert rep["cutoffs"] == base["cutoffs"] and rep["thresholds"] == base["thresholds"]  # fresh rows fit nothing
    fr = rep["test_fresh"]
    assert fr["batches"] == [FRESH] and fr["empathic_call"]["n"] == len(fresh)
    assert fr["empathic_call"]["precision"] == 0.0 and not rep["goal"]["met"] and "fresh batch" in rep["goal"]["rule"]
    assert rep["goal"]["predicted"] == fr["empathic_call"]["predicted"] > 0
    # the fresh batch by how its replies were made: the strata split it whole
    assert sum(t["empathic_call"]["n"] for t in rep["test_fresh_by_stratum"].values()) == len(fresh)
    lo, hi = rep["goal"]["precision_ci"]
    assert lo == 0.0 < hi < 0.5
    assert "test_fresh" not in base and base["goal"]["met"] and "held-out test part" in base["goal"]["rule"]


def _pair_row(i, cond, label, empathy, scenario="maze", seed=None, model="qwen"):
    r = _row(i, label, "test", model=model, empathy=empathy)
    item = dataclasses.replace(r.item, id=f"p{cond}{i}", condition=cond, scenario=scenario,
                               seed=i if seed is None else seed, layer=None, batch="batch7")
    return dataclasses.replace(r, item=item)


def test_success_call_on_prompted_pairs_counts_both_replies():
    cut = {"t_empathic": 1.0, "t_task": -1.0}
    t = GateThresholds()
    rows = [
        # seed 0: the call fires and both labels agree: a true success
        _pair_row(0, "baseline", "task_choice", -2.0), _pair_row(0, "instructed_empathic", "empathic_choice", 2.0),
        # seed 1: fires, but the baseline was really unclear: a false success
        _pair_row(1, "baseline", "unclear", -2.0), _pair_row(1, "instructed_empathic", "empathic_choice", 2.0),
        # seed 2: a true success the call misses (the baseline's judge score is not low enough)
        _pair_row(2, "baseline", "task_choice", 0.0), _pair_row(2, "instructed_empathic", "empathic_choice", 2.0),
        # seed 3: only the baseline is labelled: no pair
        _pair_row(3, "baseline", "task_choice", -2.0),
        # another scenario, seed 0: fires, the reply told to help was really a task choice
        _pair_row(4, "baseline", "task_choice", -2.0, scenario="duel", seed=0),
        _pair_row(5, "instructed_empathic", "task_choice", 2.0, scenario="duel", seed=0),
    ]
    assert all(v.passes for v in validation.verdicts_of(rows, t))
    out = validation.prompted_pairs(rows, t, cut, n_boot=200)
    s = out["same_seed"]
    assert (s["n"], s["predicted"], s["true_positives"], s["actual"]) == (4, 3, 1, 2)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == 0.5 and s["precision_ci"][0] < 1 / 3
    # any seed: maze has called baselines {0, 1, 3} (2 of 3 right) x called replies {0, 1, 2} (all right); duel 1 x 1 wrong
    a = out["any_seed"]
    assert (a["pairs"], a["baselines"], a["replies"]) == (10, 4, 4)
    assert a["precision"] == pytest.approx((2 * 3 + 0) / 10)
    lo, hi = a["precision_ci"]
    assert 0 <= lo <= a["precision"] <= hi <= 1
    goal = validation.success_goal(out)
    assert not goal["met"] and goal["predicted"] == 3
    ok = validation.success_goal({"same_seed": {**s, "precision": 0.9}})
    assert ok["met"]


def _push(sc, seed, push, cond, base, reply, layer=1, alpha=0.1, direction="detection"):
    return {"scenario": sc, "seed": seed, "push": push, "condition": cond, "direction": direction, "layer": layer,
            "alpha": alpha, "baseline_id": base, "reply_id": reply}


def test_labelled_pushes_count_empathic_labels_of_task_baselines_and_check_the_call():
    cut = {"t_empathic": 1.0, "t_task": -1.0}
    t = GateThresholds()
    rows = [_pair_row(0, "baseline", "task_choice", -2.0), _pair_row(1, "baseline", "task_choice", 0.0),
            _pair_row(2, "baseline", "unclear", -2.0),  # not a task choice by the labels: not counted
            _pair_row(10, "probe", "empathic_choice", 2.0),  # push on seed 0: a true success, and the call fires
            _pair_row(11, "probe", "echo_or_meta", 2.0),  # push on seed 1: judge high, label says echo: no success
            _pair_row(12, "probe", "empathic_choice", 2.0),  # push on seed 2: baseline not a task choice
            _pair_row(13, "matched_random", "task_choice", -2.0)]
    rows = [dataclasses.replace(r, item=dataclasses.replace(r.item, reply=f"I help them, {k}.")) for k, r in enumerate(rows)]
    ids = {i: r.item.id for i, r in zip((0, 1, 2, 10, 11, 12, 13), rows)}
    pushes = [_push("maze", 0, "chosen", "probe", ids[0], ids[10]), _push("maze", 1, "chosen", "probe", ids[1], ids[11]),
              _push("maze", 2, "chosen", "probe", ids[2], ids[12]),
              _push("maze", 0, "chosen", "matched_random", ids[0], ids[13]),
              _push("maze", 1, "chosen", "matched_random", ids[1], ids[1]),  # the reply is the baseline unchanged
              _push("maze", 0, "seed_only", "baseline", ids[0], ids[1], layer=None, alpha=0.0, direction="")]
    out = validation.labelled_pushes(rows, pushes, t, cut, n_boot=200)
    by = {(p["push"], p["condition"]): p for p in out}
    assert [(p["push"], p["condition"]) for p in out] == [("chosen", "probe"), ("chosen", "matched_random"),
                                                          ("seed_only", "baseline")]
    pr, rd = by[("chosen", "probe")], by[("chosen", "matched_random")]
    assert (pr["n"], pr["successes"], pr["rate"]) == (2, 1, 0.5) and pr["model"] == "qwen"
    assert pr["labels"] == {"echo_or_meta": 1, "empathic_choice": 1} and pr["readable_share"] == 0.5
    assert pr["ci"][0] < 0.5 < pr["ci"][1]
    c = pr["success_call"]  # fires on seed 0 only (seed 1's baseline gets no task call): right
    assert (c["predicted"], c["true_positives"], c["actual"]) == (1, 1, 1) and c["precision_ci"][1] == 1.0
    assert (rd["n"], rd["successes"], rd["unchanged"]) == (2, 0, 1) and rd["success_call"]["precision"] is None
    goals = validation.pushes_goals(out)["chosen"]
    assert goals["probe_met"] and goals["random_met"] and goals["seed_only_met"] and not goals["separated"]


def test_load_pushes_names_labelled_ids_only(tmp_path):
    from empathy_core.study.labels import load_pushes

    items = [_row(0, "task_choice", "test").item]
    f = tmp_path / "pushes.jsonl"
    assert load_pushes(f, items) == ()
    f.write_text(json.dumps(_push("maze", 0, "chosen", "probe", "x0", "x0")) + "\n")
    assert load_pushes(f, items)[0]["reply_id"] == "x0"
    f.write_text(json.dumps(_push("maze", 0, "chosen", "probe", "x0", "nope")) + "\n")
    with pytest.raises(ValueError, match="reply_id 'nope' is not a labelled reply"):
        load_pushes(f, items)
    f.write_text(json.dumps({"scenario": "maze"}) + "\n")
    with pytest.raises(ValueError, match="missing seed"):
        load_pushes(f, items)
