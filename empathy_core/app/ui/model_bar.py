"""The model selector above the tabs, the status line, and the one model-change chain.

A new model runs one chain: each tab's step (its layer ranges, replays, prompt style), then
the model loads, then the steps that need the loaded model run again (a model with no stored
results gets its layer ranges from the loaded model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from ...core.models import BUNDLED
from ...errors import UserError, report
from ..service import HUB_FALLBACK_NOTE, Service, model_choices
from .common import MODEL_EVENT, friendly, gpu

Step = Callable[[Any], Any]  # given an event trigger (``x.change`` or ``dep.then``), wires one event and returns it


class ModelBar:
    """The selector, the status line (polled until ready) and the note about the loaded model."""

    def __init__(self, svc: Service, demo: gr.Blocks) -> None:
        self.svc = svc
        with gr.Row():
            # allow_custom_value: a Hugging Face id or a local model directory, checked on the server (check_model)
            self.dropdown = gr.Dropdown(model_choices(), value=svc.default_model, label="Model (or type a Hub id or a folder)",
                                        scale=3, elem_id="model-select", allow_custom_value=True)
            # The last model that loaded for this visitor: a failed choice goes back to it.
            self.last_ok = gr.State(svc.default_model)
            with gr.Column(scale=2):
                self.status = gr.Markdown(svc.status_line(), elem_id="status-line")
                self.note = gr.Markdown()
        timer = gr.Timer(1.0)

        def poll() -> tuple[str, gr.Timer]:
            done = svc.status.state in ("ready", "error")
            return svc.status_line(), gr.Timer(active=not done)

        timer.tick(poll, None, [self.status, timer], api_name="status_poll", api_visibility="undocumented",
                   show_progress="hidden", queue=False)
        demo.load(svc.status_line, None, self.status, api_name="status", queue=False)

    def chain(self, before_load: Sequence[Step], after_load: Sequence[Step]) -> None:
        """Wire the one model-change chain: ``before_load`` steps, loading the model, then ``after_load`` steps."""
        svc = self.svc

        @gpu
        @friendly
        def select_model(key: str, last_ok: str | None) -> tuple:
            """Load the chosen model (or find it loaded) and describe it. A model that cannot load here
            puts the selector back on the last one that did, and says why (a note and a warning)."""
            try:
                h = svc.handle(key)
            except UserError as exc:
                why = report(exc, "select_model")
                back = last_ok if last_ok and last_ok != key else svc.default_model
                gr.Warning(f"{key} cannot be used here: {why} Back on {back}.")
                return f"**{key} cannot be used here**: {why} The selector is back on **{back}**.", back, back
            note = (f"**{h.key}** ready: {h.n_layers} layers, hidden size {h.hidden_size}, "
                    f"{'chat' if h.is_chat else 'base'} model; loaded in {h.load_seconds:.1f} s"
                    f"{' from the cache' if h.from_cache else ''}.")
            if not svc.has_results(h.key):
                note += (" No probe for it yet: press \"Fit the probe on this model\" in the Probe or Layers tab, "
                         "or upload a probe file.")
            elif svc.fit_note(h.key):
                note += f" Its probe was {svc.fit_note(h.key)}; there is no steering sweep for it."
            if h.key in BUNDLED and h.revision.startswith("hub:"):
                note += " " + HUB_FALLBACK_NOTE
            return note, gr.skip(), h.key

        trigger: Any = self.dropdown.change
        for step in before_load:
            trigger = step(trigger).then
        trigger = trigger(select_model, inputs_kwargs={"key": self.dropdown, "last_ok": self.last_ok},
                          outputs=[self.note, self.dropdown, self.last_ok], api_name="select_model", **MODEL_EVENT).success
        for step in after_load:
            trigger = step(trigger).then
