"""The app's views of the issue-11 evaluation: tables, gate lines and incoherence marks (no model)."""

import json

from empathy_core.app.plots import coherence_figure, dose_response_figure, live_dose_figure, success_figure
from empathy_core.app.ui.steer_tab import gates_line
from empathy_core.app.ui.steering_tab import OLD_FORMAT_NOTE, rates_table
from empathy_core.store import PRECOMPUTED


def _validation():
    return json.loads((PRECOMPUTED / "judge_validation.json").read_text())


def _new_format():
    def rate(cond, alpha, sign, k, n):
        return {"condition": cond, "alpha": alpha, "sign": sign, "successes": k, "n": n, "clusters": n,
                "rate": k / n, "ci": [0.0, min(1.0, 2 * k / n)], "ci_method": "cluster bootstrap"}

    ev = {"chosen": {"direction": "mean_diff", "layer": 3, "alpha": 0.2, "rule": "r"}, "n_baselines": 30,
          "settings": {"choose_seeds": [100, 101], "report_seeds": [0, 1, 2, 3, 4, 5]},
          "noise_band": 0.7, "success_rule": "validated call",
          "coherent_rate_at_chosen_alpha": {"probe": 0.93, "matched_random": 0.97},
          "rates": [rate("probe", 0.2, "pos", 9, 20), rate("probe", -0.2, "neg", 1, 5), rate("probe", 0.1, "pos", 2, 20),
                    rate("matched_random", 0.2, "pos", 1, 20), rate("seed_only", "all", "pos", 2, 20),
                    rate("prompt_empathic", "all", "pos", 5, 20)]}
    dose = [{"condition": "probe", "scenario": "maze", "layer": 3, "alpha": a, "n": 6, "ensemble_mean": a,
             "ensemble_ci": None, "coherent_rate": 1.0, "gate_coherent_rate": 0.2 if a > 0.25 else 0.9}
            for a in (-0.3, 0.0, 0.3)]
    return {"evaluation": ev, "dose_response": dose, "best_detection_layer": 3, "rates": []}


def test_old_format_says_what_it_cannot_show_and_shows_the_validation():
    st = {"rates": [{"condition": "probe", "layer": "all", "sign": "pos", "n": 15, "successes": 9, "rate": 0.6,
                     "ci": [0.36, 0.80]}],
          "success_rule": "old rule", "ci_note": "Wilson", "best_steering_layer": 3, "best_steering_layer_rule": "r"}
    md = rates_table(st, _validation())
    assert "0.60 [0.36, 0.80] (n = 15)" in md
    assert OLD_FORMAT_NOTE in md and "Judge validation" in md and "empathic call" in md
    v = _validation()["test"]["empathic_call"]
    p = "—" if v["precision"] is None else f"{v['precision']:.2f}"
    assert f"| {p} |" in md and f"{v['predicted']} / {v['actual']}" in md


def test_new_format_table_has_every_control_at_the_chosen_alpha():
    md = rates_table(_new_format(), None)
    assert OLD_FORMAT_NOTE not in md and "validate-judges" in md
    assert "0.45 [0.00, 0.90] (9/20) ✓" in md  # probe at +0.2, not at +0.1; above the goal of 0.30
    assert "(2/20)" in md.split("| seed only")[1].split("\n")[0]
    assert "| matched random, α > 0 | ≤ 0.10 | 0.05 [0.00, 0.10] (1/20) ✓ |" in md
    assert "| probe CI above matched random CI (α > 0) | yes | no ✗ |" in md  # 0.00 is not above 0.10
    assert "layer 3, ±0.2" in md and "| 0.93 / 0.97 ✓ |" in md and "seeds (0, 1, 2, 3, 4, 5)" in md


def test_dose_chart_marks_incoherent_points():
    names = [t.name for t in dose_response_figure(_new_format(), None, 3).data]
    assert any("incoherent" in (n or "") for n in names)
    ok = _new_format()
    for d in ok["dose_response"]:
        d["gate_coherent_rate"] = 1.0
    assert not any("incoherent" in (t.name or "") for t in dose_response_figure(ok, None, 3).data)
    live = live_dose_figure([-0.3, 0.0, 0.3], [1.0, 2.0, 3.0], [None] * 3, 3, incoherent=[False, False, True])
    marked = [t for t in live.data if "coherence gates" in (t.name or "")]
    assert len(marked) == 1 and list(marked[0].x) == [0.3]


