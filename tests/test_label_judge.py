"""The steering calls' empathy judgment trained on blind labels: train part only, out-of-fold scores, re-scoring."""

import dataclasses

import numpy as np
import pytest

from empathy_core.study import validation
from empathy_core.study.judges import LabelJudge
from empathy_core.study.labels import LabelledReply

EMPATHIC = ["I stop and stay with them until they feel safe.", "I put the game aside and bring them water now.",
            "I stay in the room and listen to them.", "I stop shooting and ask if they are all right.",
            "I walk back and help the newcomer through the door.", "I report the bullies and comfort the kid."]
TASK = ["I walk to the door and open it.", "I keep delivering to my column and earn points.",
        "I finish the duel with more lives.", "I take the left corridor and save my coins.",
        "I ignore the chat and cross the room.", "I keep playing and reach the exit first."]


def _item(i, text, label, split):
    return LabelledReply(id=f"t{i}", batch="b", model="m", scenario="maze", layer=None, seed=i, alpha=0.0,
                         condition="probe", reply=text, label_a=label, label_b=label, label_c=None, label=label,
                         split=split)


def _items():
    out = []
    for i, t in enumerate(EMPATHIC * 2):
        out.append(_item(i, t, "empathic_choice", "train" if i < 10 else "test"))
    for i, t in enumerate(TASK * 2):
        out.append(_item(100 + i, t, "task_choice", "train" if i < 10 else "test"))
    out.append(_item(999, "What do you do now?", "echo_or_meta", "train"))  # not a readable choice: not trained on
    return out


@pytest.fixture(scope="module")
def judge():
    return LabelJudge(_items())


def test_label_judge_learns_the_train_part_and_never_reads_the_test_part(judge):
    assert {x.id for x in judge.train} == {x.id for x in _items() if x.split == "train" and x.label != "echo_or_meta"}
    s = judge.score(["I stop and stay with them until they feel safe.", "I walk to the door and open it."])
    assert s[0] > 0 > s[1]
    flipped = [dataclasses.replace(x, label="task_choice" if x.label == "empathic_choice" else "empathic_choice")
               if x.split == "test" else x for x in _items()]
    other = LabelJudge(flipped, minilm=judge.minilm)
    assert np.allclose(other.score(EMPATHIC + TASK), judge.score(EMPATHIC + TASK))


def test_out_of_fold_scores_come_from_models_that_did_not_see_the_item(judge):
    oof = judge.out_of_fold()
    assert set(oof) == {x.id for x in judge.train}
    full = dict(zip([x.id for x in judge.train], judge.score([x.reply for x in judge.train])))
    # a memorised item scores further from zero in the full fit than out of fold, on average
    assert np.mean([abs(full[k]) for k in oof]) > np.mean([abs(v) for v in oof.values()])


def test_label_judge_needs_both_kinds():
    with pytest.raises(ValueError, match="empathic and non-empathic"):
        LabelJudge([x for x in _items() if x.label != "empathic_choice"])


def test_gate_rule_choice_follows_the_cross_validated_f1():
    def cv(p, r):
        return {"all_gates_pass": {"precision": p, "recall": r}}
    assert validation.choose_gate_rule({"joint_f1": cv(0.8, 0.5), "youden": cv(0.95, 0.3)}) == "joint_f1"
    assert validation.choose_gate_rule({"joint_f1": cv(0.5, 0.2), "youden": cv(0.95, 0.3)}) == "youden"
    assert validation.choose_gate_rule({"joint_f1": cv(None, 0.0), "youden": cv(None, 0.0)}) == "joint_f1"


def test_recall_scores_stored_texts_again_with_a_new_judge():
    from empathy_core.study.sweep import SweepRecord
    from empathy_core.study.sweep_eval import recall

    rep = {"thresholds": {}, "cutoffs": {"t_empathic": 1.0, "t_task": -1.0}}
    scores = {"max_echo_overlap": 0.0, "meta_phrases": 0.0, "opens_with_you": 0.0, "second_person_share": 0.0,
              "repetition": 0.0, "distinct2": 1.0, "junk_share": 0.0, "fused_words": 0.0, "n_words": 9.0,
              "echo_overlap": 0.0, "perplexity": 20.0, "topic_similarity": 0.9}
    recs = [SweepRecord(scenario="maze", layer=1, seed=0, alpha=a, raw_alpha=a, condition="probe", text=t, n_tokens=5)
            for a, t in ((0.0, "I walk to the door."), (0.3, "I stay with them."))]
    for r in recs:
        r.gates, r.call = {"scores": dict(scores)}, {"empathy": 0.0, "empathic": False, "task": False}
    recall(recs, rep)  # stored scores only: nothing is called
    assert [r.call["empathy"] for r in recs] == [0.0, 0.0] and not any(r.call["empathic"] for r in recs)
    recall(recs, rep, lambda texts: np.array([-2.0 if "door" in t else 2.0 for t in texts]))
    assert [(r.call["empathy"], r.call["empathic"], r.call["task"]) for r in recs] == [(-2.0, False, True),
                                                                                        (2.0, True, False)]
