"""Honest replay: a small slice recomputed now must match the committed precomputed/ numbers."""

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess

import pytest
import torch

from empathy_core import store
from empathy_core.store import PRECOMPUTED
from empathy_core.study import dataset
from empathy_core.study.judges import ProbeJudge
from empathy_core.study.sweep import SweepSettings, random_direction

pytestmark = pytest.mark.real
TOL = 2e-3  # stated tolerance for replayed metrics


def test_reproduces_committed_detection_at_two_layers(fresh_smol_detection):
    committed, (_, fresh) = fresh_smol_detection
    best = committed["best_layer"]
    for layer in (best, max(0, best - 3)):
        a, b = fresh["layers"][layer], committed["layers"][layer]
        for k in ("auroc_test", "auroc_dev", "accuracy_test", "cohens_d_test", "random_auroc_p95", "loso_auroc_mean",
                  "lexical_auroc_test", "confound_auroc", "graded_spearman"):
            assert a[k] == pytest.approx(b[k], abs=TOL), k
        assert a["auroc_test_ci"] == pytest.approx(b["auroc_test_ci"], abs=TOL)


def test_reproduces_committed_steering_cell(smol, gemma):
    """One report cell of the committed steering evaluation (the chosen direction and layer, the first report seed
    and scenario: the probe rows at every reported alpha and the matched random rows) is generated again, and the
    committed texts are judged again: the cross-model judge, the steered model's own probe, the calls' empathy
    judgment and every gate score."""
    from empathy_core.study import gates
    from empathy_core.study.sweep_eval import run_eval_cell

    st = json.loads((PRECOMPUTED / "smollm2-135m" / "steering.json").read_text())
    ev = st["evaluation"]
    ch, es = ev["chosen"], ev["settings"]
    layer, seed, scen = ch["layer"], es["report_seeds"][0], es["scenarios"][0]
    probe = store.load_probe("smollm2-135m")
    assert st["dataset_sha256"] == probe.meta["dataset_sha256"] == dataset.dataset_sha256()
    dirs = probe.directions if ch["direction"] == "mean_diff" else probe.detection.directions
    settings = SweepSettings.from_stored(st["settings"])
    fresh = run_eval_cell(smol, dirs, probe.mean_norms, scen, layer, seed, ev["report_alphas"], settings,
                          salt=es["random_salt"], tag=ch["direction"])
    committed = {(r["condition"], r["alpha"]): r for r in st["generations"]
                 if (r["scenario"], r["layer"], r["seed"], r.get("direction")) == (scen, layer, seed, ch["direction"])}
    assert sorted((str(r.condition), r.alpha) for r in fresh) == sorted(committed)
    judges = json.loads((PRECOMPUTED / "smollm2-135m" / "judges.json").read_text())
    cross = ProbeJudge(gemma, store.load_probe("gemma3-270m"), judges["cross_model_judge"]["layer"])
    own = ProbeJudge(smol, probe, st["probe_layer"])
    from empathy_core.study.judges import LabelJudge

    call_judge = LabelJudge()  # the calls' empathy judgment, fitted on the committed labels' train part
    for r in fresh:
        want = committed[(str(r.condition), r.alpha)]
        # Rows are sampled with a shared seed, so a row does not depend on the rest of its batch;
        # a different batch size may still flip a near-tie late in the text.
        common = next((i for i, (x, y) in enumerate(zip(r.text, want["text"])) if x != y), min(len(r.text), len(want["text"])))
        assert common >= 0.5 * len(want["text"]), (r.text, want["text"])
        # the judges replay on the committed text itself, whether or not the fresh text matches it
        # (a whitened probe's scores run to thousands, so float32 batch noise is relative: rel 1e-5)
        assert float(cross.score([want["text"]])[0]) == pytest.approx(want["judges"]["cross_model"], rel=1e-5, abs=TOL)
        assert float(own.score([want["text"]])[0]) == pytest.approx(want["self_probe"], rel=1e-5, abs=TOL)
        assert float(call_judge.score([want["text"]])[0]) == pytest.approx(want["call"]["empathy"], abs=TOL)
        feats = gates.text_features(want["text"], scen)
        assert {k: round(v, 4) for k, v in feats.items()} == {k: want["gates"]["scores"][k] for k in feats}


def test_committed_calls_follow_from_their_stored_scores():
    """Every committed reply's gate verdicts and empathy calls follow from its stored scores and the committed
    judge validation's thresholds and cut-offs (``sweep_eval.recall``), for every bundled model."""
    from empathy_core.study.sweep import SweepRecord
    from empathy_core.study.sweep_eval import recall

    rep = json.loads((PRECOMPUTED / "judge_validation.json").read_text())
    for key in ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"):
        st = json.loads((PRECOMPUTED / key / "steering.json").read_text())
        recs = [SweepRecord.from_dict(g) for g in st["generations"]]
        again = [SweepRecord.from_dict(g) for g in st["generations"]]
        recall(again, rep)
        assert [(r.gates, r.call) for r in again] == [(r.gates, r.call) for r in recs], key


