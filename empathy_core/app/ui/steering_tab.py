"""Tab 5: the precomputed steering sweep: dose-response, success rates, coherence and a sample browser."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ...core.scenarios import scenarios
from ...errors import UserError
from ...study.report import labels_verdict, steering_goal_rows, steering_verdict, sweep_note, validation_table
from ...study.sweep import Condition
from ..plots import coherence_figure, dose_response_figure, success_figure
from ..service import Service, check_int
from .common import REPLAY_EVENT, csv_file, friendly
from .replay import ALL, choices, need, quietly

OLD_FORMAT_NOTE = ("**This model's committed sweep predates the validated pipeline (issue 11).** Its success rule (a judge "
                   "move of 0.25 and a perplexity check under the steered model) was not checked against the blind "
                   "labels, its random control is not matched and it has no seed-only control, and its Wilson intervals "
                   "count shared baselines as independent. A read of its generations found most counted successes to be "
                   "echo, meta-text or broken text. The rerun with `python -m empathy_core precompute` replaces it; until "
                   "then this tab cannot show the probe beside matched random and seed-only controls.")


def evaluation_table(st: dict, validation: dict | None = None) -> str:
    """Probe vs matched random vs seed-only vs prompting at the chosen alpha, with cluster intervals and the goals
    (the same rows as the README's and the About tab's table, ``report.steering_goal_rows``)."""
    ev = st["evaluation"]
    labelled = labels_verdict(validation, st.get("model_key"))
    out = ([labelled, ""] if labelled else []) + [steering_verdict(ev)]
    out += ["", f"Chosen on the choose-seeds {tuple(ev['settings']['choose_seeds'])}, reported on "
            f"{ev['n_baselines']} other (scenario, seed) baselines (seeds {tuple(ev['settings']['report_seeds'])}).", "",
            "| measure | goal (set for the default model) | this model |", "|---|---|---|"]
    out += [f"| {name} | {goal} | {cell} |" for name, goal, cell in steering_goal_rows(ev)]
    out.append(f"\nSuccess: {ev['success_rule']}. Intervals: cluster bootstrap over (scenario, seed) baselines.")
    return "\n".join(out)


def rates_table(st: dict, validation: dict | None = None) -> str:
    """The success table (new evaluation, or the old rates with a note saying what they are) and the validation table."""
    if "evaluation" in st:
        head = evaluation_table(st, validation)
    else:
        out = [OLD_FORMAT_NOTE, "", "| condition | α > 0: success [95% Wilson CI] | α < 0: success [95% Wilson CI] |",
               "|---|---|---|"]
        for cond in Condition:
            cells = []
            for sign in ("pos", "neg"):
                r = next((r for r in st["rates"] if r["condition"] == cond and r["layer"] == "all" and r["sign"] == sign), None)
                cells.append("—" if r is None else f"{r['rate']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] (n = {r['n']})")
            if cells != ["—", "—"]:
                out.append(f"| {cond.label} | {cells[0]} | {cells[1]} |")
        out.append(f"\nOld success rule: {st['success_rule']}. {st['ci_note']}. Best steering layer "
                   f"{st['best_steering_layer']}: {st['best_steering_layer_rule']}.")
        head = "\n".join(out)
    return head + "\n\n" + validation_table(validation, st.get("model_key"))


def sample_rows(st: dict, scenario: Any, layer: Any, alpha: Any, seed: Any, condition: Any) -> list[list]:
    """The stored generations that pass every filter ("all" or None passes everything), at most 500."""
    try:
        alpha = alpha if alpha in (None, ALL) else float(alpha)
    except ValueError:
        raise UserError(f"α must be a number or 'all', not {alpha!r}.") from None

    def keep(g: dict) -> bool:
        return ((scenario in (None, ALL) or g["scenario"] == scenario)
                and (layer in (None, ALL) or str(g["layer"]) == str(layer))
                and (alpha in (None, ALL) or abs(g["alpha"] - alpha) < 1e-9)
                and (seed in (None, ALL) or str(g["seed"]) == str(seed))
                and (condition in (None, ALL) or g["condition"] == condition))

    return [[g["scenario"], g["layer"], g["alpha"], g["seed"], g["condition"], round(g["judges"]["ensemble"], 2),
             _coherent(g), g["text"]] for g in st["generations"] if keep(g)][:500]


def _coherent(g: dict) -> bool:
    """A stored reply's coherence: the validated gates where the file has them, else the old perplexity check."""
    return bool(g["gates"]["coherent"]) if g.get("gates") else bool(g["coherence"].get("coherent", False))


