"""The empathy probes app: live probe scoring, a steering playground, and replays of precomputed results.

    python app.py                      # http://127.0.0.1:7860 on the bundled smollm2-135m, offline
    python app.py --model gemma3-270m --port 7861
    python app.py --classroom          # or EMPATHY_CLASSROOM=1: opens on the gentler scenarios

This file only composes the tabs of ``empathy_core/app/ui`` (each owns its events) and launches
the page. The work itself lives in ``empathy_core.app.service`` (no gradio), which the tests also
call directly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from a classroom machine

import gradio as gr
from starlette.middleware import Middleware

from empathy_core.app.inputs import classroom_mode
from empathy_core.app.service import Service
from empathy_core.app.ui import cross_tab, layers_tab, probe_tab, steer_tab, steering_tab
from empathy_core.app.ui.api_calls import CompleteApiCalls, endpoint_parameters
from empathy_core.app.ui.model_bar import ModelBar
from empathy_core.app.ui.theme import theme_head
from empathy_core.core.models import DEFAULT_MODEL, REGISTRY
from empathy_core.study.report import render_about

ROOT = Path(__file__).resolve().parent
QUEUE_SIZE = int(os.environ.get("EMPATHY_QUEUE_SIZE", "64"))
# System fonts only: a classroom machine may be offline, and web fonts would be fetched from Google.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
#status-line {font-size: 0.95em}
.gradio-container {max-width: 1280px !important}
.content-note {border-left: 4px solid #E69F00; padding-left: 10px; font-size: 0.92em}
.content-note p {margin: 2px 0}
/* Tables: headers break between words only, and long text wraps inside its column. */
.wrapped-table th, .wrapped-table th * {word-break: normal !important; overflow-wrap: normal !important; hyphens: none}
.wrapped-table td, .wrapped-table td * {white-space: normal !important; overflow-wrap: anywhere}
"""


def build_app(svc: Service, queue_size: int = QUEUE_SIZE, classroom: bool = False) -> gr.Blocks:
    """The page. ``classroom`` (or ``EMPATHY_CLASSROOM=1``): the Steer tab opens on a gentle scenario."""
    classroom = classroom_mode(classroom)
    info = svc.model_info(svc.default_model)
    # delete_cache: Gradio's copies of served files are removed after two hours, checked hourly.
    with gr.Blocks(title="Empathy probes: detecting vs steering", delete_cache=(3600, 7200)) as demo:
        gr.Markdown("# Empathy probes: detecting vs steering\n"
                    "Is “empathy” a direction in a language model's hidden states? **Read** it to score text, "
                    "**add** it to steer generation, and see honestly how well each works. Start with the About tab "
                    "if this is new to you.")
        bar = ModelBar(svc, demo)
        with gr.Tabs():
            probe = probe_tab.build(svc, bar.dropdown, info)
            steer = steer_tab.build(svc, demo, bar.dropdown, info, classroom=classroom)
            layers = layers_tab.build(svc, demo, bar.dropdown)
            cross_tab.build(svc, demo)
            steering = steering_tab.build(svc, demo, bar.dropdown)
            with gr.Tab("About", id="about"):
                gr.Markdown(render_about((ROOT / "assets" / "about.md").read_text(encoding="utf-8"), svc.root))
        bar.chain(before_load=[lambda t: probe(t, "probe_layout"), lambda t: steer(t, "steer_layout"), layers, steering],
                  after_load=[lambda t: probe(t, "probe_layout_after_load"), lambda t: steer(t, "steer_layout_after_load")])
    demo.queue(max_size=queue_size, default_concurrency_limit=4)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kw: object) -> tuple:
    """Serve the page. An API call that leaves inputs out gets them filled with their defaults (null where
    there is none) before Gradio sees it, so the handler names what is missing (``ui/api_calls.py``)."""
    middleware = [Middleware(CompleteApiCalls, describe=endpoint_parameters(demo))]
    return demo.launch(server_name=host, server_port=port, ssr_mode=False, run_history=False, enable_monitoring=False,
                       show_error=True, max_file_size="16mb", theme=THEME, css=CSS, head=theme_head(),
                       app_kwargs={"middleware": middleware}, **kw)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("EMPATHY_MODEL", DEFAULT_MODEL), choices=list(REGISTRY))
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    ap.add_argument("--no-warmup", action="store_true", help="skip the short warm-up generation after loading")
    ap.add_argument("--classroom", action="store_true",
                    help="open the Steer tab on the gentler scenarios; the two with self-harm and bullying themes "
                         "load their prompts only after their content note (also EMPATHY_CLASSROOM=1)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    svc = Service(a.model)
    exit_on_sigterm()
    svc.start(warm=not a.no_warmup)
    launch(build_app(svc, classroom=a.classroom), a.host, a.port)


def exit_on_sigterm() -> None:
    """SIGTERM ends the process through ``sys.exit``, so ``atexit`` handlers run (the service's output folder
    is removed at exit; Ctrl-C already exits normally)."""
    import signal

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # SIGTERM would skip atexit: exit normally instead
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


if __name__ == "__main__":
    main()
