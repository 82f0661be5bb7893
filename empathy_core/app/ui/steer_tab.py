"""Tab 2: the steering playground: baseline and steered replies side by side, streamed."""

from __future__ import annotations

import time

import gradio as gr

from ...core.generation import MAX_NEW_TOKENS, SideBySide
from ...core.models import REGISTRY
from ..plots import live_dose_figure, token_heatmap_html
from ..service import (
    ALPHA_LIMIT,
    DOSE_POINTS,
    MAX_SEED,
    Service,
    default_prompt,
    describe_scenario,
    scenario_choices,
)
from .common import MODEL_EVENT, Slider, csv_file, friendly, gpu, session_id

STREAM_EVERY_S = 0.15  # how often the columns refresh while tokens arrive


def _heatmap(svc: Service, key: str, res: SideBySide, b: int, center: float) -> str:
    row = res.rows[b]
    if not row.token_ids or not row.token_scores:
        return ""
    tok = svc.handle(key).tokenizer
    tokens = [tok.decode([i]) for i in row.token_ids[: len(row.token_scores)]]
    return (f"<div style='font-size:13px'>Live readout at layer {res.readout_layer} (each generated token's state"
            f"{', relative to the probe threshold' if center else ''})</div>"
            + token_heatmap_html(tokens, row.token_scores, center=center))


def _row_info(res: SideBySide, b: int, probe=None) -> str:
    row = res.rows[b]
    head = f"α = {row.alpha:+.2f} (raw {row.raw_alpha:+.1f}) · {len(row.token_ids)} tokens · {res.seconds:.1f} s"
    if not res.scores:
        return head + (" · stopped" if res.stopped else " · generating…")
    s = res.scores[b]
    parts = [head, f"**Probe score** (layer {s['probe_layer']}, whole reply): {s['probe_score']:.2f}"]
    if probe is not None:
        parts[-1] += f", P(empathic) = {probe.probability(s['probe_score'], s['probe_layer']):.2f}"
    if s["judge_probability"] is not None:
        parts.append(f"**Judge** (MiniLM embedding classifier, not the steered model): P(empathic) = "
                     f"{s['judge_probability']:.2f}")
    if res.stopped:
        parts.append("stopped early")
    return " · ".join(parts[:1]) + "  \n" + "  \n".join(parts[1:])