def test_coherence_chart_follows_the_gates_not_the_old_check():
    fig = coherence_figure(_new_format())
    assert [list(t.y) for t in fig.data] == [[0.9, 0.9, 0.2]]  # gate_coherent_rate, not the old coherent_rate of 1.0
    assert "validated gates" in fig.layout.title.text
    old = _new_format()
    for d in old["dose_response"]:
        del d["gate_coherent_rate"]
    fig = coherence_figure(old)
    assert [list(t.y) for t in fig.data] == [[1.0, 1.0, 1.0]] and "old perplexity check" in fig.layout.title.text


def test_success_chart_names_its_interval():
    assert "cluster" in success_figure(_new_format()).layout.title.text


def test_gates_line_words():
    g = {"coherent": False, "repetitive": True, "fluent": None, "on_topic": True, "echo": True,
         "reference_model": "smollm2-135m"}
    line = gates_line(g)
    assert "coherent **no**" in line and "not loaded" in line and "echo or meta **yes**" in line


def test_validation_table_shows_what_the_labels_say_for_this_model():
    from empathy_core.study.report import validation_table

    v = _validation()
    v = {**v, "label_rates": [
        {"model": "m1", "batch": "batch3", "condition": "prompt_empathic", "alpha": "alpha = 0", "n": 21,
         "counts": {"empathic_choice": 1, "task_choice": 20}, "empathic_share": 1 / 21, "empathic_ci": [0.01, 0.23],
         "task_share": 20 / 21},
        {"model": "m2", "batch": "batch1", "condition": "probe", "alpha": "alpha > 0", "n": 5,
         "counts": {"incoherent": 5}, "empathic_share": 0.0, "empathic_ci": [0.0, 0.43], "task_share": 0.0}]}
    md = validation_table(v, "m1")
    assert "| batch3 | prompt empathic |  = 0 | 21 | 0.05 [0.01, 0.23] | 0.95 | empathic choice 1, task choice 20 |" in md
    assert "incoherent 5" not in md and "| m2 | batch1 | probe |  > 0 | 5 |" in validation_table(v)
    assert "| model | batch |" in validation_table(v) and "| model |" not in md


def test_validation_table_gives_the_call_by_stratum_and_the_gate_rule():
    from empathy_core.study.report import validation_table

    call = {"n": 10, "predicted": 4, "actual": 5, "true_positives": 3, "precision": 0.75, "recall": 0.6}
    none = {"n": 10, "predicted": 0, "actual": 1, "true_positives": 0, "precision": None, "recall": 0.0}
    v = {**_validation(), "test_by_stratum": {"sweep": {"empathic_call": none}, "told_the_choice": {"empathic_call": call}},
         "gate_rule": "joint_f1", "gate_rule_cv": {"joint_f1": {"all_gates_pass": call, "task_call": call},
                                                   "youden": {"all_gates_pass": none, "task_call": none}}}
    md = validation_table(v)
    assert "the sweep's conditions (steered, α = 0, random and prompted rows; batch8's pushes among them): — / 0.00 (0 of 0 predicted, 1 actual)" in md
    assert "told in the prompt which choice to make: 0.75 / 0.60 (3 of 4 predicted, 5 actual)" in md
    assert "rule `joint_f1`" in md and "`youden` all gates pass — / 0.00" in md


