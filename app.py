"""The empathy probes app: live probe scoring, a steering playground, and replays of precomputed results.

    python app.py                      # http://127.0.0.1:7860 on the bundled smollm2-135m, offline
    python app.py --model gemma3-270m --port 7861

This file builds the page from the tab modules in ``empathy_core/ui`` and launches it. The work
itself lives in ``empathy_core.service`` (no gradio), which the tests also call directly.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from a classroom machine

import gradio as gr  # noqa: E402

from empathy_core.app.service import (  # noqa: E402
    HUB_FALLBACK_NOTE,
    Service,
    default_prompt,
    model_choices,
)
from empathy_core.app.ui import probe_tab, replay_tabs, steer_tab  # noqa: E402
from empathy_core.app.ui.common import MODEL_EVENT, REPLAY_EVENT, friendly, gpu  # noqa: E402
from empathy_core.core.models import BUNDLED, REGISTRY  # noqa: E402

ROOT = Path(__file__).resolve().parent
QUEUE_SIZE = int(os.environ.get("EMPATHY_QUEUE_SIZE", "64"))
# System fonts only: a classroom machine may be offline, and web fonts would be fetched from Google.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
#status-line {font-size: 0.95em}
.gradio-container {max-width: 1280px !important}
"""


def build_app(svc: Service, queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    info = svc.model_info(svc.default_model)
    # delete_cache: Gradio's copies of served files are removed after two hours, checked hourly.
    with gr.Blocks(title="Empathy probes: detecting vs steering", delete_cache=(3600, 7200)) as demo:
        gr.Markdown("# Empathy probes: detecting vs steering\n"
                    "Is “empathy” a direction in a language model's hidden states? **Read** it to score text, "
                    "**add** it to steer generation, and see honestly how well each works. Start with the About tab "
                    "if this is new to you.")
        with gr.Row():
            model = gr.Dropdown(model_choices(), value=svc.default_model, label="Model", scale=2, elem_id="model-select")
            with gr.Column(scale=3):
                status = gr.Markdown(svc.status_line(), elem_id="status-line")
                model_note = gr.Markdown()
        timer = gr.Timer(1.0)
        with gr.Tabs():
            probe = probe_tab.build(svc, model, info)
            steer = steer_tab.build(svc, model, info)
            layers = replay_tabs.build_layers(svc, model)
            cross = replay_tabs.build_cross(svc)
            steering = replay_tabs.build_steering(svc, model)
            with gr.Tab("About", id="about"):
                gr.Markdown((ROOT / "assets" / "about.md").read_text(encoding="utf-8"))

        def poll():
            done = svc.status.state in ("ready", "error")
            return svc.status_line(), gr.Timer(active=not done)

        timer.tick(poll, None, [status, timer], api_name="status_poll", api_visibility="undocumented",
                   show_progress="hidden", queue=False)
        demo.load(svc.status_line, None, status, api_name="status", queue=False)

        @gpu
        @friendly
        def select_model(key):
            h = svc.handle(key)
            note = (f"**{h.key}** ready: {h.n_layers} layers, hidden size {h.hidden_size}, "
                    f"{'chat' if h.is_chat else 'base'} model; loaded in {h.load_seconds:.1f} s"
                    f"{' from the cache' if h.from_cache else ''}.")
            if not svc.has_results(h.key):
                note += " No precomputed probe for it: upload a probe file, or run the precompute command for it."
            if h.key in BUNDLED and h.revision.startswith("hub:"):
                note += " " + HUB_FALLBACK_NOTE
            return note

        @friendly
        def layout(key, scenario):
            """Controls for the chosen model: layer ranges (from results, or from the loaded model) and the prompt style."""
            i = svc.model_info(key)
            prompt = default_prompt(REGISTRY[i["key"]].chat, scenario)
            n = i.get("n_layers")
            if n is None:  # not loaded and no results: the ranges follow once it has loaded
                return gr.skip(), gr.skip(), prompt
            return (gr.update(maximum=n - 1, value=i["best_layer"]), gr.update(maximum=n - 1, value=i["best_steering_layer"]),
                    prompt)

        layout_io = ([model, steer["scenario"]], [probe["layer"], steer["layer"], steer["prompt"]])
        model.change(layout, *layout_io, api_name="layout", api_visibility="undocumented", **REPLAY_EVENT)
        model.change(select_model, model, model_note, api_name="select_model", **MODEL_EVENT).success(
            layout, *layout_io, api_name="layout_after_load", api_visibility="undocumented", **REPLAY_EVENT)
        for name, fn, inputs, outputs in (
            ("layers", layers["chart"], layers["inputs"], layers["outputs"]),
            ("cross_model", cross["charts"], cross["inputs"], cross["outputs"]),
            ("steering", steering["charts"], steering["inputs"], steering["outputs"]),
            ("filters", steering["filters"], [model], steering["filter_outputs"]),
            ("samples", steering["samples"], steering["sample_inputs"], steering["samples_df"]),
            ("raw_alpha", steer["show_raw"], [model, steer["alpha"], steer["layer"]], steer["raw"]),
        ):
            demo.load(fn, inputs, outputs, api_name=f"on_load_{name}", api_visibility="undocumented", **REPLAY_EVENT)
    demo.queue(max_size=queue_size, default_concurrency_limit=4)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kw):
    return demo.launch(server_name=host, server_port=port, ssr_mode=False, run_history=False, enable_monitoring=False,
                       show_error=True, max_file_size="16mb", theme=THEME, css=CSS, **kw)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("EMPATHY_MODEL", "smollm2-135m"), choices=list(REGISTRY))
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    ap.add_argument("--no-warmup", action="store_true", help="skip the short warm-up generation after loading")
    a = ap.parse_args(argv)
    svc = Service(a.model)
    svc.start(warm=not a.no_warmup)
    launch(build_app(svc), a.host, a.port)


if __name__ == "__main__":
    main()
