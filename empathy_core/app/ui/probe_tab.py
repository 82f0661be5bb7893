"""Tab 1: score any text with the probe, live, layer by layer and token by token."""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from ..plots import layer_scores_figure, token_heatmap_html
from ..service import MAX_TEXT_CHARS, MAX_TEXT_TOKENS, ScoreResult, Service, examples
from . import fit_panel
from .common import RAW_INPUTS, REPLAY_EVENT, SCORE_EVENT, csv_file, file_path, friendly, gpu

INTRO = (f"Type or pick a reply an agent might write in one of the games. One forward pass projects every layer's "
         f"hidden states on that layer's empathy direction. Up to {MAX_TEXT_TOKENS} tokens.")


def _cannot_judge_lines(v: Any) -> list[str]:
    from ...core.ood import VERDICT_TEXT

    return [f"### Can't judge this: {VERDICT_TEXT.get(v.cannot_judge, v.cannot_judge)}",
            f"Score {v.score:.2f} at layer {v.layer}, but no probability: the probe's can't-judge rule (fitted on the "
            "train and dev splits) says this text is too short, or too far from the texts the probe was fitted on "
            "(Mahalanobis distance of its activations), for the probe's reading to mean anything."]


def trust_line(det: dict, layer: int) -> str:
    """The "how much to trust it" line: the detection probe's test AUROC at the layer, the random control,
    and the text-only baseline with its number (all read from detection.json)."""
    curve = det.get("default_curve")
    rows = curve or det.get("layers") or []
    if not 0 <= layer < len(rows):
        return "How much to trust it: there are no detection results for this layer."
    row = rows[layer]
    name = f"the default probe ({det['default']['method']}, {det['default']['pooling']} pooling)" if curve else "the probe"
    lo, hi = row["auroc_test_ci"]
    line = f"How much to trust it: at this layer {name} reaches test AUROC {row['auroc_test']:.2f} [{lo:.2f}, {hi:.2f}]"
    rand = det["layers"][layer].get("random_auroc_p95") if layer < len(det.get("layers") or []) else None
    if rand is not None:
        line += f"; random directions reach {rand:.2f} (95th percentile)"
    tf = det.get("baselines", {}).get("tfidf_logreg")
    if tf:
        tlo, thi = tf["test_auroc_ci"]
        verdict = "beats" if row["auroc_test"] > thi else ("is below" if row["auroc_test"] < tlo else "is level with")
        line += (f". A TF-IDF bag-of-words baseline (no language model at all) reaches {tf['test_auroc']:.2f} "
                 f"[{tlo:.2f}, {thi:.2f}] on the same test pairs: the probe {verdict} it")
    return line + ". A hint, not a measurement of empathy."


def verdict_markdown(svc: Service, r: ScoreResult) -> str:
    v = r.verdict
    lines = []
    if v.cannot_judge:
        lines += _cannot_judge_lines(v)
    elif v.probability is not None:
        lines.append(f"### {'Empathic' if v.label == 'empathic' else 'Task-focused'}: P(empathic) = {v.probability:.2f}")
        where = ("the layer you scored at; your file's calibration" if v.uploaded else
                 f"the default probe's layer, {v.method} chosen on the dev split only" if v.method else
                 "this app's default layer, the best by dev-split AUROC in the precomputed detection run")
        lines.append(f"Score **{v.score:.2f}** at layer {v.layer} ({where}). "
                     f"P is a Platt calibration of that score fitted on the dev split"
                     + (f"; the plain threshold (midpoint of the train class means) is {v.threshold:.2f}."
                        if v.threshold is not None else "."))
    else:
        lines.append(f"### Score {v.score:.2f} at layer {v.layer}")
        lines.append("Your uploaded direction has no calibration, so there is no probability or verdict.")
    if v.uploaded:
        lines.append("Scored with **your uploaded file**, not this app's probe; the replayed AUROCs do not describe it.")
    det = svc.detection(r.model)
    if not v.uploaded and svc.fit_note(r.model):
        lines.append(f"The probe was {svc.fit_note(r.model)} (no precomputed probe for this model).")
    if det and r.best_layer is not None and not v.uploaded:
        lines.append(trust_line(det, r.best_layer))
    lines.append(f"*{r.model}, {len(r.tokens)} tokens, {r.seconds * 1000:.0f} ms.*")
    return "\n\n".join(lines)


