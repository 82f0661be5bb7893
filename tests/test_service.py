"""The app's service layer on a tiny random-init model (no download, no gradio): input checks,
uploads, per-request models, streamed steering, dose-response and cancellation."""

import dataclasses
import json
import math
import threading

import pytest
import torch
from safetensors.torch import save_file

from empathy_core.app.service import (
    CUSTOM,
    Service,
    UserError,
    check_alpha,
    check_int,
    default_prompt,
    examples,
    model_choices,
    scenario_choices,
)
from empathy_core.core.generation import GenerationRequest, side_by_side
from empathy_core.core.models import generation_defaults
from empathy_core.core.probes import Probe
from empathy_core.core.prompts import base_prefix, chat_messages
from empathy_core.study import dataset

KEY = "smollm2-135m"  # the registry key the tiny model stands in for


@pytest.fixture()
def svc(tmp_path, tiny_models):
    """A service whose smollm2-135m slot holds the tiny llama, with a probe written for it."""
    h = dataclasses.replace(tiny_models["llama"], key=KEY)
    L, H = h.n_layers, h.hidden_size
    g = torch.Generator().manual_seed(0)
    D = torch.nn.functional.normalize(torch.randn(L, H, generator=g), dim=1)
    probe = Probe(directions=D, mean_norms=torch.full((L,), 4.0), thresholds=torch.zeros(L),
                  class_means=torch.zeros(L, 2), calib=torch.tensor([[1.0, 0.0]] * L), meta={"model_key": KEY})
    (tmp_path / KEY).mkdir()
    probe.save(tmp_path / KEY / "probes.safetensors")
    (tmp_path / KEY / "detection.json").write_text(json.dumps({"best_layer": 1, "n_layers": L, "hidden_size": H,
                                                                "layers": []}))
    s = Service(KEY, root=tmp_path, judge=False)
    s._handles[KEY] = h
    return s


def test_checks_name_what_to_fix():
    assert check_alpha("0.25") == 0.25
    for bad, needle in [(float("nan"), "finite"), (math.inf, "finite"), (1.5, "out of range"), ("abc", "number")]:
        with pytest.raises(UserError, match=needle):
            check_alpha(bad)
    assert check_int("Layer", 3.0, 0, 4) == 3
    for bad in (3.5, "x", 999, -1, None):
        with pytest.raises(UserError, match="Layer must be a whole number from 0 to 4"):
            check_int("Layer", bad, 0, 4)


def test_choices_and_examples_cover_every_model_and_scenario():
    from empathy_core.core.models import REGISTRY

    assert [k for _, k in model_choices()] == list(REGISTRY)
    assert [k for _, k in scenario_choices()] == [*dataset.SCENARIO_IDS, CUSTOM]
    ex = examples()
    test_texts = {t for p in dataset.load_pairs() if p.split == "test" for t in (p.empathic, p.task)}
    assert len(ex) == 10 and all(t in test_texts for _, _, t in ex)
    assert {title for title, _, _ in ex} == {s.title for s in dataset.scenarios().values()}
    assert default_prompt(True, "maze") == chat_messages("maze")[1]["content"]
    assert default_prompt(False, "maze") == base_prefix("maze")


def test_unknown_model_and_missing_results(tmp_path):
    s = Service(KEY, root=tmp_path, judge=False)
    with pytest.raises(UserError, match="Unknown model"):
        s.check_model("gpt-17")
    with pytest.raises(UserError, match="precompute --model"):
        s.probe(KEY)
    with pytest.raises(UserError, match="Unknown default model"):
        Service("nope")


def test_score_validates_text_and_layer(svc):
    r = svc.score(KEY, "I stayed with them until they felt safe .", layer=2)
    assert r.layer == 2 and r.verdict.layer == 1 and len(r.per_layer) == 4
    assert 0.0 <= r.verdict.probability <= 1.0
    for text, needle in [("", "empty"), ("care " * 5000, "limit"), ("x" * 30_000, "characters")]:
        with pytest.raises(UserError, match=needle):
            svc.score(KEY, text)
    with pytest.raises(UserError, match="Layer must be a whole number from 0 to 3"):
        svc.score(KEY, "I stayed .", layer=4)


@pytest.mark.parametrize("kind,needle", [("garbage", "not a readable safetensors"), ("width", "width"), ("nan", "NaN"),
                                         ("int", "dtype"), ("pickle", ".safetensors"), ("layers", "layers")])
