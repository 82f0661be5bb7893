"""The app through its HTTP API (gradio_client), launched in this process on the bundled SmolLM2.

Every endpoint is checked against the library computing the same thing directly, bad inputs
must come back as clear errors while the app keeps serving, concurrent requests must equal
solo ones, and memory must stay flat over 200 requests.
"""

import csv
import gc
import io
import json
import math
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

pytestmark = pytest.mark.real

KEY = "smollm2-135m"
PROMPT = "Game chat:\n[User] I had a rough day and nobody answers me.\n\nWhat do you do now?"
ENDPOINTS = {"/score", "/steer", "/dose_response", "/stop", "/scenario_info", "/layers_chart", "/download_probe",
             "/cross_model_charts", "/steering_charts", "/samples", "/status", "/select_model", "/fit_probe"}


def steer_args(alpha=0.2, layer=19, n=16, seed=0, greedy=True, upload=None, scenario="listener", prompt=PROMPT, key=KEY):
    return (key, scenario, prompt, alpha, layer, n, seed, greedy, upload)


def plot_data(value) -> list[dict]:
    """The traces of a gr.Plot output as the client receives it."""
    fig = value["plot"] if isinstance(value, dict) else value
    fig = json.loads(fig) if isinstance(fig, str) else fig
    return fig["data"]


