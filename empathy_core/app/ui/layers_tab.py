"""Tab 3: per-layer detection replayed from ``precomputed/``, and probe downloads."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from ... import store
from ...core.export import export_vector, write_gguf, write_safetensors
from ...core.models import REGISTRY
from ...errors import UserError
from ..plots import cohens_d_figure, confound_axes_figure, layer_auroc_figure, probe_label
from ..service import Service, check_alpha, check_int
from . import fit_panel
from .common import REPLAY_EVENT, csv_file, friendly
from .replay import need, quietly

FORMATS = ("probe file (safetensors, all layers)", "one layer (safetensors)", "llama.cpp control vector (GGUF)")


def layer_summary(det: dict, fitted: str = "") -> str:
    r = det["layers"][det["best_layer"]]
    lo, hi = r["auroc_test_ci"]
    source = (f"this probe was {fitted}, by the same detection experiment as `python -m empathy_core extract`."
              if fitted else f"these numbers come from `python -m empathy_core precompute --model {det['model_key']}`.")
    study = (f"The study's method (mean difference), best layer {det['best_layer']} of {det['n_layers']} (dev split): "
             f"test AUROC {r['auroc_test']:.3f} [{lo:.3f}, {hi:.3f}] against {r['random_auroc_p95']:.3f} for the 95th "
             f"percentile of random directions; leave-one-scenario-out {r['loso_auroc_mean']:.3f}; confound controls "
             f"{r['confound_auroc']:.3f} (0.5 would mean blind to tone, length and politeness).")
    rep = (det.get("reports") or {}).get("default")
    if not rep:
        return f"**{det['model_key']}**. {study} The study reported 0.96–1.0 on confounded data; {source}"
    d = det["default"]
    dlo, dhi = rep["test_auroc_ci"]
    out = [f"**{det['model_key']}**: the default probe is **{probe_label(det)[len('default probe: '):]}, layer {d['layer']}**, "
           f"chosen on the dev split only by the pre-registered rule (version {det['rule']['version']}). "
           f"Test AUROC {rep['test_auroc']:.3f} [{dlo:.3f}, {dhi:.3f}]; minimal pairs {rep['minimal_test_auroc']:.3f}; "
           f"leave-one-scenario-out {rep['loso_test_auroc_mean']:.3f}; graded Spearman {rep['graded_spearman']:.3f}; "
           f"long-form transfer {rep['longform_test_auroc_short_fit']:.3f}.", study]
    for b in (det.get("baselines") or {}).values():
        blo, bhi = b["test_auroc_ci"]
        out.append(f"Text-only baseline, {b['name']}: test AUROC {b['test_auroc']:.3f} [{blo:.3f}, {bhi:.3f}].")
    out.append(source)
    return " ".join(out)


def mark_fitted(fig: Any, fitted: str) -> str:
    """Add "(probe fitted on this machine at TIME)" to the chart's title when it is; returns ``fitted``."""
    if fitted:
        fig.update_layout(title=f"{fig.layout.title.text or ''} (probe {fitted})")
    return fitted


def separation_figure(svc: Service, key: str) -> Any:
    """Cohen's d by layer on its own zero-based axis (none for a model without results)."""
    det = svc.detection(svc.check_model(key))
    return cohens_d_figure(det) if det is not None else None


