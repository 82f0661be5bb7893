"""Figures build from the committed precomputed data, with explicit heights and non-colour cues."""

import csv
import io
import json

import numpy as np
import pytest

from empathy_core.app import plots
from empathy_core.store import PRECOMPUTED


def _load(name):
    return json.loads((PRECOMPUTED / name).read_text())


@pytest.fixture(scope="module")
def data():
    return {"det": _load("smollm2-135m/detection.json"), "steer": _load("smollm2-135m/steering.json"),
            "ref": _load("reference_study.json"), "cross": _load("cross_model.json")}


def _check(fig):
    assert fig.layout.height and fig.layout.height >= 300
    named = [t for t in fig.data if t.showlegend is not False]
    assert named and all(t.name for t in named)
    return fig


def _default_trace(fig):
    return next(t for t in fig.data if t.name.startswith("default probe") and "CI" not in t.name)


def test_layer_auroc_figure(data):
    fig = _check(plots.layer_auroc_figure(data["det"], data["ref"], show_reference=True))
    names = [t.name for t in fig.data]
    assert "random directions: mean to 95th percentile" in names
    assert any("reported by the original study" in n for n in names)
    auroc = _default_trace(fig)
    det = data["det"]
    assert list(auroc.y) == [r["auroc_test"] for r in det["default_curve"]]
    # labelled from detection.json: the dev-chosen method, beside the study's mean difference
    assert auroc.name == plots.probe_label(det) and plots.method_name(det["default"]["method"]) in auroc.name
    study = next(t for t in fig.data if t.name == "the study's method: mean difference of the class means, mean pooling")
    assert list(study.y) == [r["auroc_test"] for r in det["layers"]]
    # series differ by dash or marker, not colour alone
    lines = [t for t in fig.data if t.mode and "markers" in t.mode and "reported" not in t.name]
    assert len({(t.line.dash, t.marker.symbol) for t in lines}) == len(lines)


def test_layer_chart_shows_few_series_by_default_and_one_honest_axis(data):
    fig = plots.layer_auroc_figure(data["det"])
    shown = [t.name for t in fig.data if t.visible in (None, True) and t.showlegend is not False]
    hidden = [t.name for t in fig.data if t.visible == "legendonly"]
    # the default probe and the study's method with their CI bands, the random band and the two text-only baselines
    assert len(shown) == 5 + len(data["det"]["baselines"]) == 7, shown
    assert {"study's method: leave-one-scenario-out AUROC", "study's method: lexically controlled AUROC",
            "study's method: test accuracy (train midpoint threshold)"} <= set(hidden)
    assert "yaxis2" not in fig.layout.to_plotly_json() and not any(getattr(t, "yaxis", None) == "y2" for t in fig.data)
    d = plots.cohens_d_figure(data["det"])
    assert list(d.data[0].y) == [r["cohens_d_test"] for r in data["det"]["layers"]]
    # the default-layer label sits at the bottom of the plot area, not among the curves' labels at the top
    (ann,) = [a for a in fig.layout.annotations if "default layer" in a.text]
    assert ann.yref == "paper" and ann.y == 0 and f"default layer {data['det']['default']['layer']}" in ann.text
    assert "best layer" not in json.dumps(fig.layout.to_plotly_json())


def test_layer_chart_draws_text_only_baselines_when_detection_has_them(data):
    det = json.loads(json.dumps(data["det"]))
    assert plots.baselines(det) == [(b["name"], b["test_auroc"]) for b in det["baselines"].values()]
    det["baselines"] = {"tfidf_logistic": {"auroc_test": 0.71, "label": "TF-IDF + logistic"}, "length_only": 0.55}
    fig = plots.layer_auroc_figure(det)
    lines = {t.name: t for t in fig.data if t.name.startswith("text-only baseline")}
    assert set(lines) == {"text-only baseline: TF-IDF + logistic (0.71)", "text-only baseline: length_only (0.55)"}
    assert all(t.visible in (None, True) for t in lines.values())
    assert list(lines["text-only baseline: length_only (0.55)"].y) == [0.55, 0.55]
    assert list(lines["text-only baseline: length_only (0.55)"].x) == [0, det["n_layers"] - 1]
    det["baselines"] = [{"name": "bag of words", "auroc_test": 0.6}, {"name": "broken", "auroc_test": None}]
    assert plots.baselines(det) == [("bag of words", 0.6)]


def test_confound_axes_figure_and_the_trust_line_name_the_baseline(data):
    from empathy_core.app.ui.probe_tab import trust_line

    det = data["det"]
    fig = _check(plots.confound_axes_figure(det))
    bars = {t.name: t for t in fig.data}
    rep = det["reports"]["default"]["confound_heldout"]
    assert list(bars[plots.probe_label(det)].y) == [rep[a]["auroc"] for a in plots.AXIS_ORDER]
    assert list(bars[plots.probe_label(det)].error_y.array) == pytest.approx(
        [rep[a]["ci"][1] - rep[a]["auroc"] for a in plots.AXIS_ORDER])
    assert plots.confound_axes_figure({"layers": []}) is None
    line = trust_line(det, det["default"]["layer"])
    tf = det["baselines"]["tfidf_logreg"]
    assert "TF-IDF bag-of-words baseline" in line and f"{tf['test_auroc']:.2f}" in line
    assert f"{det['default_curve'][det['default']['layer']]['auroc_test']:.2f}" in line