def test_uploads_are_checked_before_use(svc, tmp_path, kind, needle):
    H = svc.handle(KEY).hidden_size
    path = tmp_path / ("up.pt" if kind == "pickle" else "up.safetensors")
    if kind == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif kind == "width":
        save_file({"direction": torch.randn(H + 1)}, str(path))
    elif kind == "nan":
        save_file({"direction": torch.full((H,), float("nan"))}, str(path))
    elif kind == "int":
        save_file({"direction": torch.ones(H, dtype=torch.int64)}, str(path))
    elif kind == "layers":
        save_file({"directions": torch.randn(7, H)}, str(path))
    else:
        path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(UserError, match=needle):
        svc.score(KEY, "I stayed .", upload=str(path))
    with pytest.raises(UserError, match=needle):
        list(svc.stream_steer(KEY, "listener", "I stayed .", 0.2, upload=str(path)))


def test_a_good_upload_is_used(svc, tmp_path):
    H = svc.handle(KEY).hidden_size
    v = torch.randn(H)
    path = tmp_path / "mine.safetensors"
    save_file({"direction": v}, str(path))
    r = svc.score(KEY, "I stayed with them .", layer=0, upload=str(path))
    assert r.verdict.probability is None  # an uploaded bare direction has no calibration
    ours = svc.score(KEY, "I stayed with them .", layer=0)
    assert r.per_layer != pytest.approx(ours.per_layer)


def test_stream_steer_equals_one_library_call_and_is_scored(svc):
    h = svc.handle(KEY)
    prompt = default_prompt(h.is_chat, "listener")
    steps = list(svc.stream_steer(KEY, "listener", prompt, 0.5, layer=2, max_new_tokens=8))
    final = steps[-1]
    assert len(steps) >= 3 and len(final.scores) == 2
    probe = svc.probe(KEY)
    ref = side_by_side(h, GenerationRequest(svc.render(h, "listener", prompt), (0.0, 0.5), 2, probe.directions,
                                            mean_norms=probe.mean_norms, readout_layer=1, max_new_tokens=8,
                                            **generation_defaults(KEY)))  # the service uses the model's guard
    assert [r.token_ids for r in final.rows] == [r.token_ids for r in ref.rows]
    assert final.rows[1].raw_alpha == pytest.approx(0.5 * 4.0)
    assert all(s.judge_probability is None for s in final.scores)  # judge off in this fixture


def test_custom_prompt_has_no_game_context(svc):
    h = svc.handle(KEY)
    assert "<|system|>" not in svc.render(h, CUSTOM, "Hello there")
    assert "<|system|>" in svc.render(h, "duel", "Hello there")


def test_dose_response_spans_minus_to_plus_alpha(svc):
    res = svc.dose_response(KEY, "maze", "I stayed .", -0.4, layer=1, max_new_tokens=4)
    assert [r.alpha for r in res.rows] == pytest.approx([-0.4, -0.2667, -0.1333, 0.0, 0.1333, 0.2667, 0.4], abs=1e-4)
    res0 = svc.dose_response(KEY, "maze", "I stayed .", 0.0, layer=1, max_new_tokens=4)
    assert res0.rows[-1].alpha == pytest.approx(0.3)  # alpha 0 falls back to +-0.3


@pytest.mark.parametrize("bad,needle", [(dict(alpha=float("nan")), "finite"), (dict(alpha=2.0), "out of range"),
                                        (dict(layer=4), "Layer"), (dict(max_new_tokens=257), "Max new tokens"),
                                        (dict(max_new_tokens=0), "Max new tokens"), (dict(seed=-1), "Seed"),
                                        (dict(scenario="moon"), "Unknown scenario"), (dict(prompt=" "), "empty")])
def test_bad_steer_inputs(svc, bad, needle):
    kw = dict(key=KEY, scenario="listener", prompt="I stayed .", alpha=0.1, layer=1, max_new_tokens=4) | bad
    with pytest.raises(UserError, match=needle):
        list(svc.stream_steer(**kw))


def test_stop_cancels_only_that_session(svc):
    ev_a, ev_b = svc.begin("a"), svc.begin("b")
    assert svc.stop("a") and ev_a.is_set() and not ev_b.is_set()
    assert not svc.stop("never-started")
    steps = list(svc.stream_steer(KEY, "listener", "I stayed .", 0.1, layer=1, max_new_tokens=200, cancel=ev_a))
    assert steps[-1].stopped and steps[-1].new_tokens < 200


