"""Plotly figures drawn from precomputed JSON (no model, no gradio).

Every figure has an explicit height, uses the Okabe-Ito colour-blind-safe palette, and
never carries meaning by colour alone: series also differ in dash pattern and marker
symbol, and are named in the legend. ``figure_csv`` turns any figure's data into CSV.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..study.sweep import Condition

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down"]
HEIGHT = 420


def _wrap(label: str, width: int = 14) -> str:
    """A tick label broken into lines of about ``width`` characters (``<br>``), so it never needs rotating."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def _style(i: int) -> dict:
    return {"line": {"color": OKABE_ITO[i % 8], "dash": DASHES[i % 6]}, "marker": {"symbol": SYMBOLS[i % 8], "size": 7}}


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = HEIGHT, legend_rows: int = 2) -> go.Figure:
    """Title, axis titles, explicit height; the title sits below the page's label badge, and the legend
    above the plot area, under the title.

    A legend below the plot collides with rotated or wrapped tick labels at narrow widths; above
    the plot it only needs the top margin, which grows with ``legend_rows``. Axes and the title
    use automargin, so nothing is clipped at 1024 px. No template is fixed here beyond the light
    default: the page swaps in a dark one in the dark theme (``THEME_JS``)."""
    top = 72 + 24 * legend_rows  # the page's label badge (about 40 px), the title, then the legend rows
    fig.update_layout(title={"text": title, "x": 0.01, "xanchor": "left", "y": 1, "yanchor": "top", "yref": "container",
                             "pad": {"t": 44}, "font": {"size": 15}, "automargin": False},
                      xaxis_title=x, yaxis_title=y, height=height + 24 * legend_rows, template="plotly_white",
                      legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom",
                              "font": {"size": 11}},
                      margin={"l": 60, "r": 20, "t": top, "b": 50, "autoexpand": True})
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _band(x: Sequence[float], lo: Sequence[float], hi: Sequence[float], name: str, color: str,
          visible: bool | str = True) -> list[go.Scatter]:
    return [go.Scatter(x=list(x), y=list(hi), mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip",
                       name=f"{name} upper", legendgroup=name, visible=visible),
            go.Scatter(x=list(x), y=list(lo), mode="lines", line={"width": 0}, fill="tonexty", fillcolor=color,
                       name=name, hoverinfo="skip", legendgroup=name, visible=visible)]


METHOD_NAMES = {"mean_diff": "mean difference of the class means", "logistic": "logistic regression", "pca": "PCA",
                "whitened": "whitened mean difference (shrinkage LDA)"}


def method_name(method: str) -> str:
    """'erased_whitened_k8' -> 'whitened mean difference (shrinkage LDA), 8 confound directions erased'."""
    if method.startswith("erased_"):
        base, k = method[len("erased_"):].rsplit("_k", 1)
        return f"{METHOD_NAMES.get(base, base)}, {k} confound directions erased"
    return METHOD_NAMES.get(method, method)


def probe_label(detection: dict) -> str:
    """The default probe's name from detection.json, and whether it is the study's method (mean difference)."""
    d = detection.get("default") or detection.get("settings", {})
    method = d.get("method", "mean_diff")
    name = f"default probe: {method_name(method)}, {d.get('pooling', 'mean')} pooling"
    return name + (" (the study's method too)" if method == "mean_diff" and d.get("pooling", "mean") == "mean" else "")


def baselines(detection: dict) -> list[tuple[str, float]]:
    """Text-only baselines of detection.json (``baselines``), as (name, test AUROC); [] when it has none.

    Accepts ``{name: auroc}``, ``{name: {"auroc_test": ...}}`` or ``[{"name": ..., "auroc_test": ...}]``."""
    raw = detection.get("baselines") or {}
    items = raw.items() if isinstance(raw, dict) else [(b.get("name", f"baseline {i}"), b) for i, b in enumerate(raw)]
    out = []
    for name, b in items:
        v = b if isinstance(b, (int, float)) else (b.get("test_auroc", b.get("auroc_test", b.get("auroc")))
                                                   if isinstance(b, dict) else None)
        if isinstance(v, (int, float)) and np.isfinite(v):
            out.append((str(b.get("label", b.get("name", name))) if isinstance(b, dict) else str(name), float(v)))
    return out


