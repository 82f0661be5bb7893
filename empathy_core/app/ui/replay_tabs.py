"""Tabs 3-5: replays of precomputed results (no model needed): layers, cross-model, steering."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from ...core.export import export_vector, write_gguf, write_safetensors
from ...core.models import REGISTRY
from ...store import model_dir
from ..plots import (
    agreement_figure,
    coherence_figure,
    depth_figure,
    dose_response_figure,
    layer_auroc_figure,
    success_figure,
)
from ..service import Service, UserError, check_alpha, check_int
from .common import REPLAY_EVENT, csv_file, friendly

ALL = "all"
FORMATS = ("probe file (safetensors, all layers)", "one layer (safetensors)", "llama.cpp control vector (GGUF)")


def _reference(svc: Service) -> dict:
    path = svc.root / "reference_study.json"
    return json.loads(path.read_text()) if path.exists() else {}


def quietly(fn, cleared):
    """For a model switch: where ``fn`` refuses (say, no results for that model), clear its outputs
    and put the reason in a note, instead of an error pop-up over the old model's charts."""
    def wrapped(*args):
        try:
            return fn(*args)
        except gr.Error as exc:
            return cleared(f"*{exc.message}*")
    return wrapped


def _need(obj, what: str, key: str):
    if obj is None:
        raise UserError(f"There are no precomputed {what} for {key}. Make them with "
                        f"`python -m empathy_core precompute --model {key}`.")
    return obj


def layer_summary(det: dict) -> str:
    r = det["layers"][det["best_layer"]]
    lo, hi = r["auroc_test_ci"]
    return (f"**{det['model_key']}**, best layer {det['best_layer']} of {det['n_layers']} (chosen on the dev split). "
            f"Test AUROC {r['auroc_test']:.3f} [{lo:.3f}, {hi:.3f}] against {r['random_auroc_p95']:.3f} for the 95th "
            f"percentile of random directions; accuracy {r['accuracy_test']:.3f}; Cohen's d {r['cohens_d_test']:.2f}; "
            f"leave-one-scenario-out {r['loso_auroc_mean']:.3f}; lexically controlled pairs {r['lexical_auroc_test']:.3f}; "
            f"confound controls {r['confound_auroc']:.3f} (0.5 would mean blind to tone, length and politeness). "
            f"The study reported 0.96–1.0 on confounded data; these numbers come from "
            f"`python -m empathy_core precompute --model {det['model_key']}`.")