def test_validation_table_reports_a_fresh_batch_on_its_own_and_by_stratum():
    from empathy_core.study.report import validation_table

    call = {"n": 10, "predicted": 4, "actual": 5, "true_positives": 3, "precision": 0.75, "recall": 0.6}
    none = {"n": 5, "predicted": 0, "actual": 1, "true_positives": 0, "precision": None, "recall": 0.0}
    fresh = {"batches": ["batch6"], "all_gates_pass": call, "empathic_call": {**call, "n": 15}, "task_call": call}
    v = {**_validation(), "test_fresh": fresh,
         "test_fresh_by_stratum": {"sweep": {"empathic_call": none}, "told_the_choice": {"empathic_call": call}}}
    md = validation_table(v)
    assert "**Fresh test** (batch6: replies nobody had read" in md and "n = 15" in md
    assert "empathic call 0.75 / 0.60 (3 of 4 predicted, 5 actual)" in md
    assert "their recall overstates the pool's" in md
    assert ("The fresh test's empathic call by how the replies were made: the sweep's conditions (steered, α = 0, random "
            "and prompted rows; batch8's pushes among them): — / 0.00 "
            "(0 of 0 predicted, 1 actual); replies told in the prompt which choice to make: 0.75 / 0.60") in md
    plain = {k: x for k, x in _validation().items() if not k.startswith("test_fresh")}
    assert "Fresh test" not in validation_table(plain)


def test_validation_table_reports_the_success_call_on_prompted_pairs():
    from empathy_core.study.report import validation_table

    pairs = {"alpha_pos": {"n": 21, "predicted": 0}, "alpha_neg": {"n": 12, "predicted": 0}}
    plain = {**{k: x for k, x in _validation().items() if k not in ("test_fresh_success", "success_goal")},
             "test_pairs": pairs}
    md = validation_table(plain)
    assert "The success call itself has no measured precision" in md and "α > 0: 0 calls on 21 labelled pairs" in md
    same = {"n": 40, "predicted": 9, "actual": 12, "true_positives": 8, "precision": 8 / 9, "recall": 8 / 12,
            "precision_ci": [0.57, 0.98]}
    anyp = {"pairs": 300, "baselines": 30, "replies": 31, "precision": 0.85, "precision_ci": [0.7, 0.93]}
    goal = {"rule": "precision of the success call >= 0.80 on pairs", "met": True}
    md = validation_table({**plain, "test_fresh_success": {"same_seed": same, "any_seed": anyp}, "success_goal": goal})
    assert "Goal: precision of the success call >= 0.80 on pairs: met, on its point estimate." in md
    assert "no measured precision" not in md
    assert "precision 0.89 [0.57, 0.98] (Wilson), 8 of 9 calls; it finds 8 of the 12 labelled pairs" in md
    assert "(30 baselines × 31 replies, 300 pairs): 0.85 [0.70, 0.93] (bootstrap within scenario; the two calls' " in md
    assert "A stand-in, not a steered reply" in md
    assert "on labelled steered pairs it made none (α > 0: 0 calls on 21 labelled pairs; α < 0: 0 calls on 12" in md
    fired = {"alpha_pos": {"n": 21, "predicted": 2, "actual": 1, "true_positives": 1, "precision": 0.5, "recall": 1.0}}
    assert "alpha_pos: 0.50 / 1.00" in validation_table({**plain, "test_pairs": fired})


def test_the_plain_verdict_follows_the_goals():
    from empathy_core.study.report import steering_verdict

    ev = _new_format()["evaluation"]
    # 9/20 = 0.45 >= 0.30, but its CI [0, 0.90] is not above matched random's [0, 0.10]: no effect by this test
    v = steering_verdict(ev)
    assert v.startswith("**The validated call saw no steering effect on this model's choices**") and "probe 9 of 20" in v
    assert "matched random 1 of 20" in v and "weak test" not in v
    clear = {**ev, "rates": [{**r, "ci": [0.3, 0.6]} if r["condition"] == "probe" else r for r in ev["rates"]]}
    assert steering_verdict(clear).startswith("**Steering works on this model by this test**")
    few = {**ev, "rates": [{**r, "n": 4, "successes": 0, "rate": 0.0} if r["condition"] == "probe" else r
                           for r in ev["rates"]]}
    assert "Only 4 baselines were eligible" in steering_verdict(few)
    none = {**ev, "rates": [r for r in ev["rates"] if r["condition"] != "probe"]}
    assert steering_verdict(none).startswith("**No steering effect can be measured")
    assert steering_verdict(ev) in rates_table(_new_format(), None)  # the Steering results tab leads with it