def build(svc: Service, demo: gr.Blocks, model: gr.Dropdown) -> Any:
    """Lay out the tab and wire its events; returns its step of the model-change chain.

    Longer than 60 lines because it is the tab's layout followed by its own event wiring (the fit panel, the chart,
    Cohen's d and the probe download), kept together so the tab owns its events as the rest of the UI does.
    """
    with gr.Tab("Layers: replay", id="layers"):
        gr.Markdown("Per-layer detection on the held-out test pairs, replayed from `precomputed/` (or from your cache "
                    "for a probe fitted here).")
        panel = fit_panel.build(svc, model, "layers")
        show_ref = gr.Checkbox(False, label="Overlay the original study's curves (as reported there, not reproduced here)")
        plot = gr.Plot(label="AUROC by layer", elem_id="layers-plot")
        summary = gr.Markdown()
        conf_plot = gr.Plot(label="Confound AUROC per axis", elem_id="confound-axes-plot")
        with gr.Accordion("Separation by layer (Cohen's d, its own axis)", open=False):
            d_plot = gr.Plot(label="Cohen's d by layer", elem_id="cohens-d-plot")
        csv = gr.File(label="Chart data (CSV)")
        with gr.Accordion("Download the probe", open=False):
            with gr.Row():
                d_layer = gr.Number(None, precision=0, label="Layer (empty = best layer)")
                d_fmt = gr.Radio(list(FORMATS), value=FORMATS[0], label="Format")
                d_alpha = gr.Number(None, label="Scale by α (relative units; empty = unit vector)")
            d_btn = gr.Button("Prepare download")
            d_file = gr.File(label="Probe")

    @friendly
    def chart(key: str, reference: bool) -> tuple:
        """Per-layer AUROC with its CI and controls; optionally the study's reported curves; per-axis confound AUROC."""
        key = svc.check_model(key)
        det = need(svc.detection(key), "detection results", key)
        fig = layer_auroc_figure(det, svc.shared("reference_study.json") or {}, bool(reference))
        summary = layer_summary(det, mark_fitted(fig, svc.fit_note(key)))
        return fig, summary, csv_file(svc, fig, f"layers-{key}"), confound_axes_figure(det)

    @friendly
    def download(key: str, layer: Any, fmt: str, alpha: Any) -> str:
        """The probe as a file: all layers, one layer, or a llama.cpp control vector."""
        key = svc.check_model(key)
        probe = svc.probe(key)
        if fmt not in FORMATS:
            raise UserError(f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
        if fmt == FORMATS[0]:  # a copy in the app's output folder: the repo folder is never served
            return svc.output_path(f"{key}-probes", ".safetensors", store.probe_path(key, svc.root).read_bytes())
        layer = svc.best_layers(key)[0] if layer in (None, "") else check_int("Layer", layer, 0, probe.n_layers - 1)
        a = None if alpha in (None, "") else check_alpha(alpha)
        vec = export_vector(probe, layer, a, "relative")
        out = Path(tempfile.mkdtemp(dir=svc.out_dir))
        stem = f"{key}-empathy-layer{layer}" + ("" if a is None else f"-alpha{a:g}")
        if fmt == FORMATS[2]:
            return str(write_gguf(out / f"{stem}.gguf", vec, layer, REGISTRY[key].arch))
        return str(write_safetensors(out / f"{stem}.safetensors", probe, layer, vec, a, "relative"))

    io: dict[str, Any] = dict(inputs_kwargs={"key": model, "reference": show_ref}, outputs=[plot, summary, csv, conf_plot])
    d_fn = quietly(friendly(functools.partial(separation_figure, svc)), lambda note: None)
    d_io: dict[str, Any] = dict(inputs_kwargs={"key": model}, outputs=d_plot, api_visibility="undocumented", **REPLAY_EVENT)
    show_ref.change(chart, api_name="layers_chart", **io, **REPLAY_EVENT)
    demo.load(chart, api_name="on_load_layers", api_visibility="undocumented", **io, **REPLAY_EVENT)
    demo.load(d_fn, api_name="on_load_cohens_d", **d_io)
    d_btn.click(download, inputs_kwargs={"key": model, "layer": d_layer, "fmt": d_fmt, "alpha": d_alpha}, outputs=d_file,
                api_name="download_probe", **REPLAY_EVENT)

    panel.wire(svc, model, "fit_probe_layers", dict(fn=chart, api_name="layers_chart_after_fit", **io),
               api_visibility="undocumented")

    def follow(trigger: Any) -> Any:
        return panel.follow(svc, model, trigger(quietly(chart, lambda note: (None, note, None, None)), api_name="layers_chart_on_model",
                                                api_visibility="undocumented", **io, **REPLAY_EVENT).then(
            d_fn, api_name="cohens_d_on_model", **d_io), "layers_fit_note_on_model")

    return follow