def build_layers(svc: Service, model: gr.Dropdown) -> dict:
    with gr.Tab("Layers: replay", id="layers"):
        gr.Markdown("Per-layer detection on the held-out test pairs, replayed from `precomputed/`.")
        show_ref = gr.Checkbox(False, label="Overlay the original study's curves (as reported there, not reproduced here)")
        plot = gr.Plot(label="AUROC by layer", elem_id="layers-plot")
        summary = gr.Markdown()
        csv = gr.File(label="Chart data (CSV)")
        with gr.Accordion("Download the probe", open=False):
            with gr.Row():
                d_layer = gr.Number(None, precision=0, label="Layer (empty = best layer)")
                d_fmt = gr.Radio(list(FORMATS), value=FORMATS[0], label="Format")
                d_alpha = gr.Number(None, label="Scale by α (relative units; empty = unit vector)")
            d_btn = gr.Button("Prepare download")
            d_file = gr.File(label="Probe")

    @friendly
    def chart(key, ref):
        key = svc.check_model(key)
        det = _need(svc.detection(key), "detection results", key)
        fig = layer_auroc_figure(det, _reference(svc), bool(ref))
        return fig, layer_summary(det), csv_file(svc, fig, f"layers-{key}")

    @friendly
    def download(key, layer, fmt, alpha):
        key = svc.check_model(key)
        probe = svc.probe(key)
        if fmt not in FORMATS:
            raise UserError(f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
        if fmt == FORMATS[0]:  # a copy in the app's output folder: the repo folder is never served
            src = model_dir(key, svc.root) / "probes.safetensors"
            return svc.output_path(f"{key}-probes", ".safetensors", src.read_bytes())
        layer = svc.best_layers(key)[0] if layer in (None, "") else check_int("Layer", layer, 0, probe.n_layers - 1)
        a = None if alpha in (None, "") else check_alpha(alpha)
        vec = export_vector(probe, layer, a, "relative")
        out = Path(tempfile.mkdtemp(dir=svc.out_dir))
        stem = f"{key}-empathy-layer{layer}" + ("" if a is None else f"-alpha{a:g}")
        if fmt == FORMATS[2]:
            return str(write_gguf(out / f"{stem}.gguf", vec, layer, REGISTRY[key].arch))
        return str(write_safetensors(out / f"{stem}.safetensors", probe, layer, vec, a, "relative"))

    show_ref.change(chart, [model, show_ref], [plot, summary, csv], api_name="layers_chart", **REPLAY_EVENT)
    model.change(quietly(chart, lambda note: (None, note, None)), [model, show_ref], [plot, summary, csv],
                 api_name="layers_chart_on_model", api_visibility="undocumented", **REPLAY_EVENT)
    d_btn.click(download, [model, d_layer, d_fmt, d_alpha], d_file, api_name="download_probe", **REPLAY_EVENT)
    return {"chart": chart, "inputs": [model, show_ref], "outputs": [plot, summary, csv]}


def comparison_table(cross: dict, ref: dict) -> str:
    rows = ["| model | best layer (relative depth) | test AUROC at best layer | source |", "|---|---|---|---|"]
    for key, m in cross["auroc_by_relative_depth"].items():
        b = m["by_depth"][m["best_layer"]]
        lo, hi = b["auroc_test_ci"]
        rows.append(f"| {key} | {m['best_layer']} ({b['relative_depth']:.2f}) | {b['auroc_test']:.3f} [{lo:.3f}, {hi:.3f}] | "
                    f"this project, confound-controlled pairs |")
    for name, r in ref.get("test_auroc_by_layer", {}).items():
        layer, auc = max(r["auroc"].items(), key=lambda kv: kv[1])
        rows.append(f"| {name} | {layer} ({(int(layer) + 1) / r['n_layers']:.2f}) | {auc:.3f} | reported by the study |")
    rows.append("")
    for a in cross.get("score_agreement", []):
        rows.append(f"- Probe agreement on {a['n_texts'] if 'n_texts' in a else len(a['points'])} texts generated by "
                    f"{a['texts_from']}: Pearson r = {a['pearson']:.2f}, Spearman ρ = {a['spearman']:.2f}.")
    for name, r in ref.get("cross_model_correlation", {}).items():
        rows.append(f"- The study reported a cross-model correlation of {r:+.2f} for {name}.")
    return "\n".join(rows)


def build_cross(svc: Service) -> dict:
    with gr.Tab("Cross-model", id="cross"):
        gr.Markdown("Every model with results, on one relative-depth axis, and how far two models' probes agree "
                    "on the same texts.")
        show_ref = gr.Checkbox(True, label="Show the study's reported curves (grey: reported, not reproduced)")
        depth = gr.Plot(label="AUROC by relative depth", elem_id="depth-plot")
        agree = gr.Plot(label="Score agreement", elem_id="agree-plot")
        table = gr.Markdown()
        with gr.Row():
            depth_csv = gr.File(label="Depth chart data (CSV)")
            agree_csv = gr.File(label="Agreement chart data (CSV)")

    @friendly
    def charts(ref):
        path = svc.root / "cross_model.json"
        if not path.exists():
            raise UserError("No cross-model results yet: run the precompute command for at least one model.")
        cross = json.loads(path.read_text())
        reference = _reference(svc)
        f1, f2 = depth_figure(cross, reference, bool(ref)), agreement_figure(cross)
        return f1, f2, comparison_table(cross, reference), csv_file(svc, f1, "depth"), csv_file(svc, f2, "agreement")

    show_ref.change(charts, show_ref, [depth, agree, table, depth_csv, agree_csv], api_name="cross_model_charts",
                    **REPLAY_EVENT)
    return {"charts": charts, "inputs": [show_ref], "outputs": [depth, agree, table, depth_csv, agree_csv]}


def rates_table(st: dict) -> str:
    names = {"probe": "empathy direction", "random": "random direction", "prompt_empathic": "prompt: be empathic",
             "prompt_task": "prompt: focus on the task"}
    out = ["| condition | α > 0: success [95% Wilson CI] | α < 0: success [95% Wilson CI] |", "|---|---|---|"]
    for cond, label in names.items():
        cells = []
        for sign in ("pos", "neg"):
            r = next((r for r in st["rates"] if r["condition"] == cond and r["layer"] == "all" and r["sign"] == sign), None)
            cells.append("—" if r is None else f"{r['rate']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] (n = {r['n']})")
        out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    out.append(f"\nSuccess: {st['success_rule']}. {st['ci_note']}. Best steering layer {st['best_steering_layer']}: "
               f"{st['best_steering_layer_rule']}.")
    return "\n".join(out)


def build_steering(svc: Service, model: gr.Dropdown) -> dict:
    st0 = svc.steering(svc.default_model) or {"settings": {"layers": [], "alphas": [], "seeds": []}, "best_steering_layer": None}
    s0 = st0["settings"]
    with gr.Tab("Steering results: replay", id="steering"):
        gr.Markdown("The precomputed sweep: every scenario × layer × α × seed, judged by models other than the steered "
                    "one (a MiniLM embedding classifier and the other bundled model's probe).")
        with gr.Row():
            sc = gr.Dropdown([("All scenarios", ALL)] + [(t, i) for t, i in _scenarios()], value=ALL, label="Scenario")
            lyr = gr.Dropdown([(f"layer {L}", L) for L in s0["layers"]], value=st0["best_steering_layer"], label="Layer",
                              allow_custom_value=True)
        dose = gr.Plot(label="Dose-response", elem_id="dose-replay")
        with gr.Row():
            success = gr.Plot(label="Success rates", elem_id="success-plot")
            coh = gr.Plot(label="Coherence", elem_id="coherence-plot")
        rates = gr.Markdown()
        with gr.Row():
            dose_csv = gr.File(label="Dose-response data (CSV)")
            success_csv = gr.File(label="Success data (CSV)")
            coh_csv = gr.File(label="Coherence data (CSV)")
        with gr.Accordion("Sample browser: the precomputed generations", open=True):
            with gr.Row():
                f_sc = gr.Dropdown([("All", ALL)] + [(t, i) for t, i in _scenarios()], value=ALL, label="Scenario")
                f_layer = gr.Dropdown(_choices(s0["layers"]), value=ALL, label="Layer", allow_custom_value=True)
                f_alpha = gr.Dropdown(_choices(s0["alphas"], "{:+g}"), value=ALL, label="α", allow_custom_value=True)
                f_seed = gr.Dropdown(_choices(s0["seeds"]), value=ALL, label="Seed", allow_custom_value=True)
                f_cond = gr.Dropdown([("All", ALL), ("empathy direction", "probe"), ("random direction", "random"),
                                      ("prompt: be empathic", "prompt_empathic"), ("prompt: focus on the task", "prompt_task")],
                                     value=ALL, label="Condition")
            samples_df = gr.Dataframe(headers=["scenario", "layer", "α", "seed", "condition", "judge ensemble", "coherent",
                                               "text"], wrap=True, interactive=False, max_height=420)

    @friendly
    def charts(key, scenario, layer):
        key = svc.check_model(key)
        st = _need(svc.steering(key), "steering results", key)
        layers = st["settings"]["layers"]
        layer = st["best_steering_layer"] if layer in (None, "", ALL) else check_int("Layer", layer, 0, 10_000)
        if layer not in layers:
            raise UserError(f"Layer {layer} was not in the sweep for {key}; it covered layers {layers}.")
        scenario = None if scenario in (None, "", ALL) else scenario
        if scenario is not None and scenario not in st["settings"]["scenarios"]:
            raise UserError(f"Unknown scenario {scenario!r}.")
        f1, f2, f3 = dose_response_figure(st, scenario, layer), success_figure(st), coherence_figure(st)
        lyr_update = gr.update(choices=[(f"layer {L}" + (" (best steering)" if L == st["best_steering_layer"] else ""), L)
                                        for L in layers], value=layer)
        return (f1, f2, f3, rates_table(st), csv_file(svc, f1, f"dose-{key}"), csv_file(svc, f2, f"success-{key}"),
                csv_file(svc, f3, f"coherence-{key}"), lyr_update)

    @friendly
    def filters(key):
        st = _need(svc.steering(key), "steering results", svc.check_model(key))
        s = st["settings"]
        return (gr.update(choices=_choices(s["layers"]), value=ALL), gr.update(choices=_choices(s["alphas"], "{:+g}"), value=ALL),
                gr.update(choices=_choices(s["seeds"]), value=ALL))

    @friendly
    def samples(key, scenario, layer, alpha, seed, cond):
        st = _need(svc.steering(svc.check_model(key)), "steering results", key)
        try:
            alpha = alpha if alpha in (None, ALL) else float(alpha)
        except ValueError:
            raise UserError(f"α must be a number or 'all', not {alpha!r}.") from None
        rows = []
        for g in st["generations"]:
            if ((scenario in (None, ALL) or g["scenario"] == scenario) and (layer in (None, ALL) or str(g["layer"]) == str(layer))
                    and (alpha in (None, ALL) or abs(g["alpha"] - alpha) < 1e-9)
                    and (seed in (None, ALL) or str(g["seed"]) == str(seed)) and (cond in (None, ALL) or g["condition"] == cond)):
                rows.append([g["scenario"], g["layer"], g["alpha"], g["seed"], g["condition"],
                             round(g["judges"]["ensemble"], 2), bool(g["coherence"].get("coherent", False)), g["text"]])
        return rows[:500]

    outs = [dose, success, coh, rates, dose_csv, success_csv, coh_csv, lyr]
    f_inputs = [model, f_sc, f_layer, f_alpha, f_seed, f_cond]

    def on_model(key, scenario, f_scenario):
        """A new model: its best steering layer, its filter choices, its samples."""
        return (*charts(key, scenario, None), *filters(key), samples(key, f_scenario, ALL, ALL, ALL, ALL))

    no_choices = gr.update(choices=[("All", ALL)], value=ALL)
    cleared = (lambda note: (None, None, None, note, None, None, None, gr.update(choices=[], value=None), no_choices,
                             no_choices, no_choices, []))
    sc.change(charts, [model, sc, lyr], outs, api_name="steering_charts", **REPLAY_EVENT)
    lyr.input(charts, [model, sc, lyr], outs, api_name="steering_charts_on_layer", api_visibility="undocumented",
              **REPLAY_EVENT)
    model.change(quietly(on_model, cleared), [model, sc, f_sc], outs + [f_layer, f_alpha, f_seed, samples_df],
                 api_name="steering_on_model", api_visibility="undocumented", **REPLAY_EVENT)
    for i, f in enumerate((f_sc, f_layer, f_alpha, f_seed, f_cond)):
        f.input(samples, f_inputs, samples_df, api_name="samples" if i == 0 else f"samples_{i}",
                api_visibility="public" if i == 0 else "undocumented", **REPLAY_EVENT)
    return {"charts": charts, "inputs": [model, sc, lyr], "outputs": outs, "filters": filters,
            "filter_outputs": [f_layer, f_alpha, f_seed], "samples": samples, "sample_inputs": f_inputs,
            "samples_df": samples_df}


def _choices(values, fmt: str = "{}") -> list[tuple[str, str]]:
    return [("All", ALL)] + [(fmt.format(v), str(v)) for v in values]


def _scenarios():
    from ...core.scenarios import scenarios

    return [(s.title, s.id) for s in scenarios().values()]