def build(svc: Service, model: gr.Dropdown, info: dict) -> dict:
    n_layers = info.get("n_layers", 32)
    best = info.get("best_steering_layer", n_layers // 2)
    first = "listener"
    with gr.Tab("Steer: playground", id="steer"):
        gr.Markdown("Add α × (empathy direction) to the residual stream at one layer while the model writes. "
                    "The baseline (α = 0) and the steered reply come from **one batched call** with the same prompt, "
                    "seed and noise, so α is the only difference between the two columns.")
        with gr.Row():
            with gr.Column(scale=3):
                scenario = gr.Dropdown(scenario_choices(), value=first, label="Scenario")
                desc = gr.Markdown(describe_scenario(first))
                prompt = gr.Textbox(label="Prompt (editable; the scenario's system message is added for chat models)",
                                    lines=6, max_length=20_000, value=default_prompt(info.get("is_chat", True), first))
            with gr.Column(scale=2):
                alpha = Slider(-ALPHA_LIMIT, ALPHA_LIMIT, step=0.01, value=0.2, elem_id="alpha-slider",
                                  label="α in relative units (0 = no steering; 0.1 adds 10% of the layer's mean residual norm)")
                with gr.Row():
                    raw = gr.Markdown(elem_id="raw-alpha")
                    zero = gr.Button("α = 0", size="sm", min_width=60)
                layer = Slider(0, n_layers - 1, step=1, value=best,
                                  label="Steering layer (default: best steering layer of the precomputed sweep)")
                max_new = Slider(1, MAX_NEW_TOKENS, step=1, value=64, label="Max new tokens", elem_id="max-new-tokens")
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                    greedy = gr.Checkbox(True, label="Greedy (untick to sample: T 0.8, top-p 0.95, same noise in both columns)")
                upload = gr.File(label="Steer with your own direction (optional, .safetensors)", file_types=[".safetensors"],
                                 type="filepath")
        with gr.Row():
            gen_btn = gr.Button("Generate side by side", variant="primary", elem_id="generate-btn")
            dose_btn = gr.Button(f"Dose-response ({DOSE_POINTS} α values, one batched call)")
            stop_btn = gr.Button("Stop", variant="stop")
        with gr.Row(equal_height=True):
            with gr.Column():
                gr.Markdown("### Baseline (α = 0)")
                base_text = gr.Textbox(label="Baseline reply", lines=7, interactive=False, elem_id="baseline-text")
                base_info = gr.Markdown()
                base_heat = gr.HTML()
            with gr.Column():
                gr.Markdown("### Steered")
                steer_text = gr.Textbox(label="Steered reply", lines=7, interactive=False, elem_id="steered-text")
                steer_info = gr.Markdown()
                steer_heat = gr.HTML()
        result_file = gr.File(label="This result (JSON)")
        with gr.Accordion("Dose-response for this prompt", open=True):
            dose_plot = gr.Plot(label="Score vs α", elem_id="dose-plot")
            dose_csv = gr.File(label="Chart data (CSV)")
            dose_table = gr.Dataframe(headers=["α", "raw α", "probe score", "judge P(empathic)", "reply"],
                                      label="Replies", wrap=True, interactive=False)

    @friendly
    def show_raw(key, a, lyr):
        r, norm = svc.raw_alpha(key, a, lyr)
        return f"raw α = {float(a):+.2f} × {norm:.1f} (mean residual norm at layer {int(lyr)}) = **{r:+.1f}**"

    @friendly
    def on_scenario(key, sc):
        return describe_scenario(sc), default_prompt(REGISTRY[svc.check_model(key)].chat, sc)

    @gpu
    @friendly
    def generate(key, sc, pr, a, lyr, n, sd, gr_, up, request: gr.Request = None):
        key = svc.check_model(key)
        cancel = svc.begin(session_id(request))
        probe = svc.probe(key) if not up and svc.has_results(key) else None
        last_emit = 0.0
        for res in svc.stream_steer(key, sc, pr, a, lyr, n, sd, gr_, up, cancel=cancel):
            now = time.perf_counter()
            final = bool(res.scores)
            if not final and now - last_emit < STREAM_EVERY_S:
                continue
            last_emit = now
            center = float(probe.thresholds[res.readout_layer]) if probe is not None else 0.0
            path = svc.write_json({"model": key, "scenario": sc, **res.to_dict()}, "steer") if final else gr.skip()
            yield (res.rows[0].text, res.rows[1].text, _row_info(res, 0, probe), _row_info(res, 1, probe),
                   _heatmap(svc, key, res, 0, center), _heatmap(svc, key, res, 1, center), path)

    @gpu
    @friendly
    def dose(key, sc, pr, a, lyr, n, sd, gr_, up, request: gr.Request = None):
        cancel = svc.begin(session_id(request))
        res = svc.dose_response(key, sc, pr, a, lyr, n, sd, gr_, up, cancel=cancel)
        probe_layer = res.scores[0]["probe_layer"]
        fig = live_dose_figure([r.alpha for r in res.rows], [s["probe_score"] for s in res.scores],
                               [s["judge_probability"] for s in res.scores], probe_layer)
        table = [[round(r.alpha, 3), round(r.raw_alpha, 1), round(s["probe_score"], 2),
                  None if s["judge_probability"] is None else round(s["judge_probability"], 2), r.text]
                 for r, s in zip(res.rows, res.scores)]
        path = svc.write_json({"model": key, "scenario": sc, "kind": "dose_response", **res.to_dict()}, "dose-response")
        return fig, table, path, csv_file(svc, fig, "dose-response")

    controls = [model, scenario, prompt, alpha, layer, max_new, seed, greedy, upload]
    gen_btn.click(generate, controls, [base_text, steer_text, base_info, steer_info, base_heat, steer_heat,
                                                result_file], api_name="steer", **MODEL_EVENT)
    dose_btn.click(dose, controls, [dose_plot, dose_table, result_file, dose_csv], api_name="dose_response",
                             **MODEL_EVENT)
    def stop(request: gr.Request):
        """Sets this session's cancel event: the running generation ends at its next step and still
        shows (and scores) what it wrote, marked "stopped early"."""
        svc.stop(session_id(request))

    stop_btn.click(stop, None, None, api_name="stop", queue=False)
    zero.click(lambda: 0.0, None, alpha, api_name="alpha_zero", api_visibility="undocumented", queue=False)
    alpha.change(show_raw, [model, alpha, layer], raw, api_name="raw_alpha", api_visibility="undocumented",
                 show_progress="hidden")
    layer.change(show_raw, [model, alpha, layer], raw, api_name="raw_alpha_on_layer", api_visibility="undocumented",
                 show_progress="hidden")
    scenario.change(on_scenario, [model, scenario], [desc, prompt], api_name="scenario_info", show_progress="hidden")
    return {"layer": layer, "raw": raw, "alpha": alpha, "scenario": scenario, "prompt": prompt, "show_raw": show_raw,
            "on_scenario": on_scenario}