def layer_auroc_figure(detection: dict, reference: dict | None = None, show_reference: bool = False) -> go.Figure:
    """Per-layer test AUROC of the default (dev-chosen) probe and of the study's mean difference side by side,
    each with its bootstrap CI, the random-direction band and the text-only baselines (horizontal lines).
    Leave-one-scenario-out, lexical, confound and accuracy curves of the study's probe are one click away in the
    legend (``legendonly``). Cohen's d, on another scale, has its own chart (``cohens_d_figure``)."""
    rows = detection["layers"]
    x = [r["layer"] for r in rows]
    curve = detection.get("default_curve")
    fig = go.Figure()
    study_name = "the study's method: mean difference of the class means, mean pooling"
    if curve:
        for t in _band(x, [r["auroc_test_ci"][0] for r in curve], [r["auroc_test_ci"][1] for r in curve],
                       "default probe: 95% CI (bootstrap over pairs)", "rgba(0,114,178,0.18)"):
            fig.add_trace(t)
    for t in _band(x, [r["auroc_test_ci"][0] for r in rows], [r["auroc_test_ci"][1] for r in rows],
                   "study's method: 95% CI" if curve else "95% CI (bootstrap over pairs)",
                   "rgba(230,159,0,0.15)" if curve else "rgba(0,114,178,0.18)"):
        fig.add_trace(t)
    for t in _band(x, [r["random_auroc_mean"] for r in rows], [r["random_auroc_p95"] for r in rows],
                   "random directions: mean to 95th percentile", "rgba(120,120,120,0.25)"):
        fig.add_trace(t)
    if curve:
        fig.add_trace(go.Scatter(x=x, y=[r["auroc_test"] for r in curve], name=probe_label(detection), mode="lines+markers",
                                 **_style(0)))
        fig.add_trace(go.Scatter(x=x, y=[r["auroc_test"] for r in rows], name=study_name, mode="lines+markers", **_style(1)))
    else:
        fig.add_trace(go.Scatter(x=x, y=[r["auroc_test"] for r in rows], name=probe_label(detection), mode="lines+markers",
                                 **_style(0)))
    for i, (name, v) in enumerate(baselines(detection)):
        fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[v, v], mode="lines", name=f"text-only baseline: {name} ({v:.2f})",
                                 line={"color": OKABE_ITO[(i + 2) % 8], "dash": DASHES[(i + 3) % 6], "width": 2}))
    series = [("leave-one-scenario-out AUROC", "loso_auroc_mean"), ("lexically controlled AUROC", "lexical_auroc_test"),
              ("confound controls AUROC (0.5 = tone-blind)", "confound_auroc"),
              ("test accuracy (train midpoint threshold)", "accuracy_test")]
    for i, (name, key) in enumerate(series):
        fig.add_trace(go.Scatter(x=x, y=[r[key] for r in rows], name=f"study's method: {name}" if curve else name,
                                 mode="lines+markers", visible="legendonly", **_style(i + 3)))
    if show_reference and reference:
        for i, (model, ref) in enumerate(reference["test_auroc_by_layer"].items()):
            pts = sorted((int(k), v) for k, v in ref["auroc"].items())
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers+lines",
                                     name=f"{model}: reported by the original study", line={"color": "#999999", "dash": "dot"},
                                     marker={"symbol": SYMBOLS[(i + 3) % 8], "size": 9, "color": "#999999"}))
    best = detection["default"]["layer"] if curve else detection["best_layer"]
    # The marker's label sits below the plot area, where no curve runs, and never on a curve's label.
    fig.add_vline(x=best, line={"color": "#777777", "dash": "dash", "width": 1})
    fig.add_annotation(x=best, y=0, yref="paper", yanchor="bottom", yshift=4, showarrow=False, xanchor="left", xshift=4,
                       text=f"default layer {best} ({'chosen on dev only' if curve else 'best dev-split AUROC'})",
                       font={"size": 11})
    _layout(fig, f"Detection by layer: {detection['model_key']}", "layer (output of decoder block, 0-based)", "test AUROC",
            legend_rows=7 if curve else 4)
    fig.update_layout(yaxis={"range": [0, 1.02]})
    return fig


AXIS_ORDER = ("sentiment", "politeness", "length", "enthusiasm")


