"""The whole "fit the probe here" flow through the app's HTTP API (gradio_client), on a tiny random-init model
saved as a local directory: select it, "no probe yet", fit (two visitors at once, progress events), score,
steer, the Layers chart, and a reload (a new app instance on the same cache) that finds the fit."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT = "Game chat:\n[User] I had a rough day and nobody answers me.\n\nWhat do you do now?"


def launch(root):
    import app
    from empathy_core.app.service import Service

    from .conftest import free_port

    svc = Service(judge=False, root=root)  # never started: the default model is not needed here
    demo = app.build_app(svc)
    port = free_port()
    app.launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    return svc, demo, f"http://127.0.0.1:{port}/"


def summary_text(value):
    return value if isinstance(value, str) else json.dumps(value)


def test_fit_flow_through_the_api_and_a_reload_finds_it(tmp_path, monkeypatch):
    from gradio_client import Client

    from empathy_core.testing import save_tiny_model

    monkeypatch.setenv("EMPATHY_CACHE", str(tmp_path / "cache"))
    model = str(save_tiny_model(tmp_path / "my-model").resolve())
    root = tmp_path / "precomputed"
    root.mkdir()
    svc, demo, url = launch(root)
    try:
        client = Client(url, verbose=False)
        # 1-2. select it: loads, and says there is no probe yet; scoring says how to get one
        note, chosen = client.predict(model, api_name="/select_model")
        assert chosen == {"__type__": "update"} and "No probe for it yet" in note  # the selector keeps the choice and "Fit the probe on this model" in note
        with pytest.raises(Exception, match="no probe for .* yet"):
            client.predict(model, "I stopped to help her.", None, None, api_name="/score")
        # 3. fit: two visitors at once share one fit; progress events arrive while it runs
        jobs = [client.submit(model, api_name="/fit_probe") for _ in range(2)]
        progress = []
        while not all(j.done() for j in jobs):
            st = jobs[0].status()
            if st.progress_data:
                progress.append(st.progress_data[0].progress)
            time.sleep(0.05)
        outs = [j.result() for j in jobs]
        assert svc.fitter.started == 1
        assert all("fitted on this machine at" in (o if isinstance(o, str) else o[0]) for o in outs), outs
        # the note says when the fit's matrix products ran in bfloat16 (fit.fit_matmul_dtype), and only then
        from empathy_core.study.fit import fit_matmul_dtype

        half = fit_matmul_dtype(svc.handle(model)) == "bfloat16"
        assert all(("matrix products in bfloat16" in (o if isinstance(o, str) else o[0])) == half for o in outs), outs
        assert [p for p in progress if p is not None], "no progress event arrived"
        # 4. score with the fitted probe: the verdict says where the probe came from
        verdict, chart, heat, chart_csv = client.predict(model, "I stopped to help her.", None, None, api_name="/score")
        # a random-init model: its gate may find the text too short or too far; either way the verdict says why
        assert ("P(empathic)" in verdict or "Can't judge this" in verdict) and "fitted on this machine at" in verdict
        assert "fitted on this machine" in summary_text(chart)
        # 5. steer: baseline and steered rows at the fitted probe's best layer
        out = client.predict(model, "listener", PROMPT, 0.3, None, 6, 0, True, None, api_name="/steer")
        assert out[0].strip() and out[1].strip()
        best = svc.detection(model)["best_layer"]
        assert json.loads(Path(out[6]).read_text())["layer"] == best
        # 6. the Layers chart, from the fit
        fig, summary, csv, _ = client.predict(model, False, api_name="/layers_chart")
        assert f"best layer {best} of 4" in summary and "fitted on this machine at" in summary
        assert Path(csv).read_text().count("\n") > 4
    finally:
        demo.close()
    # 7. a reload: a new app instance, same cache, finds the fit without fitting again
    svc2, demo2, url2 = launch(root)
    try:
        fig, summary, csv, _ = Client(url2, verbose=False).predict(model, False, api_name="/layers_chart")
        assert "fitted on this machine at" in summary and svc2.fitter.started == 0
    finally:
        demo2.close()


def test_a_bad_custom_model_is_refused_clearly_and_the_app_keeps_serving(tmp_path, monkeypatch):
    from gradio_client import Client

    monkeypatch.setenv("EMPATHY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "precomputed").mkdir()
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 16384, "intermediate_size": 53248, "num_hidden_layers": 126,
        "num_attention_heads": 128, "num_key_value_heads": 8, "vocab_size": 128256}))
    svc, demo, url = launch(tmp_path / "precomputed")
    try:
        client = Client(url, verbose=False)
        for bad, words in [(str(tmp_path / "missing"), "no directory"), ("rm -rf /", "Unknown model"),
                           (str(huge), "Nothing was loaded")]:
            note, chosen = client.predict(bad, api_name="/select_model")  # a failed choice reverts and says why
            assert words in note and chosen != bad
        with pytest.raises(Exception, match="Unknown model"):
            client.submit("rm -rf /", api_name="/fit_probe").result()
        assert "Loaded models" in client.predict(api_name="/status")  # still serving
    finally:
        demo.close()