def chart_title(svc: Service, key: str, uploaded: bool) -> str:
    """The score chart's title; it says when the probe was fitted on this machine."""
    fitted = "" if uploaded else svc.fit_note(key)
    return f"Probe score by layer ({key}{'; probe ' + fitted if fitted else ''})"


def layer_update(svc: Service, key: str) -> Any:
    """The heatmap layer's range and default for the chosen model (from its results, or once it has loaded)."""
    i = svc.model_info(key)
    if i.get("n_layers") is None:  # not loaded and no results: the range follows once it has loaded
        return gr.skip()
    return gr.update(maximum=i["n_layers"] - 1, value=i["best_layer"])


def build(svc: Service, model: gr.Dropdown, info: dict) -> Any:
    """Lay out the tab and wire its events; returns its step of the model-change chain."""
    n_layers = info.get("n_layers", 32)
    best = info.get("best_layer", n_layers // 2)
    with gr.Tab("Probe: live scoring", id="probe"):
        gr.Markdown(INTRO)
        panel = fit_panel.build(svc, model, "probe")
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="Text to score", lines=4, max_length=MAX_TEXT_CHARS, elem_id="probe-text",
                                  placeholder="e.g. I stopped at the door and asked if they were okay before finishing.")
                ex = examples()
                gr.Examples(examples=[[t] for _, _, t in ex], inputs=[text],
                            example_labels=[f"{title} · {label}" for title, label, _ in ex], label="Examples (test split)")
            with gr.Column(scale=2):
                layer = gr.Slider(0, n_layers - 1, step=1, value=best, label="Heatmap layer")
                upload = gr.File(label="Your own direction or probe (optional, .safetensors)", file_types=[".safetensors"],
                                 type="filepath")
                go_btn = gr.Button("Score", variant="primary")
        verdict = gr.Markdown(elem_id="probe-verdict")
        with gr.Row():
            with gr.Column():
                # Hidden until the first score: empty boxes would only lengthen the page.
                chart = gr.Plot(label="Score by layer", elem_id="probe-chart", visible=False)
                chart_csv = gr.File(label="Chart data (CSV)", visible=False)
            with gr.Column():
                gr.Markdown("**Token by token** at the chosen layer: each token's projection, relative to the probe's "
                            "threshold at that layer.")
                heat = gr.HTML(elem_id="probe-heatmap")

    @gpu
    @friendly
    def score(key: str, text: str, layer: Any, upload: Any) -> tuple:
        """Score one text with the probe (or an uploaded direction) at every layer."""
        path = file_path(upload)
        r = svc.score(key, text, layer, path)
        fig = layer_scores_figure(r.per_layer, r.best_layer, title=chart_title(svc, r.model, bool(path)),
                                  thresholds=r.thresholds if not path else None)
        html = f"<div><b>Layer {r.layer}</b></div>" + token_heatmap_html(r.tokens, r.token_scores, center=r.threshold)
        return verdict_markdown(svc, r), fig, html, csv_file(svc, fig, "probe-scores")

    args = dict(fn=score, inputs_kwargs={"key": model, "text": text, "layer": layer, "upload": upload},
                outputs=[verdict, chart, heat, chart_csv], **RAW_INPUTS, **SCORE_EVENT)
    # The chart and its CSV stay hidden until the first score; the API itself returns plain values.
    shown: dict[str, Any] = dict(fn=lambda: (gr.update(visible=True),) * 2, inputs=None, outputs=[chart, chart_csv],
                                 api_visibility="undocumented", queue=False, show_progress="hidden")
    go_btn.click(api_name="score", **args).success(api_name="score_show", **shown)
    text.submit(api_name="score_on_enter", api_visibility="undocumented", **args).success(api_name="score_show_on_enter",
                                                                                           **shown)

    on_model = friendly(functools.partial(layer_update, svc))

    panel.wire(svc, model, "fit_probe", dict(fn=on_model, inputs_kwargs={"key": model}, outputs=layer, api_name="probe_layout_after_fit"))

    def follow(trigger: Any, api_name: str) -> Any:
        return panel.follow(svc, model, trigger(on_model, inputs_kwargs={"key": model}, outputs=layer, api_name=api_name,
                                                api_visibility="undocumented", **REPLAY_EVENT), f"{api_name}_fit_note")

    return follow