def confound_axes_figure(detection: dict) -> go.Figure | None:
    """Per-axis confound AUROC (high vs low tone, held-back part) with bootstrap CIs, for the default probe, the
    study's mean difference and the text-only baselines; 0.5 is tone-blind, the goal band [0.40, 0.60] is shaded."""
    reports = detection.get("reports") or {}
    cands: list[tuple[str, dict | None]] = [(probe_label(detection), reports.get("default")),
                                            ("study's method: mean difference", reports.get("study_mean_diff"))]
    cands += [(f"text-only: {b.get('name', k)}", b) for k, b in (detection.get("baselines") or {}).items()]
    entries: list[tuple[str, dict]] = [(n, r) for n, r in cands if r and "confound_heldout" in r]
    if not entries:
        return None
    fig = go.Figure()
    fig.add_hrect(y0=0.4, y1=0.6, fillcolor="rgba(0,158,115,0.12)", line_width=0)
    fig.add_hline(y=0.5, line={"color": "#777777", "dash": "dot", "width": 1})
    for i, (name, r) in enumerate(entries):
        ch = r["confound_heldout"]
        y = [ch[a]["auroc"] for a in AXIS_ORDER]
        fig.add_trace(go.Bar(x=[_wrap(a) for a in AXIS_ORDER], y=y, name=name, marker_color=OKABE_ITO[i % 8],
                             marker_pattern_shape=["", "/", "x", "."][i % 4],
                             error_y={"type": "data", "symmetric": False,
                                      "array": [ch[a]["ci"][1] - v for a, v in zip(AXIS_ORDER, y)],
                                      "arrayminus": [v - ch[a]["ci"][0] for a, v in zip(AXIS_ORDER, y)]}))
    n = entries[0][1]["confound_heldout"][AXIS_ORDER[0]].get("n_items")
    _layout(fig, "Confound AUROC per axis (0.5 = tone-blind)", f"axis (held-back part{f', {n} items each' if n else ''}; "
                 "shaded: goal band)", "AUROC high vs low", height=340, legend_rows=4)
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.02]})
    return fig


def cohens_d_figure(detection: dict) -> go.Figure:
    """Cohen's d (test split) by layer, on its own zero-based axis."""
    rows = detection["layers"]
    fig = go.Figure(go.Scatter(x=[r["layer"] for r in rows], y=[r["cohens_d_test"] for r in rows], mode="lines+markers",
                               name="Cohen's d of the probe scores (test split)", **_style(5)))
    fig.add_hline(y=0, line={"color": "#777777", "width": 1})
    _layout(fig, "Separation by layer (Cohen's d)", "layer", "Cohen's d", height=300, legend_rows=1)
    return fig


def depth_figure(cross_model: dict, reference: dict | None = None, show_reference: bool = True) -> go.Figure:
    """Test AUROC against relative depth (layer / number of layers) for every model with results."""
    fig = go.Figure()
    for i, (key, m) in enumerate(cross_model["auroc_by_relative_depth"].items()):
        pts = m["by_depth"]
        fig.add_trace(go.Scatter(x=[p["relative_depth"] for p in pts], y=[p["auroc_test"] for p in pts], name=f"{key} (ours)",
                                 mode="lines+markers", **_style(i)))
    if show_reference and reference:
        for i, (model, ref) in enumerate(reference["test_auroc_by_layer"].items()):
            pts = sorted((int(k), v) for k, v in ref["auroc"].items())
            fig.add_trace(go.Scatter(x=[(k + 1) / ref["n_layers"] for k, _ in pts], y=[v for _, v in pts], mode="markers+lines",
                                     name=f"{model} (reported by the original study)",
                                     line={"color": "#999999", "dash": DASHES[(i + 2) % 6]},
                                     marker={"symbol": SYMBOLS[(i + 4) % 8], "size": 9, "color": "#999999"}))
    fig.add_hline(y=0.5, line={"color": "#555555", "dash": "dot"}, annotation_text="chance")
    _layout(fig, "Detection AUROC by relative depth", "relative depth ((layer + 1) / number of layers)", "test AUROC",
            legend_rows=3)
    fig.update_layout(yaxis={"range": [0.3, 1.02]}, xaxis={"range": [0, 1.02]})
    return fig


