"""The blind-label dataset: complete, consistent with its labelling rule, and split as recorded."""

from collections import Counter, defaultdict

import pytest

from empathy_core.study import labels


@pytest.fixture(scope="module")
def items():
    return labels.load_labels()


def test_every_item_has_a_known_final_label_from_the_rule(items):
    assert len(items) == 1188 and len({x.id for x in items}) == 1188
    for x in items:
        assert x.label in labels.LABEL_NAMES
        if x.label_a == x.label_b:
            assert x.label == x.label_a and x.label_c is None
        else:
            assert x.label_c is not None and x.label == x.label_c


def test_split_is_the_recorded_hash_split_and_stratified_by_model_and_batch(items):
    fresh = [x for x in items if x.batch in labels.FRESH_BATCHES]
    assert all(x.split == "test" for x in fresh)  # a fresh batch is held out whole
    rest = [x for x in items if x.batch not in labels.FRESH_BATCHES]
    groups = labels.split_groups([{"model": x.model, "batch": x.batch, "id": x.id} for x in rest])
    assert labels.split_labels(groups) == {x.id: x.split for x in rest}
    for g, ids in groups.items():
        n_test = sum(1 for x in rest if f"{x.model}/{x.batch}" == g and x.split == "test")
        assert n_test == len(ids) // 2
    # a batch drawn later leaves the earlier batches' split as it was: within the first two batches the groups are
    # the models, as they were when batch2 was added
    first = [x for x in items if x.batch in ("batch1", "batch2")]
    by_model = defaultdict(list)
    for x in first:
        by_model[x.model].append(x.id)
    assert labels.split_labels(by_model) == {x.id: x.split for x in first}


def test_kappa_per_batch_as_reported(items):
    s = labels.summary(items)
    assert round(s["batches"]["batch1"]["kappa"], 3) == 0.879
    assert round(s["batches"]["batch2"]["kappa"], 3) == 0.873
    assert round(s["batches"]["batch3"]["kappa"], 3) == 0.878
    assert round(s["batches"]["batch4"]["kappa"], 3) == 0.870
    assert round(s["batches"]["batch5"]["kappa"], 3) == 0.791
    assert round(s["batches"]["batch6"]["kappa"], 3) == 0.857
    assert round(s["batches"]["batch7"]["kappa"], 3) == 0.917
    assert round(s["batches"]["batch8"]["kappa"], 3) == 0.733 and s["batches"]["batch8"]["third_reads"] == 45
    assert Counter(x.batch for x in items) == {"batch1": 220, "batch2": 110, "batch3": 110, "batch4": 110, "batch5": 115,
                                               "batch6": 150, "batch7": 150, "batch8": 223}


def test_pushes_pair_each_task_choice_baseline_with_six_replies_of_its_scenario(items):
    ps = labels.load_pushes(items=items)
    by = {x.id: x for x in items}
    bases = {p["baseline_id"] for p in ps}
    assert len(bases) == 57 and all(by[b].batch == "batch7" and by[b].label == "task_choice" for b in bases)
    assert Counter((p["push"], p["condition"]) for p in ps) == {
        ("chosen", "probe"): 57, ("chosen", "matched_random"): 57, ("strongest", "probe"): 57,
        ("strongest", "matched_random"): 57, ("seed_only", "baseline"): 57, ("told_to_help", "instructed_empathic"): 57}
    seeds = defaultdict(set)  # the seeds each reply was generated at, by its uses
    for p in ps:
        base, reply = by[p["baseline_id"]], by[p["reply_id"]]
        assert base.scenario == reply.scenario == p["scenario"] and base.seed == p["seed"]
        seeds[p["reply_id"]].add((p["seed"] + 1 if p["seed"] < 699 else 600) if p["push"] == "seed_only" else p["seed"])
    # a new text's key is one of its uses (a text generated at two seeds, or by two pushes, keeps its first use)
    new = {i for i in seeds if by[i].batch == "batch8"}
    assert len(new) == 223 and all(by[i].seed in seeds[i] for i in new)


def test_cohens_kappa_reference_values():
    assert labels.cohens_kappa(list("aabb"), list("aabb")) == 1.0
    # po = 0.5, pe = 0.5 -> 0
    assert labels.cohens_kappa(list("abab"), list("aabb")) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        labels.cohens_kappa([], [])


def test_label_rates_count_every_item_once_by_condition(items):
    rates = labels.label_rates(items)
    assert sum(r["n"] for r in rates) == len(items)
    for r in rates:
        assert sum(r["counts"].values()) == r["n"] and r["empathic_ci"][0] - 1e-9 <= r["empathic_share"] <= r["empathic_ci"][1] + 1e-9
    b3 = [r for r in rates if r["batch"] == "batch3" and r["condition"] == "probe" and r["alpha"] == "alpha > 0"]
    mine = [x for x in items if x.batch == "batch3" and x.condition == "probe" and x.alpha > 0]
    assert b3[0]["n"] == len(mine) and b3[0]["counts"].get("empathic_choice", 0) == sum(x.label == "empathic_choice" for x in mine)


def test_build_holds_a_fresh_batch_out_whole_and_leaves_the_others_split(tmp_path):
    import json

    def stage(batch, n, model="m"):
        rows = [{"id": f"{batch}-{i}", "scenario": "maze", "reply": f"reply {i}"} for i in range(n)]
        key = [{"id": r["id"], "model": model, "scenario": "maze", "layer": 1, "seed": i, "alpha": 0.1,
                "condition": "probe", "direction": ""} for i, r in enumerate(rows)]
        for name, data in (("blind", rows), ("key", key), ("labels_A", [{"id": r["id"], "label": "task_choice"} for r in rows]),
                           ("labels_B", [{"id": r["id"], "label": "task_choice"} for r in rows]), ("labels_C", [])):
            (tmp_path / f"{batch}_{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in data))

    stage("batch1", 10)
    stage(labels.FRESH_BATCHES[0], 6)
    items = labels.build(tmp_path, tmp_path / "out.jsonl")
    first = [x for x in items if x.batch == "batch1"]
    fresh = [x for x in items if x.batch == labels.FRESH_BATCHES[0]]
    assert sum(x.split == "test" for x in first) == 5 and len(fresh) == 6 and all(x.split == "test" for x in fresh)