def test_startup_loads_and_warms_in_the_background(svc):
    svc.start(warm=True)
    st = svc.wait_ready(timeout=120)
    assert st.state == "ready", st.message
    assert st.warmup_s is not None and "Ready" in svc.status_line()


def test_compute_thread_runs_nested_calls_inline():
    from empathy_core.core.compute import on_compute

    names = on_compute(lambda: (threading.current_thread().name, on_compute(lambda: threading.current_thread().name)))
    assert names[0] == names[1] and names[0].startswith("empathy-generate")


def test_a_one_layer_upload_is_used_only_at_its_layer(svc, tmp_path):
    """This project's one-layer export holds ``direction`` and ``direction.N``: the file means layer N only."""
    from empathy_core.core.export import export_vector, write_safetensors

    probe = svc.probe(KEY)
    path = write_safetensors(tmp_path / "one.safetensors", probe, 2, export_vector(probe, 2, None, "relative"), None,
                             "relative")
    r = svc.score(KEY, "I stayed with them .", upload=str(path))
    assert r.layer == 2 and r.verdict.layer == 2
    assert r.per_layer[0] == 0.0 and r.per_layer[2] != 0.0
    with pytest.raises(UserError, match="no vector for layer 1.*layer\\(s\\) 2"):
        list(svc.stream_steer(KEY, "listener", "I stayed .", 0.2, layer=1, upload=str(path)))
    steps = list(svc.stream_steer(KEY, "listener", "I stayed .", 0.2, layer=2, max_new_tokens=3, upload=str(path)))
    assert steps[-1].readout_layer == 2


@pytest.mark.parametrize("positions", ["prompt", "generated"])
def test_positions_reach_the_hook(svc, positions):
    """The Steer tab's advanced setting: the service's request carries it to steering, as the library does."""
    h = svc.handle(KEY)
    probe = svc.probe(KEY)
    steps = list(svc.stream_steer(KEY, "listener", "I stayed .", 0.8, layer=2, max_new_tokens=8, positions=positions))
    ref = side_by_side(h, GenerationRequest(svc.render(h, "listener", "I stayed ."), (0.0, 0.8), 2, probe.directions,
                                            mean_norms=probe.mean_norms, readout_layer=1, max_new_tokens=8,
                                            positions=positions, **generation_defaults(KEY)))
    assert steps[-1].positions == positions
    assert [r.token_ids for r in steps[-1].rows] == [r.token_ids for r in ref.rows]
    with pytest.raises(UserError, match="positions"):
        list(svc.stream_steer(KEY, "listener", "I stayed .", 0.8, positions="middle"))


def test_positions_are_remembered_per_session(svc):
    assert svc.positions("a") == "all"
    assert svc.set_positions("a", "generated") == "generated"
    assert svc.positions("a") == "generated" and svc.positions("b") == "all"
    with pytest.raises(UserError, match="positions"):
        svc.set_positions("a", "middle")


def test_the_sweep_takes_positions(tiny_models):
    from empathy_core.study.sweep import SweepSettings, _request

    h = tiny_models["llama"]
    s = SweepSettings(positions="generated")
    req = _request(h, "maze", s, 0, alphas=(0.0, 0.1), layer=1, directions=torch.zeros(h.n_layers, h.hidden_size),
                   unit="raw")
    assert req.positions == "generated" and not req.greedy and req.max_new_tokens == s.new_tokens
    assert SweepSettings.from_stored({"alphas": [0.0]}).positions == "all"


def test_a_score_during_a_generation_runs_between_its_decode_steps(svc):
    """The short-job lane: a score sent while a long generation streams answers before the generation
    ends, equals the score of the same text alone, and leaves the generation's tokens unchanged."""
    args = (KEY, "listener", "Someone needs help right now.", 0.3, 1, 200, 0, True, None)
    kw = {"positions": "prompt"}
    alone_gen = list(svc.stream_steer(*args, **kw))[-1]
    text = "I stayed to help them."
    alone = svc.score(KEY, text)
    done: dict = {}
    stream = svc.stream_steer(*args, **kw)
    first = next(stream)  # tokens are streaming: the generation holds the compute thread

    def score() -> None:
        done["result"] = svc.score(KEY, text)

    t = threading.Thread(target=score)
    t.start()
    last, seen_at = first, None
    for last in stream:
        if seen_at is None and "result" in done:
            seen_at = max(len(r.token_ids) for r in last.rows)  # tokens generated when the score had answered
    t.join(30)
    n = max(len(r.token_ids) for r in last.rows)
    assert n >= 100 and seen_at is not None and seen_at < n - 10, (seen_at, n)  # it did not wait for the end
    assert done["result"].per_layer == pytest.approx(alone.per_layer, abs=1e-5)
    assert [r.token_ids for r in last.rows] == [r.token_ids for r in alone_gen.rows]
    for a, b in zip(last.rows, alone_gen.rows):  # the live readout skipped the score's forward pass
        assert len(a.token_scores) == len(b.token_scores) and a.token_scores == pytest.approx(b.token_scores, abs=1e-5)