def build(svc: Service, demo: gr.Blocks, model: gr.Dropdown) -> Any:
    """Lay out the tab and wire its events; returns its step of the model-change chain.

    Longer than 60 lines because it lays out fourteen components and wires their seven events in one
    place, so each event sits beside the components it reads.
    """
    st0 = svc.steering(svc.default_model) or {"settings": {"layers": [], "alphas": [], "seeds": []}, "best_steering_layer": None}
    s0 = st0["settings"]
    scenario_list = [(s.title, s.id) for s in scenarios().values()]
    with gr.Tab("Steering results: replay", id="steering"):
        gr.Markdown("The precomputed sweep: every scenario × layer × α × seed, judged by models other than the steered "
                    "one (a MiniLM embedding classifier and the other bundled model's probe).")
        gr.Markdown(sweep_note(svc.root), elem_id="sweep-version-note")
        with gr.Row():
            sc = gr.Dropdown([("All scenarios", ALL)] + scenario_list, value=ALL, label="Scenario")
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
                f_sc = gr.Dropdown([("All", ALL)] + scenario_list, value=ALL, label="Scenario")
                f_layer = gr.Dropdown(choices(s0["layers"]), value=ALL, label="Layer", allow_custom_value=True)
                f_alpha = gr.Dropdown(choices(s0["alphas"], "{:+g}"), value=ALL, label="α", allow_custom_value=True)
                f_seed = gr.Dropdown(choices(s0["seeds"]), value=ALL, label="Seed", allow_custom_value=True)
                f_cond = gr.Dropdown([("All", ALL)] + [(c.label, c.value) for c in Condition], value=ALL, label="Condition")
            samples_df = gr.Dataframe(headers=["scenario", "layer", "α", "seed", "condition", "judge ensemble", "coherent",
                                               "text"], wrap=True, interactive=False, max_height=420,
                                     elem_id="samples-table", elem_classes=["wrapped-table"],
                                     column_widths=["11%", "8%", "8%", "8%", "12%", "9%", "9%", "35%"])

    @friendly
    def charts(key: str, scenario: Any, layer: Any) -> tuple:
        """Dose-response at one layer (one scenario or all), success rates and coherence."""
        key = svc.check_model(key)
        st = need(svc.steering(key), "steering results", key)
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
        return (f1, f2, f3, rates_table(st, svc.judge_validation()), csv_file(svc, f1, f"dose-{key}"), csv_file(svc, f2, f"success-{key}"),
                csv_file(svc, f3, f"coherence-{key}"), lyr_update)

    @friendly
    def filters(key: str) -> tuple:
        """The sample browser's layer, α and seed choices for the chosen model."""
        s = need(svc.steering(svc.check_model(key)), "steering results", key)["settings"]
        return (gr.update(choices=choices(s["layers"]), value=ALL), gr.update(choices=choices(s["alphas"], "{:+g}"), value=ALL),
                gr.update(choices=choices(s["seeds"]), value=ALL))

    @friendly
    def samples(key: str, scenario: Any, layer: Any, alpha: Any, seed: Any, condition: Any) -> list[list]:
        """The stored generations that pass the filters."""
        return sample_rows(need(svc.steering(svc.check_model(key)), "steering results", key), scenario, layer, alpha, seed,
                           condition)

    def on_model(key: str, scenario: Any, f_scenario: Any) -> tuple:
        """A new model: its best steering layer, its filter choices, its samples."""
        return (*charts(key, scenario, None), *filters(key), samples(key, f_scenario, ALL, ALL, ALL, ALL))

    outs = [dose, success, coh, rates, dose_csv, success_csv, coh_csv, lyr]
    chart_in: dict[str, Any] = {"key": model, "scenario": sc, "layer": lyr}
    sample_in: dict[str, Any] = {"key": model, "scenario": f_sc, "layer": f_layer, "alpha": f_alpha, "seed": f_seed, "condition": f_cond}
    sc.change(charts, inputs_kwargs=chart_in, outputs=outs, api_name="steering_charts", **REPLAY_EVENT)
    lyr.input(charts, inputs_kwargs=chart_in, outputs=outs, api_name="steering_charts_on_layer",
              api_visibility="undocumented", **REPLAY_EVENT)
    for i, f in enumerate((f_sc, f_layer, f_alpha, f_seed, f_cond)):
        f.input(samples, inputs_kwargs=sample_in, outputs=samples_df, api_name="samples" if i == 0 else f"samples_{i}",
                api_visibility="public" if i == 0 else "undocumented", **REPLAY_EVENT)
    hidden: dict[str, Any] = dict(api_visibility="undocumented", **REPLAY_EVENT)
    demo.load(charts, inputs_kwargs=chart_in, outputs=outs, api_name="on_load_steering", **hidden)
    demo.load(filters, inputs_kwargs={"key": model}, outputs=[f_layer, f_alpha, f_seed], api_name="on_load_filters", **hidden)
    demo.load(samples, inputs_kwargs=sample_in, outputs=samples_df, api_name="on_load_samples", **hidden)

    no_choices = gr.update(choices=[("All", ALL)], value=ALL)

    def cleared(note: str) -> tuple:
        return (None, None, None, note, None, None, None, gr.update(choices=[], value=None), no_choices, no_choices,
                no_choices, [])

    def follow(trigger: Any) -> Any:
        return trigger(quietly(on_model, cleared), inputs_kwargs={"key": model, "scenario": sc, "f_scenario": f_sc},
                       outputs=outs + [f_layer, f_alpha, f_seed, samples_df], api_name="steering_on_model", **hidden)

    return follow