def test_the_labels_alone_give_their_own_steering_verdict_and_table():
    from empathy_core.app.ui.steering_tab import evaluation_table
    from empathy_core.study.report import labels_verdict, validation_table
    from empathy_core.study.validation import pushes_goals

    def p(push, cond, k, n, layer=1, alpha=0.1, direction="detection", unchanged=0, fired=0, right=0, task=None,
          readable=1.0):
        task = n - k if task is None else task
        return {"push": push, "condition": cond, "model": "m1", "direction": direction, "layer": layer, "alpha": alpha,
                "successes": k, "n": n, "rate": k / n, "ci": [max(0.0, k / n - 0.1), min(1.0, k / n + 0.1)],
                "ci_scenarios": [0.0, 0.2], "scenarios": {"maze": n}, "readable_share": readable, "unchanged": unchanged,
                "labels": {"empathic_choice": k, "task_choice": task, "unclear": n - k - task},
                "success_call": {"predicted": fired, "true_positives": right}}
    pushes = [p("chosen", "probe", 0, 50, unchanged=30), p("chosen", "matched_random", 1, 50),
              p("strongest", "probe", 3, 50, layer=12, alpha=0.3, direction="mean_diff", fired=2, right=1, task=0,
                readable=0.5),
              p("strongest", "matched_random", 0, 50, layer=12, alpha=0.3, task=20),
              p("seed_only", "baseline", 2, 50, layer=None, alpha=0.0, direction=""),
              p("told_to_help", "instructed_empathic", 20, 50, layer=None, alpha=0.0, direction="")]
    v = {**_validation(), "labelled_pushes": pushes, "labelled_pushes_goals": pushes_goals(pushes)}
    line = labels_verdict(v, "m1")
    assert line.startswith("**By the blind labels alone, steering did not turn task choices into empathic ones** at "
                           "the 2 settings tried, α > 0 only")
    assert "the chosen push (detection, layer 1, α = +0.1): 0 of 50, 0.00 [0.00, 0.10], 30 replies the baseline" in line
    assert "the strongest push passing the coherence gate (mean difference, layer 12, α = +0.3): 3 of 50" in line
    assert "told in the prompt to help (positive control): 20 of 50" in line and labels_verdict(v, "m2") == ""
    # the strongest push moves choices (0 task choices left against 20), but not toward help
    assert "The strongest push does move choices, but not toward help: it left 0 of 50 task choices against 20" in line
    assert "The chosen push does move" not in line
    md = validation_table(v, "m1")
    assert "| its matched random direction | random, same norm, layer 1, α = +0.1 | 1 of 50" in md
    assert "| 2, 1 |" in md and "labelled_pushes" not in md and line not in md
    assert "**Steering judged by the blind labels alone** (labels batch8: 50 unsteered m1 baselines" in md
    assert ("fired 2 times, 1 right, where the labels find 4 empathic choices; on the controls' pairs it fired 0 (0 right) "
            "for seed only") in md
    assert "readable replies ≥ 0.90 not met (0.50)" in md and "Baselines per scenario: maze 50." in md
    assert "Over all 300 pairs of the batch: 1 of 2 calls right." in md
    assert "By the blind labels" not in validation_table(v, "m2")
    good = [p("chosen", "probe", 40, 50), p("chosen", "matched_random", 1, 50)]
    works = {**v, "labelled_pushes": good, "labelled_pushes_goals": pushes_goals(good)}
    assert pushes_goals(good)["chosen"]["seed_only_met"] is None  # no seed-only control: not measured, not failed
    assert labels_verdict(works, "m1").startswith("**By the blind labels alone, steering turned task choices")
    assert "seed only ≤ 0.10 not measured" in validation_table(works, "m1")
    unreadable = [p("chosen", "probe", 40, 50, readable=0.8), p("chosen", "matched_random", 1, 50)]
    assert "did not turn" in labels_verdict({**v, "labelled_pushes": unreadable,
                                             "labelled_pushes_goals": pushes_goals(unreadable)}, "m1")
    neg = [p("chosen", "probe", 0, 50, alpha=-0.1)]
    assert "α = -0.1" in labels_verdict({**v, "labelled_pushes": neg, "labelled_pushes_goals": pushes_goals(neg)}, "m1")
    st = {**_new_format(), "model_key": "m1"}
    table = evaluation_table(st, v)
    assert table.startswith(line) and "By the blind labels" not in evaluation_table(st, None)