def standardise(v: Sequence[float] | np.ndarray) -> np.ndarray:
    """z-scores: (v - mean) / SD (SD 1 where the values are constant)."""
    a = np.asarray(v, dtype=float)
    sd = float(a.std())
    return (a - a.mean()) / (sd if sd > 0 else 1.0)


def agreement_figure(cross_model: dict) -> go.Figure:
    """The two models' best-layer probe scores on the same generated texts, each standardised per
    model (z-scores), so that scales as different as Gemma's and SmolLM2's share one plot; the
    Pearson and Spearman correlations (unchanged by standardising) are printed in the legend and title."""
    fig = go.Figure()
    parts = []
    for i, a in enumerate(cross_model.get("score_agreement", [])):
        pts = np.array([[p[0], p[1]] for p in a["points"]], dtype=float)
        zx, zy = standardise(pts[:, 0]), standardise(pts[:, 1])
        r = float(np.corrcoef(zx, zy)[0, 1]) if len(zx) > 2 else float("nan")
        fig.add_trace(go.Scatter(x=zx, y=zy, mode="markers",
                                 marker={"symbol": SYMBOLS[i % 8], "color": OKABE_ITO[i % 8], "size": 6, "opacity": 0.6},
                                 name=f"texts by {a['texts_from']}: Pearson r = {r:.2f}, Spearman ρ = {a['spearman']:.2f}"))
        parts.append(f"{a['texts_from']}: r = {r:.2f}")
    fig.add_shape(type="line", x0=-3, y0=-3, x1=3, y1=3, line={"color": "#777777", "dash": "dot", "width": 1})
    _layout(fig, "Do two models' probes agree? " + "; ".join(parts), "generating model's probe score (z-score)",
            "other model's probe score (z-score)", legend_rows=2)
    fig.update_xaxes(range=[-3.5, 3.5], zeroline=False)
    fig.update_yaxes(range=[-3.5, 3.5], zeroline=False)
    return fig


def dose_response_figure(steering: dict, scenario: str | None = None, layer: int | None = None,
                         measure: str = "ensemble_mean") -> go.Figure:
    """Judge-ensemble score vs alpha (mean over seeds with a t 95% CI), probe direction vs random direction.

    Points where most replies fail the coherence gates (or, in files before issue 11, the old
    perplexity check) are marked with an x.
    """
    fig = go.Figure()
    layer = steering["best_detection_layer"] if layer is None else layer
    bad_x: list[float] = []
    bad_y: list[float] = []
    for i, cond in enumerate((Condition.PROBE, Condition.RANDOM, Condition.MATCHED_RANDOM)):
        rows = [d for d in steering["dose_response"] if d["condition"] == cond and d["layer"] == layer
                and (scenario is None or d["scenario"] == scenario)]
        if not rows:
            continue
        alphas = sorted({d["alpha"] for d in rows})
        means, lo, hi = [], [], []
        for a in alphas:
            cell = [d for d in rows if d["alpha"] == a]
            m = float(np.mean([d[measure] for d in cell]))
            if np.mean([d.get("gate_coherent_rate", d["coherent_rate"]) for d in cell]) < 0.5:
                bad_x.append(a)
                bad_y.append(m)
            if len(cell) == 1 and cell[0].get("ensemble_ci") and measure == "ensemble_mean":
                lo.append(m - cell[0]["ensemble_ci"][0])
                hi.append(cell[0]["ensemble_ci"][1] - m)
            else:  # mean over scenarios: t interval of the per-scenario means
                v = np.array([d[measure] for d in cell])
                from scipy import stats

                half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
                lo.append(half)
                hi.append(half)
            means.append(m)
        name = cond.label if cond == Condition.PROBE else f"{cond.label} (control)"
        fig.add_trace(go.Scatter(x=alphas, y=means, name=name, mode="lines+markers",
                                 error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}, **_style(i)))
    if bad_x:
        gated = any("gate_coherent_rate" in d for d in steering["dose_response"])
        fig.add_trace(go.Scatter(x=bad_x, y=bad_y, mode="markers", marker={"symbol": "x", "size": 13, "color": "#d55e00"},
                                 name="mostly incoherent (" + ("coherence gates" if gated else "old perplexity check") + ")"))
    where = scenario or "all scenarios"
    _layout(fig, f"Dose-response at layer {layer} ({where})", "α (relative units)", measure.replace("_", " "), legend_rows=1)
    return fig