def _with_detection(svc, tmp_path, max_distance: float, min_tokens: int = 4):
    """Add a detection probe (method 'whitened' at layer 2, its gate) to the service's probe file."""
    from empathy_core.core.probes import DetectionProbe

    probe = Probe.load(tmp_path / KEY / "probes.safetensors")
    L, H = probe.directions.shape
    g = torch.Generator().manual_seed(1)
    probe.detection = DetectionProbe(
        directions=torch.nn.functional.normalize(torch.randn(L, H, generator=g), dim=1), thresholds=torch.zeros(L),
        class_means=torch.zeros(L, 2), calib=torch.tensor([[2.0, 0.0]] * L), gate_mean=torch.zeros(H),
        gate_precision=torch.eye(H), meta={"method": "whitened", "pooling": "mean", "layer": 2,
                                           "gate": {"min_tokens": min_tokens, "max_distance": max_distance, "quantile": 0.99}})
    probe.save(tmp_path / KEY / "probes.safetensors")
    return probe


def test_the_detection_probe_scores_and_its_gate_says_cannot_judge(svc, tmp_path):
    from empathy_core.core.activations import extract

    probe = _with_detection(svc, tmp_path, max_distance=1e9)
    fresh = Service(KEY, root=tmp_path, judge=False)
    fresh._handles[KEY] = svc.handle(KEY)
    text = "I stayed with them until they felt safe ."
    r = fresh.score(KEY, text)
    h = fresh.handle(KEY)
    want = probe.detection.score(extract(h, [text]).pooled)[0]
    assert r.verdict.layer == 2 and r.best_layer == 2 and r.verdict.method == "whitened"
    assert r.verdict.score == pytest.approx(float(want[2]), abs=1e-4) and r.verdict.cannot_judge is None
    assert r.verdict.probability == pytest.approx(1 / (1 + math.exp(-2.0 * float(want[2]))), abs=1e-4)
    short = fresh.score(KEY, "I stayed .")  # 3 tokens < 4
    assert short.verdict.cannot_judge == "too_short" and short.verdict.probability is None
    assert short.verdict.label == "cannot_judge"
    # too far: the same text, with a gate whose ceiling is below its distance
    _with_detection(svc, tmp_path, max_distance=1e-6)
    far = Service(KEY, root=tmp_path, judge=False)
    far._handles[KEY] = svc.handle(KEY)
    v = far.score(KEY, text).verdict
    assert v.cannot_judge == "too_far" and v.probability is None
    from empathy_core.app.ui.probe_tab import verdict_markdown

    assert "Can't judge this" in verdict_markdown(far, far.score(KEY, text))


def test_the_steer_tab_pushes_along_the_direction_the_sweep_chose(svc, tmp_path):
    """Mean difference by default; the detection probe's directions once the sweep's choose-seeds chose them."""
    from empathy_core.core.probes import DetectionProbe

    probe = svc.probe(KEY)
    assert torch.equal(svc.steering_directions(KEY, probe), probe.directions)  # no sweep: the study's mean difference
    L, H = probe.directions.shape
    det = DetectionProbe(directions=torch.nn.functional.normalize(torch.randn(L, H), dim=1), thresholds=torch.zeros(L),
                         class_means=torch.zeros(L, 2), calib=torch.tensor([[1.0, 0.0]] * L), gate_mean=torch.zeros(H),
                         gate_precision=torch.eye(H), meta={"layer": 1, "pooling": "mean", "method": "whitened"})
    with_det = dataclasses.replace(probe, detection=det)
    (tmp_path / KEY / "steering.json").write_text(json.dumps({"evaluation": {"chosen": {"direction": "mean_diff"}}}))
    assert torch.equal(svc.steering_directions(KEY, with_det), probe.directions)
    (tmp_path / KEY / "steering.json").write_text(json.dumps({"evaluation": {"chosen": {"direction": "detection"}}}))
    assert torch.equal(svc.steering_directions(KEY, with_det), det.directions)
