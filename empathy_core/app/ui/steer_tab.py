"""Tab 2: the steering playground: baseline and steered replies side by side, streamed.

α's path: the α slider here -> ``generate(alpha=...)`` -> ``Service.stream_steer`` (checks it and
builds a ``GenerationRequest``) -> ``core.generation`` -> ``core.steering.steer``, whose hook adds
α · v to the block's output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from ...core.generation import MAX_NEW_TOKENS, Row, RowScore, SideBySide
from ...core.probes import Probe
from ..inputs import CONTENT_NOTE, POSITION_CHOICES, SENSITIVE_SCENARIOS, check_scenario, first_scenario, scenario_note
from ..plots import live_dose_figure, token_heatmap_html
from ..service import ALPHA_LIMIT, DOSE_POINTS, MAX_SEED, Service, default_prompt, describe_scenario, scenario_choices
from .common import MODEL_EVENT, RAW_INPUTS, REPLAY_EVENT, csv_file, file_path, friendly, gpu, session_id

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


def _row_info(res: SideBySide, b: int, probe: Probe | None = None) -> str:
    row: Row = res.rows[b]
    head = f"α = {row.alpha:+.2f} (raw {row.raw_alpha:+.1f}) · {len(row.token_ids)} tokens · {res.seconds:.1f} s"
    if not res.scores:
        return head + (" · stopped" if res.stopped else " · generating…")
    s: RowScore = res.scores[b]
    parts = [head, f"**Probe score** (layer {s.probe_layer}, whole reply): {s.probe_score:.2f}"]
    if probe is not None:
        parts[-1] += f", P(empathic) = {probe.probability(s.probe_score, s.probe_layer):.2f}"
    if s.judge_probability is not None:
        parts.append(f"**Judge** (MiniLM embedding classifier, not the steered model): P(empathic) = "
                     f"{s.judge_probability:.2f}")
    if s.gates is not None:
        parts.append(gates_line(s.gates))
    if res.stopped:
        parts.append("stopped early")
    return " · ".join(parts[:1]) + "  \n" + "  \n".join(parts[1:])


def gates_line(g: dict) -> str:
    """The gate verdicts of one reply, in words (thresholds fitted on the blind labels' train part)."""
    def mark(ok: bool | None) -> str:
        return "not checked" if ok is None else ("yes" if ok else "**no**")

    ppl = ("" if g["fluent"] is not None else
           f" (perplexity not checked: the reference model {g['reference_model']} is not loaded)")
    return (f"**Gates** (fitted on blind labels): coherent {mark(g['coherent'])}{ppl} · on topic {mark(g['on_topic'])} · "
            f"echo or meta {'**yes**' if g['echo'] else 'no'}")


class SteerTab:
    """The Steer tab: its components, its handlers (named inputs) and its events."""

    def __init__(self, svc: Service, demo: gr.Blocks, model: gr.Dropdown, info: dict, classroom: bool = False) -> None:
        self.svc, self.model, self.classroom = svc, model, classroom
        self._layout(info)
        self._wire(demo)

    def _layout(self, info: dict) -> None:
        n_layers = info.get("n_layers", 32)
        best = info.get("best_steering_layer", n_layers // 2)
        first = first_scenario(self.classroom)
        with gr.Tab("Steer: playground", id="steer"):
            gr.Markdown(CONTENT_NOTE, elem_id="steer-content-note", elem_classes=["content-note"])
            with gr.Row():
                with gr.Column(scale=3):
                    self.scenario = gr.Dropdown(scenario_choices(self.classroom), value=first, label="Scenario",
                                                elem_id="scenario-select")
                    self.show_sensitive = gr.Checkbox(False, visible=self.classroom, elem_id="show-sensitive",
                                                      label="Classroom mode: show the prompts of The Listener and The "
                                                            "Protector (read their content note first)")
                    self.note = gr.Markdown(scenario_note(first), visible=bool(scenario_note(first)),
                                            elem_id="scenario-note", elem_classes=["content-note"])
                    self.prompt = gr.Textbox(label="Prompt (editable; the scenario's system message is added for chat models)",
                                        lines=3, max_length=20_000, value=self._prompt_for(info.get("is_chat", True), first, False))
                    # The buttons sit under the prompt, so the first screen at 1280x800 shows them.
                    with gr.Row():
                        self.gen_btn = gr.Button("Generate side by side", variant="primary", elem_id="generate-btn")
                        self.dose_btn = gr.Button(f"Dose-response ({DOSE_POINTS} α values)")
                        self.stop_btn = gr.Button("Stop", variant="stop", min_width=80)
                    with gr.Accordion("About this scenario", open=False):
                        self.desc = gr.Markdown(describe_scenario(first), elem_id="scenario-desc")
                with gr.Column(scale=2):
                    self.alpha = gr.Slider(-ALPHA_LIMIT, ALPHA_LIMIT, step=0.01, value=info.get("default_alpha", 0.2),
                                           elem_id="alpha-slider",
                                      label="α in relative units (0 = no steering; 0.1 adds 10% of the layer's mean residual norm)")
                    with gr.Row():
                        self.raw = gr.Markdown(elem_id="raw-alpha")
                        self.zero = gr.Button("α = 0", size="sm", min_width=60)
                    self.layer = gr.Slider(0, n_layers - 1, step=1, value=best, elem_id="steer-layer",
                                      label=f"Steering layer (default: {info.get('steering_layer_source', 'the middle layer')})")
                    self.max_new = gr.Slider(1, MAX_NEW_TOKENS, step=1, value=64, label="Max new tokens", elem_id="max-new-tokens")
                    with gr.Row():
                        self.seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        self.greedy = gr.Checkbox(True, label="Greedy (untick to sample: T 0.8, top-p 0.95, same noise in both columns)")
                    with gr.Accordion("Advanced settings", open=False):
                        self.upload = gr.File(label="Steer with your own direction (optional, .safetensors)",
                                              file_types=[".safetensors"], type="filepath")
                        self.positions = gr.Radio(POSITION_CHOICES, value="all", label="Add the direction at",
                                             info="Every position (as in the study), only the prompt's positions, or only "
                                                  "the tokens the model generates.", elem_id="steer-positions")
            self._outputs_layout()

    def _outputs_layout(self) -> None:
        """The two reply columns, the result file and the dose-response box (empty ones stay hidden or collapsed)."""
        gr.Markdown("Generate adds α × (empathy direction) to the residual stream at one layer while the model writes. "
                    "The baseline (α = 0) and the steered reply come from **one batched call** with the same prompt, "
                    "seed and noise, so α is the only difference between the two columns.")
        with gr.Row(equal_height=True):
            with gr.Column():
                gr.Markdown("### Baseline (α = 0)")
                self.base_text = gr.Textbox(label="Baseline reply", lines=7, interactive=False, elem_id="baseline-text")
                self.base_info = gr.Markdown()
                self.base_heat = gr.HTML()
            with gr.Column():
                gr.Markdown("### Steered")
                self.steer_text = gr.Textbox(label="Steered reply", lines=7, interactive=False, elem_id="steered-text")
                self.steer_info = gr.Markdown()
                self.steer_heat = gr.HTML()
        self.result_file = gr.File(label="This result (JSON)", visible=False, elem_id="steer-result-file")
        # Collapsed and empty until a dose-response has run: empty boxes would only lengthen the page.
        with gr.Accordion("Dose-response for this prompt (press Dose-response to fill it)", open=False,
                          elem_id="dose-accordion") as self.dose_box:
            self.dose_plot = gr.Plot(label="Score vs α", elem_id="dose-plot", visible=False)
            self.dose_csv = gr.File(label="Chart data (CSV)", visible=False)
            self.dose_table = gr.Dataframe(headers=["α", "raw α", "probe score", "judge P(empathic)", "reply"],
                                           label="Replies", wrap=True, interactive=False, visible=False,
                                           column_widths=["7%", "8%", "11%", "17%", "57%"])

    # ------------------------------------------------------------------ handlers (named inputs)
    def show_raw(self, key: str, alpha: Any, layer: Any) -> str:
        """The steering α in raw units at the chosen layer."""
        r, norm = self.svc.raw_alpha(key, alpha, layer)
        return f"raw α = {float(alpha):+.2f} × {norm:.1f} (mean residual norm at layer {int(layer)}) = **{r:+.1f}**"

    def _prompt_for(self, is_chat: bool, scenario: str, show_sensitive: Any) -> str:
        """The scenario's default prompt; in classroom mode a sensitive scenario's prompt stays behind its note."""
        if self.classroom and scenario in SENSITIVE_SCENARIOS and not show_sensitive:
            return ""
        return default_prompt(is_chat, scenario)

    def on_scenario(self, key: str, scenario: str, show_sensitive: Any = False) -> tuple:
        """The scenario's content note (if any), description and default prompt in the chosen model's style."""
        key = self.svc.check_model(key)
        check_scenario(scenario)
        note = scenario_note(scenario)
        if self.classroom and scenario in SENSITIVE_SCENARIOS and not show_sensitive:
            note += ("  \n*Classroom mode: its prompt is not loaded. Tick \"show the prompts of The Listener and The "
                     "Protector\" above to load it.*")
        return (gr.update(value=note, visible=bool(note)), describe_scenario(scenario),
                self._prompt_for(self.svc.is_chat(key), scenario, show_sensitive))

    def generate(self, key: str, scenario: str, prompt: str, alpha: Any, layer: Any, max_new_tokens: Any, seed: Any,
                 greedy: Any, upload: Any, request: gr.Request = None) -> Iterator[tuple]:  # type: ignore[assignment]
        """Baseline and steered replies, streamed; the final update adds their scores and a JSON file."""
        svc = self.svc
        key = svc.check_model(key)
        session = session_id(request)
        cancel = svc.begin(session)
        path = file_path(upload)
        probe = svc.probe(key) if not path and svc.has_results(key) else None
        last_emit = 0.0
        for res in svc.stream_steer(key, scenario, prompt, alpha, layer, max_new_tokens, seed, greedy, path,
                                    positions=svc.positions(session), cancel=cancel):
            now = time.perf_counter()
            final = bool(res.scores)
            if not final and now - last_emit < STREAM_EVERY_S:
                continue
            last_emit = now
            center = float(probe.thresholds[res.readout_layer]) if probe is not None else 0.0
            out = svc.write_json({"model": key, "scenario": scenario, **res.to_dict()}, "steer") if final else gr.skip()
            yield (res.rows[0].text, res.rows[1].text, _row_info(res, 0, probe), _row_info(res, 1, probe),
                   _heatmap(svc, key, res, 0, center), _heatmap(svc, key, res, 1, center), out)

    def dose(self, key: str, scenario: str, prompt: str, alpha: Any, layer: Any, max_new_tokens: Any, seed: Any,
             greedy: Any, upload: Any, request: gr.Request = None) -> tuple:  # type: ignore[assignment]
        """Seven alphas from -|α| to +|α| in one batched call, scored by the probe and the judge."""
        svc = self.svc
        session = session_id(request)
        cancel = svc.begin(session)
        res = svc.dose_response(key, scenario, prompt, alpha, layer, max_new_tokens, seed, greedy, file_path(upload),
                                positions=svc.positions(session), cancel=cancel)
        probe_layer = res.scores[0].probe_layer
        fig = live_dose_figure([r.alpha for r in res.rows], [s.probe_score for s in res.scores],
                               [s.judge_probability for s in res.scores], probe_layer,
                               incoherent=[bool(s.gates and not s.gates["coherent"]) for s in res.scores])
        table = [[round(r.alpha, 3), round(r.raw_alpha, 1), round(s.probe_score, 2),
                  None if s.judge_probability is None else round(s.judge_probability, 2), r.text]
                 for r, s in zip(res.rows, res.scores)]
        path = svc.write_json({"model": key, "scenario": scenario, "kind": "dose_response", **res.to_dict()}, "dose-response")
        return fig, table, path, csv_file(svc, fig, "dose-response")

    def stop(self, request: gr.Request) -> None:
        """Sets this session's cancel event: the running generation ends at its next step and still
        shows (and scores) what it wrote, marked "stopped early"."""
        self.svc.stop(session_id(request))

    def remember_positions(self, positions: Any, request: gr.Request = None) -> None:  # type: ignore[assignment]
        """The advanced setting applies to this visitor's next generations (the /steer API keeps its inputs)."""
        self.svc.set_positions(session_id(request), positions)

    def on_model(self, key: str, scenario: str, show_sensitive: Any = False) -> tuple:
        """The steering layer's range and default, the model's default α (where its evaluation chose one; otherwise
        the visitor's α stays), and the prompt in the chosen model's style."""
        i = self.svc.model_info(key)
        text = self._prompt_for(i["is_chat"], scenario, show_sensitive)
        alpha = gr.update(value=i["default_alpha"]) if "default_alpha" in i else gr.skip()
        if i.get("n_layers") is None:  # not loaded and no results: the range follows once it has loaded
            return gr.skip(), alpha, text
        return gr.update(maximum=i["n_layers"] - 1, value=i["best_steering_layer"],
                         label=f"Steering layer (default: {i.get('steering_layer_source', 'the middle layer')})"), alpha, text

    # ------------------------------------------------------------------ events
    def _wire(self, demo: gr.Blocks) -> None:
        controls: dict[str, Any] = {"key": self.model, "scenario": self.scenario, "prompt": self.prompt, "alpha": self.alpha,
                                    "layer": self.layer, "max_new_tokens": self.max_new, "seed": self.seed,
                                    "greedy": self.greedy, "upload": self.upload}
        # Outputs stay hidden until they have content; the API itself returns plain values.
        quiet: dict[str, Any] = {"api_visibility": "undocumented", "queue": False, "show_progress": "hidden"}

        def show() -> Any:
            return gr.update(visible=True)

        self.gen_btn.click(gpu(friendly(self.generate)), inputs_kwargs=controls,
                           outputs=[self.base_text, self.steer_text, self.base_info, self.steer_info, self.base_heat,
                                    self.steer_heat, self.result_file], api_name="steer", **RAW_INPUTS, **MODEL_EVENT).success(
            show, None, self.result_file, api_name="steer_show", **quiet)
        self.dose_btn.click(gpu(friendly(self.dose)), inputs_kwargs=controls,
                            outputs=[self.dose_plot, self.dose_table, self.result_file, self.dose_csv],
                            api_name="dose_response", **RAW_INPUTS, **MODEL_EVENT).success(
            lambda: (gr.update(open=True),) + (gr.update(visible=True),) * 4, None,
            [self.dose_box, self.dose_plot, self.dose_table, self.result_file, self.dose_csv], api_name="dose_show", **quiet)
        self.stop_btn.click(self.stop, None, None, api_name="stop", queue=False)
        self.positions.change(friendly(self.remember_positions), inputs_kwargs={"positions": self.positions}, outputs=None,
                              api_name="steer_positions", api_visibility="undocumented", queue=False)
        self.zero.click(lambda: 0.0, None, self.alpha, api_name="alpha_zero", api_visibility="undocumented", queue=False)
        raw_io: dict[str, Any] = dict(inputs_kwargs={"key": self.model, "alpha": self.alpha, "layer": self.layer},
                                      outputs=self.raw, show_progress="hidden", api_visibility="undocumented", **RAW_INPUTS)
        show_raw = friendly(self.show_raw)
        self.alpha.change(show_raw, api_name="raw_alpha", **raw_io)
        self.layer.change(show_raw, api_name="raw_alpha_on_layer", **raw_io)
        demo.load(show_raw, api_name="on_load_raw_alpha", **raw_io, **REPLAY_EVENT)
        scenario_io: dict[str, Any] = dict(inputs_kwargs={"key": self.model, "scenario": self.scenario,
                                                          "show_sensitive": self.show_sensitive},
                                           outputs=[self.note, self.desc, self.prompt], show_progress="hidden")
        self.scenario.change(friendly(self.on_scenario), api_name="scenario_info", **scenario_io)
        self.show_sensitive.change(friendly(self.on_scenario), api_name="scenario_info_sensitive",
                                   api_visibility="undocumented", **scenario_io)

    def follow(self, trigger: Any, api_name: str) -> Any:
        """This tab's step of the model-change chain."""
        return trigger(friendly(self.on_model), inputs_kwargs={"key": self.model, "scenario": self.scenario,
                                                               "show_sensitive": self.show_sensitive},
                       outputs=[self.layer, self.alpha, self.prompt], api_name=api_name, api_visibility="undocumented",
                       **REPLAY_EVENT)


def build(svc: Service, demo: gr.Blocks, model: gr.Dropdown, info: dict, classroom: bool = False) -> Any:
    """Lay out the tab and wire its events; returns its step of the model-change chain.

    ``classroom``: open on a gentle scenario and keep the two sensitive scenarios' prompts behind their note."""
    return SteerTab(svc, demo, model, info, classroom).follow