def test_steering_figures(data):
    _check(plots.dose_response_figure(data["steer"]))
    _check(plots.dose_response_figure(data["steer"], scenario="maze", layer=data["steer"]["best_steering_layer"]))
    qwen = _load("qwen2.5-coder-0.5b/steering.json")
    fig = _check(plots.success_figure(qwen))
    probe_pos = next(r for r in qwen["rates"] if (r["condition"], r["layer"], r["sign"]) == ("probe", "all", "pos"))
    assert fig.data[0].y[0] == pytest.approx(probe_pos["rate"])
    assert not fig.layout.annotations
    _check(plots.coherence_figure(data["steer"]))


def test_success_figure_says_when_no_baseline_was_eligible(data):
    empty = {**data["steer"], "rates": []}
    fig = _check(plots.success_figure(empty))
    assert all(len(t.x) == 0 for t in fig.data)
    assert any("n = 0" in a.text for a in fig.layout.annotations)


def test_cross_model_figures(data):
    fig = _check(plots.depth_figure(data["cross"], data["ref"]))
    assert any("(ours)" in t.name for t in fig.data) and any("original study" in t.name for t in fig.data)


def test_agreement_is_on_standardised_scores_with_the_correlation_printed(data):
    fig = _check(plots.agreement_figure(data["cross"]))
    for trace, a in zip(fig.data, data["cross"]["score_agreement"]):
        x, y = np.asarray(trace.x), np.asarray(trace.y)
        assert abs(x.mean()) < 1e-9 and abs(x.std() - 1) < 1e-9 and abs(y.std() - 1) < 1e-9  # z-scores per model
        raw = np.array([[p[0], p[1]] for p in a["points"]], dtype=float)
        assert np.allclose(x, (raw[:, 0] - raw[:, 0].mean()) / raw[:, 0].std())
        assert f"r = {a['pearson']:.2f}" in trace.name and f"r = {a['pearson']:.2f}" in fig.layout.title.text


def test_success_labels_wrap_instead_of_rotating(data):
    fig = plots.success_figure(data["steer"])
    assert fig.layout.xaxis.tickangle == 0
    assert all(len(part) <= 20 for label in fig.data[0].x for part in label.split("<br>"))


def test_live_dose_chart_has_two_panels_and_no_overlaid_axis():
    """The Steer tab's score vs α: probe score and judge probability on stacked panels sharing α, not a dual axis."""
    alphas = list(np.linspace(-0.3, 0.3, 7))
    probe, judge = [-2.0, -1.5, -0.4, 0.1, 0.9, 1.7, 2.2], [0.12, 0.2, 0.35, 0.5, 0.61, 0.72, None]
    fig = _check(plots.live_dose_figure(alphas, probe, judge, 10))
    lay = fig.layout.to_plotly_json()
    yaxes = {k: v for k, v in lay.items() if k.startswith("yaxis")}
    assert len(yaxes) == 2 and not any("overlaying" in a for a in yaxes.values())
    (lo, hi) = sorted(a["domain"] for a in yaxes.values())
    assert lo[1] < hi[0]  # the panels do not overlap
    p_trace, j_trace = fig.data
    assert list(p_trace.y) == probe and list(j_trace.y) == judge and list(p_trace.x) == list(j_trace.x) == alphas
    p_axis, j_axis = ("yaxis" + (t.yaxis or "y")[1:] for t in (p_trace, j_trace))
    assert p_axis != j_axis and yaxes[j_axis]["range"] == [0, 1]
    assert "probe score" in yaxes[p_axis]["title"]["text"] and "judge" in yaxes[j_axis]["title"]["text"]
    assert yaxes[p_axis]["domain"][0] > yaxes[j_axis]["domain"][1]  # probe on top, judge below
    assert lay["xaxis"].get("matches") or lay.get("xaxis2", {}).get("matches")  # one shared α axis
    assert [r for r in csv.DictReader(io.StringIO(plots.figure_csv(fig))) if r["trace"].startswith("probe score")]
    # no judge scores: one panel, one axis
    one = plots.live_dose_figure(alphas, probe, [None] * 7, 10)
    assert len(one.data) == 1 and not [k for k in one.layout.to_plotly_json() if k.startswith("yaxis") and k != "yaxis"]


def test_csv_export_round_trips(data):
    fig = plots.layer_auroc_figure(data["det"])
    rows = list(csv.reader(io.StringIO(plots.figure_csv(fig))))
    assert rows[0] == ["trace", "x", "y"]
    auroc = [r for r in rows[1:] if r[0] == _default_trace(fig).name]
    assert len(auroc) == data["det"]["n_layers"]
    assert float(auroc[3][2]) == pytest.approx(data["det"]["default_curve"][3]["auroc_test"])


def test_token_heatmap_escapes_and_signs():
    out = plots.token_heatmap_html(["<b>", " kind"], [-1.0, 2.0])
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert 'title="−1.00"' in out and 'title="+2.00"' in out