def test_random_direction_is_reproducible():
    a = random_direction(576, 10, 1234)
    assert torch.equal(a, random_direction(576, 10, 1234)) and abs(a.norm().item() - 1) < 1e-6


def test_precompute_quick_end_to_end(tmp_path, smol, gemma, fresh_smol_detection, act_cache, monkeypatch):
    from empathy_core.study.experiments import DetectionSettings
    from empathy_core.study.precompute import run_precompute

    monkeypatch.setenv("EMPATHY_CACHE", str(act_cache))  # the activations fresh_smol_detection just computed
    root = tmp_path / "pc"
    from empathy_core.study.sweep_eval import EvalSettings

    shutil.copytree(PRECOMPUTED / "gemma3-270m", root / "gemma3-270m")
    shutil.copy(PRECOMPUTED / "judge_validation.json", root / "judge_validation.json")
    s = SweepSettings(new_tokens=8)
    e = EvalSettings(alphas=(-0.3, 0.0, 0.3), choose_seeds=(100, 101), report_seeds=(0, 1), scenarios=("maze",))
    det = DetectionSettings(methods=("mean_diff", "whitened"), poolings=("mean",), layers=(4, 10), baselines=("tfidf_logreg",),
                            n_boot=100, n_random=20, cache_activations=True)
    run_precompute("smollm2-135m", s, progress=False, root=root, work_dir=tmp_path / "work", detection=det, eval_settings=e)
    d = root / "smollm2-135m"
    for f in ("probes.safetensors", "detection.json", "lexical_ablation.json", "judges.json", "steering.json"):
        assert (d / f).exists(), f
    st = json.loads((d / "steering.json").read_text())
    conds = {r["condition"] for r in st["generations"]}
    assert conds == {"probe", "matched_random", "prompt_empathic", "prompt_task"}
    assert all("ensemble" in r["judges"] and "coherent" in r["coherence"] for r in st["generations"])
    assert all({"coherent", "on_topic", "echo"} <= set(r["gates"]) and "empathic" in r["call"] for r in st["generations"])
    ev = st["evaluation"]
    assert ev["chosen"]["layer"] == st["best_steering_layer"] and ev["n_baselines"] == 2
    assert {r["seed"] for r in st["generations"]} == {100, 101, 0, 1}
    assert {r["alpha"] for r in st["generations"]} <= set(st["settings"]["alphas"])  # the sample browser's choices
    assert ev["noise_band"] >= 0 and all(r["ci_method"].startswith("cluster") for r in ev["rates"])
    man = json.loads((root / "manifest.json").read_text())
    assert "smollm2-135m/steering.json" in man["files"]
    # the evaluation ran on the current data's probe, and says so; the old sweep's direction has nothing left to replay
    assert st["dataset_sha256"] == dataset.dataset_sha256() == man["dataset_sha256_per_file"]["smollm2-135m/steering.json"]
    assert man["dataset_sha256_per_file"]["smollm2-135m/judges.json"] == dataset.dataset_sha256()
    assert not (d / store.SWEEP_DIRECTION).exists()
    det_rec = json.loads((d / "detection.json").read_text())
    assert det_rec["default"]["method"] in ("mean_diff", "whitened") and det_rec["default"]["layer"] in (4, 10)
    assert store.load_probe("smollm2-135m", root).detection is not None
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PRECOMPUTED.parent).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head), "the tests run in a git checkout"
    assert man["git_commit"] == head
    assert json.loads((root / "reference_study.json").read_text())["label"].startswith("reported by the original study")
    # --from-stored: with the judged cells gone, the committed file alone re-decides the evaluation (nothing generated)
    from empathy_core.study.precompute import run_steering_only
    from empathy_core.study.precompute_eval import stored_cells

    shutil.rmtree(act_cache / "precompute" / "smollm2-135m")
    timings = run_steering_only("smollm2-135m", s, progress=False, root=root, eval_settings=e, from_stored=True)
    again = json.loads((d / "steering.json").read_text())
    assert timings["cells_from_cache"] == len(stored_cells(st)) == 4 * len(ev["settings"]["layers"]) + 4
    assert [g["text"] for g in again["generations"]] == [g["text"] for g in st["generations"]]
    assert again["evaluation"]["chosen"] == ev["chosen"] and again["evaluation"]["rates"] == ev["rates"]
    assert again["probe_sha256"] == hashlib.sha256(store.probe_path("smollm2-135m", root).read_bytes()).hexdigest()
    with pytest.raises(store.StoreError, match="other generation settings"):
        run_steering_only("smollm2-135m", SweepSettings(new_tokens=9), progress=False, root=root, eval_settings=e,
                          from_stored=True)
    with pytest.raises(store.StoreError, match="other alphas"):
        run_steering_only("smollm2-135m", s, progress=False, root=root, from_stored=True,
                          eval_settings=dataclasses.replace(e, alphas=(0.0, 0.5)))
    (d / "steering.json").write_text(json.dumps({**again, "probe_sha256": "0" * 64}))
    with pytest.raises(store.StoreError, match="other probe file"):
        run_steering_only("smollm2-135m", s, progress=False, root=root, eval_settings=e, from_stored=True)
