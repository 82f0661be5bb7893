""""Fit the probe on this model": the note and button the Probe and Layers tabs show for a model with no probe.

The fit itself is ``Service.start_fit`` (``study/fit.py``). This handler only waits for the job,
turning its progress into a ``gr.Progress`` bar; a second visitor asking for the same model
joins the running job instead of starting another. The event has its own queue slot, so
replays keep answering while it runs (the torch work itself waits its turn on the compute thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ...study.fit import read_fit
from ..service import Service
from .common import friendly, gpu

# On ZeroGPU a call asks for the GPU this long: loading plus the whole detection experiment of a 7-8B model.
FIT_GPU_SECONDS = 240
FIT_EVENT: dict[str, Any] = {"concurrency_id": "fit", "concurrency_limit": 4}


def fit_status(svc: Service, key: str) -> tuple[str, bool]:
    """(the note, whether the fit button shows) for a model."""
    key = svc.check_model(key)
    path = svc.fit_path(key)
    if path is not None:
        mm = read_fit(path).get("matmul_autocast")
        how = f", its matrix products in {mm} (fit.json)" if mm else ""
        return f"*Probe for {key} {svc.fit_note(key)} (the detection experiment of `extract`{how}, in your cache).*", False
    if svc.has_results(key):
        return "", False
    return (f"**No probe yet for {key}.** Fit it here: the detection experiment of `extract` over the team's datasets, "
            f"with the same metrics and baselines, saved in your cache (never in `precomputed/`). It loads the model "
            f"first; on 2 CPU cores a 135M model takes about a minute, a 7B model needs a GPU."), True


@dataclass
class FitPanel:
    note: gr.Markdown
    button: gr.Button

    def wire(self, svc: Service, model: gr.Dropdown, api_name: str, after: dict[str, Any], **kw: Any) -> Any:
        """The button's fit event, then (on success) the tab's own refresh: ``after`` holds its fn, inputs, outputs."""
        return self.button.click(fit_handler(svc), inputs_kwargs={"key": model}, outputs=[self.note, self.button],
                                 api_name=api_name, **kw, **FIT_EVENT).success(
            **after, api_visibility="undocumented", concurrency_id="replay", concurrency_limit=4)

    def follow(self, svc: Service, model: gr.Dropdown, step: Any, api_name: str) -> Any:
        """After a model-change step: this model's note and button."""
        return step.then(on_model(svc), inputs_kwargs={"key": model}, outputs=[self.note, self.button],
                         api_name=api_name, api_visibility="undocumented", concurrency_id="replay", concurrency_limit=4)


def build(svc: Service, model: gr.Dropdown, tab: str) -> FitPanel:
    """The note and button, laid out where this is called; returns them for the tab's own wiring."""
    key0 = svc.default_model
    note0, show0 = fit_status(svc, key0)
    with gr.Row():
        note = gr.Markdown(note0, elem_id=f"{tab}-fit-note")
        button = gr.Button("Fit the probe on this model", visible=show0, variant="secondary", elem_id=f"{tab}-fit",
                           scale=0)
    return FitPanel(note, button)


def fit_handler(svc: Service) -> Any:
    """The fit event's function (waits on the shared job, reports progress)."""
    @gpu(duration=FIT_GPU_SECONDS)
    @friendly
    def fit_probe(key: str, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 (Gradio's progress idiom)
        """Fit the probe on the chosen model (or wait for the fit another visitor started)."""
        job, new = svc.start_fit(key)
        progress(0.0, desc=("fitting " if new else "waiting for the fit another visitor started: ") + job.model_id)
        while True:
            try:
                result = job.future.result(timeout=0.5)
                break
            except TimeoutError:
                progress(job.fraction, desc=job.description)
        note, show = fit_status(svc, result.model_id)
        return (note + f" Best layer {result.best_layer}; took {result.seconds:.0f} s.", gr.update(visible=show))
    return fit_probe


def on_model(svc: Service) -> Any:
    """The note and the button's visibility for a newly chosen model."""
    @friendly
    def fit_on_model(key: str) -> tuple:
        note, show = fit_status(svc, key)
        return note, gr.update(visible=show)
    return fit_on_model