def read_csv(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def test_every_endpoint_has_an_explicit_name(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == ENDPOINTS  # the rest are named too, but undocumented (page-load replays, slider echoes)


def test_status_says_ready(client):
    assert "Ready" in client.predict(api_name="/status")


def test_score_matches_the_library(client, app_server):
    from empathy_core.core.activations import extract
    from empathy_core.store import load_probe

    svc, _ = app_server
    text = "I stopped walking to the door and asked how they were doing, even though it cost me a heart."
    verdict, chart, heat, chart_csv = client.predict(KEY, text, 10, None, api_name="/score")
    det = load_probe(KEY).detection  # the Probe tab reads the dev-chosen detection probe
    # Reference: the batched extraction path, pooled, projected on each layer's detection direction.
    acts = extract(svc.handle(KEY), [text], pooling=det.pooling)
    ref = det.score(acts.pooled)[0]
    ys = plot_data(chart)[0]["y"]  # drawn relative to each layer's threshold
    assert len(ys) == det.directions.shape[0]
    np.testing.assert_allclose(ys, (ref - det.thresholds).numpy(), rtol=1e-3, atol=1e-3)
    gate = det.gate().verdict(acts.pooled[:, det.layer].double().numpy(), acts.n_tokens.numpy())[0]
    assert gate == "ok"  # an in-distribution reply: the gate lets it through
    p = det.probability(float(ref[det.layer]), det.layer)
    assert f"P(empathic) = {p:.2f}" in verdict and f"at layer {det.layer}" in verdict
    assert ("Empathic" if p >= 0.5 else "Task-focused") in verdict
    assert "TF-IDF bag-of-words baseline" in verdict
    assert "asked" in heat and "Layer 10" in heat
    rows = read_csv(chart_csv)
    assert [float(r["y"]) for r in rows if r["trace"] == "score − layer threshold"] == pytest.approx(ys)


def test_steer_streams_and_equals_one_batched_library_call(client, app_server):
    from empathy_core.core.generation import GenerationRequest, side_by_side
    from empathy_core.core.models import generation_defaults

    svc, _ = app_server
    job = client.submit(*steer_args(alpha=0.25, n=24), api_name="/steer")
    final = job.result()
    outputs = job.outputs()
    partial = [o for o in outputs[:-1] if o[1] and len(o[1]) < len(final[1])]
    assert partial, "the steered reply should arrive in several growing pieces"
    base, steered, base_info, steer_info, _, steer_heat, result_file = final
    assert base.strip() and steered.strip() and base != steered
    assert "Probe score" in base_info and "Judge" in steer_info
    h = svc.handle(KEY)
    probe = svc.probe(KEY)
    ref = side_by_side(h, GenerationRequest(svc.render(h, "listener", PROMPT), (0.0, 0.25), 19,
                                            svc.steering_directions(KEY, probe),
                                            mean_norms=probe.mean_norms, max_new_tokens=24, **generation_defaults(KEY)))
    assert [base, steered] == [r.text for r in ref.rows]
    saved = json.loads(Path(result_file).read_text())
    assert saved["rows"][1]["alpha"] == pytest.approx(0.25) and saved["rows"][1]["text"] == steered
    assert saved["rows"][1]["raw_alpha"] == pytest.approx(0.25 * float(probe.mean_norms[19]), rel=1e-5)
    assert len(saved["scores"]) == 2 and all(math.isfinite(s["probe_score"]) for s in saved["scores"])
    assert "span" in steer_heat


def test_alpha_zero_column_is_the_unsteered_model(client):
    a = client.predict(*steer_args(alpha=0.0, n=12), api_name="/steer")
    b = client.predict(*steer_args(alpha=-0.3, n=12), api_name="/steer")
    assert a[0] == a[1] == b[0]  # baseline rows agree whatever alpha the other row has


def test_dose_response_is_one_call_over_seven_alphas(client):
    fig, table, result_file, chart_csv = client.predict(*steer_args(alpha=0.3, n=12), api_name="/dose_response")
    alphas = [row[0] for row in table["data"]]
    assert alphas == pytest.approx(list(np.linspace(-0.3, 0.3, 7)), abs=1e-3)
    zero_text = table["data"][3][4]
    base = client.predict(*steer_args(alpha=0.1, n=12), api_name="/steer")[0]
    assert zero_text == base
    traces = plot_data(fig)
    assert traces[0]["x"] == pytest.approx(alphas, abs=1e-3)
    assert [round(y, 2) for y in traces[0]["y"]] == [row[2] for row in table["data"]]
    assert json.loads(Path(result_file).read_text())["kind"] == "dose_response"
    assert [float(r["y"]) for r in read_csv(chart_csv) if r["trace"].startswith("probe score")] == pytest.approx(traces[0]["y"])


def test_switching_models_updates_controls_and_replays(client):
    from empathy_core.store import load_detection

    note, chosen = client.predict("gemma3-270m", api_name="/select_model")
    assert chosen == {"__type__": "update"} and "gemma3-270m" in note and "18 layers" in note and "base model" in note
    out = client.predict("gemma3-270m", "all", "all", api_name="/steering_on_model")
    det = load_detection("gemma3-270m")
    st = json.loads((Path(__file__).resolve().parent.parent / "precomputed" / "gemma3-270m" / "steering.json").read_text())
    ev = st["evaluation"]["chosen"]
    assert f"layer {st['best_steering_layer']}, ±{ev['alpha']:g}" in out[3] and "matched random" in out[3]
    assert {str(-ev["alpha"]), str(float(ev["alpha"]))} <= {c[1] for c in out[9]["choices"]}  # the browser offers the reported α
    # the Steer tab follows: the layer and α its evaluation chose on the choose-seeds
    layer_u, alpha_u, _ = client.predict("gemma3-270m", "maze", False, api_name="/steer_layout")
    assert layer_u["value"] == st["best_steering_layer"] and alpha_u["value"] == ev["alpha"]
    assert "chosen on the sweep's choose-seeds" in layer_u["label"]
    assert out[7]["value"] == st["best_steering_layer"]
    assert all(r[1] in st["settings"]["layers"] or r[4].startswith("prompt_") for r in out[11]["data"])
    plot, summary, _, _ = client.predict("gemma3-270m", False, api_name="/layers_chart_on_model")
    assert f"best layer {det['best_layer']} of 18" in summary
    # A study model that cannot load here: the replays clear with a note instead of an error pop-up.
    plot, summary, _, _ = client.predict("phi3-mini", False, api_name="/layers_chart_on_model")
    assert plot is None and "precompute --model phi3-mini" in summary
    # Choosing it puts the selector back on the last model that loaded for this visitor, and says why.
    note, chosen = client.predict("phi3-mini", api_name="/select_model")
    assert chosen == "gemma3-270m" and "phi3-mini cannot be used here" in note and "huggingface-cli download" in note
    assert "back on **gemma3-270m**" in note


def _call(url: str, name: str, data: list) -> str:
    """One ``/gradio_api/call/NAME`` request as curl would make it; the event stream's text."""
    import httpx

    posted = httpx.post(url + f"gradio_api/call/{name}", json={"data": data}, timeout=30)
    assert posted.status_code == 200, posted.text
    return httpx.get(url + f"gradio_api/call/{name}/{posted.json()['event_id']}", timeout=300).text


def test_a_score_call_with_missing_inputs_gets_a_clear_message(app_server, client):
    url = app_server[1]
    body = _call(url, "score", ["smollm2-135m"])
    assert "object at" not in body and "gradio.components" not in body
    assert "event: error" in body and "missing text" in body, body
    assert "layer" not in body.split("missing")[1].split(":")[0]  # the layer has a default, so it is not missing
    # the app keeps serving, and the same call with every input answers
    verdict = client.predict(KEY, "I asked how they were before I left.", 10, None, api_name="/score")[0]
    answered = ("P(empathic)", "Can't judge this")  # a verdict either way (the can't-judge gate may decline)
    assert any(a in verdict for a in answered), verdict
    body = _call(url, "score", [KEY, "I asked how they were before I left.", 10, None])
    assert "event: complete" in body and any(a in body for a in answered), body


@pytest.mark.parametrize("name", ["score", "scenario_info", "layers_chart", "download_probe", "cross_model_charts",
                                  "steering_charts", "samples", "select_model"])
def test_no_endpoint_answers_a_call_without_inputs_with_internal_reprs(app_server, name):
    """Omitted inputs take their defaults (as gradio_client fills them); one without a default is named."""
    body = _call(app_server[1], name, [])
    assert "object at" not in body and "gradio.components" not in body and "Traceback" not in body, body
    event, data = re.findall(r"event: (\w+)\ndata: (.*)", body)[-1]
    assert event == "complete" or (event == "error" and json.loads(data)["error"]), body


def test_stop_ends_a_long_generation_early(client):
    """/stop from the same session sets the cancel event the running generation checks each step."""
    import time

    job = client.submit(*steer_args(alpha=0.2, n=256), api_name="/steer")
    t = time.perf_counter()
    while not any(o and o[0] for o in job.outputs()) and time.perf_counter() - t < 120:
        time.sleep(0.05)
    client.predict(api_name="/stop")
    final = job.result()
    saved = json.loads(Path(final[6]).read_text())
    assert saved["stopped"] and saved["new_tokens"] < 256
    assert "stopped early" in final[3]


def test_stop_ends_a_dose_response_early(client):
    import time

    job = client.submit(*steer_args(alpha=0.2, n=256), api_name="/dose_response")
    time.sleep(1.5)
    client.predict(api_name="/stop")
    _, table, result_file, _ = job.result()
    saved = json.loads(Path(result_file).read_text())
    assert saved["stopped"] and saved["new_tokens"] < 256 and len(table["data"]) == 7


def test_layers_chart_replays_detection_json_and_toggles_the_reference(client):
    from empathy_core.app.plots import probe_label
    from empathy_core.store import load_detection

    det = load_detection(KEY)
    plot, summary, chart_csv, conf_plot = client.predict(KEY, False, api_name="/layers_chart")
    traces = {t["name"]: t for t in plot_data(plot)}
    # the default probe and the study's mean difference side by side, the text-only baselines as lines
    assert traces[probe_label(det)]["y"] == pytest.approx([r["auroc_test"] for r in det["default_curve"]])
    study = "the study's method: mean difference of the class means, mean pooling"
    assert traces[study]["y"] == pytest.approx([r["auroc_test"] for r in det["layers"]])
    for b in det["baselines"].values():
        line = traces[f"text-only baseline: {b['name']} ({b['test_auroc']:.2f})"]
        assert line["y"] == pytest.approx([b["test_auroc"]] * 2)
    # per-axis confound AUROC with CIs, for the default probe, the study's method and the baselines
    bars = {t["name"]: t for t in plot_data(conf_plot)}
    assert bars[probe_label(det)]["y"] == pytest.approx(
        [det["reports"]["default"]["confound_heldout"][a]["auroc"] for a in ("sentiment", "politeness", "length", "enthusiasm")])
    assert len(bars) == 2 + len(det["baselines"])
    assert "chosen on the dev split only by the pre-registered rule" in summary
    band = "random directions: mean to 95th percentile"
    assert traces[f"{band} upper"]["y"] == pytest.approx([r["random_auroc_p95"] for r in det["layers"]])
    assert traces[band]["y"] == pytest.approx([r["random_auroc_mean"] for r in det["layers"]])
    assert not any("reported" in n for n in traces)
    with_ref = plot_data(client.predict(KEY, True, api_name="/layers_chart")[0])
    assert sum("reported by the original study" in t["name"] for t in with_ref) == 3
    assert f"best layer {det['best_layer']}" in summary
    assert {r["trace"] for r in read_csv(chart_csv)} >= {probe_label(det), "study's method: leave-one-scenario-out AUROC"}


def test_cross_model_charts(client):
    depth, agree, table, depth_csv, agree_csv = client.predict(True, api_name="/cross_model_charts")
    names = [t["name"] for t in plot_data(depth)]
    assert "smollm2-135m (ours)" in names and "gemma3-270m (ours)" in names
    assert any("reported by the original study" in n for n in names)
    assert len(plot_data(agree)) >= 1
    assert "| smollm2-135m |" in table and "reported by the study" in table
    assert read_csv(depth_csv) and read_csv(agree_csv)


def test_steering_charts_and_sample_browser(client):
    st = json.loads((Path(__file__).resolve().parent.parent / "precomputed" / KEY / "steering.json").read_text())
    layer = max(c["layer"] for c in st["evaluation"]["chosen"]["candidates"])  # a choose-phase layer
    out = client.predict(KEY, "maze", layer, api_name="/steering_charts")
    dose, success, coh, rates = out[:4]
    probe_trace = plot_data(dose)[0]
    cells = [d for d in st["dose_response"] if d["condition"] == "probe" and d["layer"] == layer and d["scenario"] == "maze"]
    assert probe_trace["y"] == pytest.approx([d["ensemble_mean"] for d in sorted(cells, key=lambda d: d["alpha"])])
    assert len(plot_data(success)) == 2 and plot_data(coh)
    assert "cluster bootstrap" in rates and "matched random" in rates
    rows = client.predict(KEY, "maze", str(layer), "0.3", "all", "probe", api_name="/samples")["data"]
    expect = [g for g in st["generations"] if g["scenario"] == "maze" and g["layer"] == layer and g["alpha"] == 0.3
              and g["condition"] == "probe"]
    # alpha 0.3 is a choose-phase cell: both directions on both choose-seeds
    assert len(rows) == len(expect) == 2 * len(st["evaluation"]["settings"]["choose_seeds"])
    assert sorted(r[7] for r in rows) == sorted(g["text"] for g in expect)


def test_probe_downloads_round_trip(client, tmp_path):
    from empathy_core.core.export import read_gguf
    from empathy_core.core.probes import Probe, load_direction_file
    from empathy_core.store import load_probe

    probe = load_probe(KEY)
    full = client.predict(KEY, None, "probe file (safetensors, all layers)", None, api_name="/download_probe")
    assert torch.equal(Probe.load(full).directions, probe.directions)
    one = client.predict(KEY, 12, "one layer (safetensors)", None, api_name="/download_probe")
    d = load_direction_file(one, probe.n_layers, probe.hidden_size)
    torch.testing.assert_close(d[12], probe.directions[12])
    gg = client.predict(KEY, 12, "llama.cpp control vector (GGUF)", 0.1, api_name="/download_probe")
    tensors, meta = read_gguf(gg)
    np.testing.assert_allclose(tensors["direction.12"], 0.1 * float(probe.mean_norms[12]) * probe.directions[12].numpy(),
                               rtol=1e-5)


def test_uploaded_direction_steers_and_scores(client, tmp_path):
    """A user's own direction file: the detection probe's directions re-uploaded give the probe's numbers."""
    from empathy_core.store import load_probe

    probe = load_probe(KEY).detection  # what the Probe tab scores with (mean pooling on this model, as uploads use)
    assert probe.pooling == "mean"
    path = tmp_path / "mine.safetensors"
    save_file({"directions": probe.directions.clone()}, str(path))
    from gradio_client import handle_file

    text = "I gave my water to D first and took the lower score."
    mine = client.predict(KEY, text, 10, handle_file(str(path)), api_name="/score")
    ours = client.predict(KEY, text, 10, None, api_name="/score")
    raw = np.array(plot_data(mine[1])[0]["y"])  # an upload has no thresholds: raw projections
    np.testing.assert_allclose(raw - probe.thresholds.numpy(), plot_data(ours[1])[0]["y"], rtol=1e-4, atol=1e-3)
    assert "no calibration" in mine[0]
    # the Steer tab pushes along the steering direction its evaluation's choose-seeds chose
    chosen = json.loads((Path(__file__).resolve().parent.parent / "precomputed" / KEY / "steering.json").read_text())[
        "evaluation"]["chosen"]["direction"]
    full = load_probe(KEY)
    steer_path = tmp_path / "steer.safetensors"
    save_file({"directions": (full.detection.directions if chosen == "detection" else full.directions).clone()},
              str(steer_path))
    up = client.predict(*steer_args(alpha=0.2, n=10, upload=handle_file(str(steer_path))), api_name="/steer")
    assert up[:2] == client.predict(*steer_args(alpha=0.2, n=10), api_name="/steer")[:2]


# ------------------------------------------------------------------------- bad inputs

def _bad_file(tmp: Path, kind: str) -> Path:
    if kind == "malformed":
        p = tmp / "malformed.safetensors"
        p.write_bytes(b"\x00\x01 this is not safetensors" * 10)
    elif kind == "wrong_shape":
        p = tmp / "wrong.safetensors"
        save_file({"direction": torch.randn(100)}, str(p))
    elif kind == "nan":
        p = tmp / "nan.safetensors"
        save_file({"direction": torch.full((576,), float("nan"))}, str(p))
    elif kind == "int":
        p = tmp / "int.safetensors"
        save_file({"direction": torch.ones(576, dtype=torch.int32)}, str(p))
    elif kind == "pickle":
        p = tmp / "vector.pt"
        p.write_bytes(b"\x80\x04\x95 pickle bytes")
    return p


BAD_SCORE = [
    ("empty", dict(text=""), "empty"),
    ("spaces", dict(text="   \n "), "empty"),
    ("100k chars", dict(text="care " * 20_000), "limit"),
    ("layer 999", dict(layer=999), "layer"),
    ("negative layer", dict(layer=-1), "layer"),
    ("unknown model", dict(key="not-a-model"), "unknown model|not in the list of choices"),
    ("offline hub model", dict(key="phi3-mini"), "huggingface-cli download"),
]


@pytest.mark.parametrize("name,bad,needle", BAD_SCORE, ids=[b[0] for b in BAD_SCORE])
def test_bad_score_inputs_get_clear_errors(client, name, bad, needle):
    args = {"key": KEY, "text": "I stayed to help.", "layer": 10, "upload": None} | bad
    with pytest.raises(Exception) as err:
        client.predict(args["key"], args["text"], args["layer"], args["upload"], api_name="/score")
    assert re.search(needle, str(err.value), re.IGNORECASE), str(err.value)


BAD_STEER = [
    ("alpha out of range", dict(alpha=25.0), "α"),
    ("layer 999", dict(layer=999), "layer"),
    ("too many tokens", dict(n=5000), "tokens"),
    ("unknown scenario", dict(scenario="space_station"), "unknown scenario|not in the list of choices"),
    ("unknown model", dict(key="gpt-17"), "unknown model|not in the list of choices"),
    ("offline hub model", dict(key="qwen2.5-7b"), "huggingface-cli download"),
    ("empty prompt", dict(prompt="  "), "prompt"),
    ("huge prompt", dict(prompt="x" * 100_000), "prompt"),
]


@pytest.mark.parametrize("name,bad,needle", BAD_STEER, ids=[b[0] for b in BAD_STEER])
def test_bad_steer_inputs_get_clear_errors(client, name, bad, needle):
    with pytest.raises(Exception) as err:
        client.predict(*steer_args(**bad), api_name="/steer")
    assert re.search(needle, str(err.value), re.IGNORECASE), str(err.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_alpha_sent_as_raw_json_is_refused(app_server, literal):
    """gradio_client cannot even encode NaN, so send the JSON by hand, as any HTTP client could."""
    import httpx

    url = app_server[1]
    body = ('{"data": ["%s", "listener", "Hello there.", %s, 19, 8, 0, true, null]}' % (KEY, literal)).encode()
    r = httpx.post(url + "gradio_api/call/steer", content=body, headers={"content-type": "application/json"}, timeout=30)
    r.raise_for_status()
    stream = httpx.get(url + "gradio_api/call/steer/" + r.json()["event_id"], timeout=60).text
    assert "event: error" in stream and "finite" in stream, stream


@pytest.mark.parametrize("kind,needle", [("malformed", "not a readable safetensors"), ("wrong_shape", "width"),
                                         ("nan", "nan"), ("int", "dtype"), ("pickle", ".safetensors")])
def test_bad_uploads_are_refused_before_use(client, tmp_path, kind, needle):
    from gradio_client import handle_file

    f = handle_file(str(_bad_file(tmp_path, kind)))
    for call in (lambda: client.predict(KEY, "I stayed to help.", 10, f, api_name="/score"),
                 lambda: client.predict(*steer_args(upload=f), api_name="/steer")):
        with pytest.raises(Exception) as err:
            call()
        assert needle.lower() in str(err.value).lower(), str(err.value)
        assert "/tmp/" not in str(err.value)  # never echo a server path


def test_bad_replay_inputs(client):
    with pytest.raises(Exception, match="(?i)not in the sweep"):
        client.predict(KEY, "all", 3, api_name="/steering_charts")
    with pytest.raises(Exception, match="(?i)layer"):
        client.predict(KEY, 999, "one layer (safetensors)", None, api_name="/download_probe")
    with pytest.raises(Exception, match="(?i)unknown model|not in the list of choices"):
        client.predict("nope", False, api_name="/layers_chart")


def test_app_still_answers_after_bad_inputs(client):
    """Runs after the bad-input tests above (file order): a normal request still works."""
    verdict = client.predict(KEY, "I waited with them until they felt better.", 10, None, api_name="/score")[0]
    assert "P(empathic)" in verdict or "Can't judge this" in verdict
    assert "Can't judge this" in client.predict(KEY, "123", 10, None, api_name="/score")[0]
    out = client.predict(*steer_args(n=6), api_name="/steer")
    assert out[0].strip() and out[1].strip()


# ------------------------------------------------------------------------- load

def test_twenty_concurrent_steer_requests_equal_their_solo_results(app_server, tmp_path):
    """Twenty visitors at once, with different alphas, layers, seeds, sampling, uploads and a second
    model: each gets exactly what the same request gets alone, so no choice leaks between requests."""
    from gradio_client import Client, handle_file

    url = app_server[1]
    mine = tmp_path / "random-direction.safetensors"
    save_file({"direction": torch.randn(576, generator=torch.Generator().manual_seed(3))}, str(mine))
    gemma_prompt = "Game log, The Maze. The other player asked me which door is safe.\nMe: "
    requests = []
    for i in range(20):
        kw = dict(alpha=round(-0.3 + 0.03 * i, 2), n=10, layer=(5, 10, 19)[i % 3], seed=i, greedy=i % 2 == 0)
        if i % 5 == 4:
            kw |= dict(upload=handle_file(str(mine)))
        if i % 7 == 6:
            kw |= dict(key="gemma3-270m", layer=(4, 6, 12)[i % 3], prompt=gemma_prompt, upload=None)
        requests.append(steer_args(**kw))
    results, errors = concurrent_steer(url, requests)
    assert not errors, errors
    solo = Client(url, verbose=False)
    for i, req in enumerate(requests):
        assert results[i][:2] == tuple(solo.predict(*req, api_name="/steer")[:2]), req


def concurrent_steer(url: str, requests: list[tuple]) -> tuple[dict[int, tuple], dict[int, str]]:
    """Send every request at once, each from its own client (its own session): (results, errors) by index."""
    from gradio_client import Client

    results, errors = {}, {}

    def one(i):
        try:
            results[i] = tuple(Client(url, verbose=False).predict(*requests[i], api_name="/steer"))
        except Exception as exc:  # noqa: BLE001 - returned to the test, which inspects it
            errors[i] = str(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    return results, errors


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_stays_flat_over_200_requests(client):
    texts = ["I stayed with the player who was stuck.", "I ran to the exit for the points.",
             "Sorry you are having a rough time; I will wait with you.", "I finished the delivery route first."]

    def request(i):
        if i % 10 == 9:
            client.predict(*steer_args(alpha=0.1, n=4, seed=i), api_name="/steer")
        else:
            client.predict(KEY, texts[i % 4] + f" ({i})", 10, None, api_name="/score")

    for i in range(20):
        request(i)
    gc.collect()
    after_20 = _rss_mb()
    for i in range(20, 200):
        request(i)
    gc.collect()
    after_200 = _rss_mb()
    assert after_200 <= 1.10 * after_20, f"RSS grew from {after_20:.0f} MB to {after_200:.0f} MB"


def test_a_full_queue_says_so_and_the_app_recovers(app_server):
    """A second page on the same service with a queue of 2: a burst of requests overflows it."""
    from gradio_client import Client

    import app
    from tests.conftest import free_port

    svc, _ = app_server
    demo = app.build_app(svc, queue_size=2)
    port = free_port()
    app.launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        done, errors = concurrent_steer(url, [steer_args(alpha=0.01 * i, n=48) for i in range(8)])
        assert done, errors
        assert errors and all("queue is full" in e.lower() for e in errors.values()), errors
        assert Client(url, verbose=False).predict(*steer_args(n=4), api_name="/steer")[0].strip()
    finally:
        demo.close()