def success_figure(steering: dict) -> go.Figure:
    """Success rates with 95% CIs for alpha > 0 and alpha < 0, beside the controls (cluster bootstrap in
    files written after issue 11, Wilson before)."""
    fig = go.Figure()
    for i, sign in enumerate(("pos", "neg")):
        xs, ys, lo, hi = [], [], [], []
        for cond in Condition:
            r = next((r for r in steering["rates"] if r["condition"] == cond and r["layer"] == "all" and r["sign"] == sign), None)
            if r is None:
                continue
            xs.append(_wrap(cond.label))
            ys.append(r["rate"])
            lo.append(r["rate"] - r["ci"][0])
            hi.append(r["ci"][1] - r["rate"])
        fig.add_trace(go.Bar(x=xs, y=ys, name="α > 0 (toward empathy)" if sign == "pos" else "α < 0 (away from empathy)",
                             marker={"color": OKABE_ITO[i], "pattern": {"shape": "" if sign == "pos" else "/"}},
                             error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}))
    ci = "cluster-bootstrap" if "evaluation" in steering else "Wilson"
    _layout(fig, f"Steering success (95% {ci} CIs)", "", "success rate", legend_rows=1)
    fig.update_layout(barmode="group", yaxis={"range": [0, 1]})
    fig.update_xaxes(tickangle=0)
    if not any(len(t.x) for t in fig.data):  # every rate has n = 0: say so instead of showing an empty chart
        fig.add_annotation(text="No report baseline got a call<br>the push could move from<br>(n = 0 for every "
                                "condition):<br>there is no success rate<br>to show for this model.",
                           x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
    return fig


def coherence_figure(steering: dict) -> go.Figure:
    """Share of coherent replies vs alpha per layer (probe direction), by the coherence gates fitted on the blind
    labels (repetition and reference perplexity). Files written before issue 11 have only the old perplexity
    check, and the title says so."""
    fig = go.Figure()
    rows_all = [d for d in steering["dose_response"] if d["condition"] == Condition.PROBE]
    gated = any("gate_coherent_rate" in d for d in rows_all)
    key = "gate_coherent_rate" if gated else "coherent_rate"
    for i, layer in enumerate(sorted({d["layer"] for d in rows_all})):
        rows = [d for d in rows_all if d["layer"] == layer]
        alphas = sorted({d["alpha"] for d in rows})
        fig.add_trace(go.Scatter(x=alphas, y=[float(np.mean([d.get(key, d["coherent_rate"]) for d in rows if d["alpha"] == a]))
                                              for a in alphas], name=f"layer {layer}", mode="lines+markers", **_style(i)))
    rule = "validated gates" if gated else "old perplexity check"
    _layout(fig, f"Coherent replies vs α ({rule})", "α (relative units)", "share coherent", legend_rows=1)
    fig.update_layout(yaxis={"range": [0, 1.02]})
    return fig


def layer_scores_figure(scores: Sequence[float], best_layer: int | None = None, title: str = "Probe score by layer",
                        thresholds: Sequence[float] | None = None) -> go.Figure:
    """A text's score at every layer. With ``thresholds`` (the probe's per-layer midpoints of the
    train class means) the score is drawn relative to them, so above 0 means the empathic side at
    every layer; raw projections are not comparable across layers, whose norms differ."""
    scores = [float(s) for s in scores]
    if thresholds is not None:
        scores = [s - float(t) for s, t in zip(scores, thresholds)]
    name = "score − layer threshold" if thresholds is not None else "score"
    fig = go.Figure(go.Scatter(x=list(range(len(scores))), y=scores, mode="lines+markers", name=name, **_style(0)))
    if thresholds is not None:
        fig.add_hline(y=0, line={"color": "#555555", "dash": "dot", "width": 1},
                      annotation_text="threshold: empathic above, task-focused below")
    if best_layer is not None:
        fig.add_vline(x=best_layer, line={"color": "#000000", "dash": "dash", "width": 1},
                      annotation_text=f"default layer {best_layer} (best dev-split AUROC)")
    y = "projection − the layer's threshold" if thresholds is not None else "projection on the direction"
    return _layout(fig, title, "layer", y, height=340, legend_rows=1)


def live_dose_figure(alphas: Sequence[float], probe_scores: Sequence[float], judge_probs: Sequence[float | None],
                     probe_layer: int, incoherent: Sequence[bool] = ()) -> go.Figure:
    """Score vs α for one batched dose-response call, in two stacked panels that share the α axis: the
    probe score on top (its own scale), the judge's probability of "empathic" below (0 to 1). Two
    scales never share one plot area, so no curve can be read against the other's axis. Without judge
    scores there is only the top panel. Replies that fail the coherence gates get an x on the top panel."""
    judged = any(p is not None for p in judge_probs)
    fig = make_subplots(rows=2 if judged else 1, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        row_heights=[0.55, 0.45] if judged else None)
    fig.add_trace(go.Scatter(x=list(alphas), y=[float(v) for v in probe_scores], mode="lines+markers",
                             name=f"probe score (layer {probe_layer}; top panel)", **_style(0)), row=1, col=1)
    bad = [i for i, b in enumerate(incoherent) if b]
    if bad:
        fig.add_trace(go.Scatter(x=[alphas[i] for i in bad], y=[float(probe_scores[i]) for i in bad], mode="markers",
                                 marker={"symbol": "x", "size": 13, "color": "#d55e00"},
                                 name="reply fails the coherence gates"), row=1, col=1)
    if judged:
        fig.add_trace(go.Scatter(x=list(alphas), y=[None if p is None else float(p) for p in judge_probs],
                                 mode="lines+markers", name="judge P(empathic) (MiniLM classifier; bottom panel)",
                                 **_style(1)), row=2, col=1)
    rows = 2 if judged else 1
    zero = {"x": 0, "line": {"color": "#555555", "dash": "dot", "width": 1}, "col": 1}
    fig.add_vline(row=1, annotation_text="α = 0", **zero)  # α = 0 marked in each panel, labelled once
    if judged:
        fig.add_vline(row=2, **zero)
    _layout(fig, "This prompt: score vs α", "", f"probe score (layer {probe_layer})", height=440 if judged else 340)
    fig.update_xaxes(title_text="α (relative units)", row=rows, col=1)
    if judged:
        fig.update_yaxes(title_text="judge P(empathic)", range=[0, 1], row=2, col=1)
    return fig


def token_heatmap_html(tokens: list[str], scores: Sequence[float], center: float = 0.0) -> str:
    """Tokens shaded by score: blue above ``center`` (more empathic), orange below, with the
    value in each token's title and a +/- sign, so colour is not the only cue. Readable on
    light and dark themes (dark text on light tints)."""
    s = np.asarray(scores, dtype=float) - center
    scale = float(np.abs(s).max()) or 1.0
    spans = []
    for tok, v in zip(tokens, s):
        a = min(1.0, abs(v) / scale) * 0.85
        rgb = "0,114,178" if v >= 0 else "213,94,0"
        sign = "+" if v >= 0 else "−"
        spans.append(f'<span title="{sign}{abs(v):.2f}" style="background:rgba({rgb},{a:.2f});color:#111;'
                     f'padding:1px 2px;border-radius:3px;margin:1px;display:inline-block">{html.escape(tok)}</span>')
    legend = ('<div class="heatmap-legend" style="font-size:12px;margin-top:6px;line-height:1.6;color:#111">shading: '
              '<span style="background:rgba(0,114,178,0.6);color:#111;padding:1px 4px">+ more empathic</span> '
              '<span style="background:rgba(213,94,0,0.6);color:#111;padding:1px 4px">− less empathic</span> '
              '(hover a token for its score)</div>')
    # One light box with dark text around tokens and legend alike, so both themes read the same.
    return (f'<div class="token-heatmap" style="line-height:2;background:#fafafa;color:#111;padding:8px;border-radius:6px">'
            f'<div>{"".join(spans)}</div>{legend}</div>')


def figure_csv(fig: go.Figure) -> str:
    """The data of every trace as long-format CSV: trace, x, y."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trace", "x", "y"])
    for t in fig.data:
        if t.x is None or t.y is None:
            continue
        for x, y in zip(t.x, t.y):
            w.writerow([t.name, x, y])
    return buf.getvalue()
