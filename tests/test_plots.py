"""Figures build from the committed precomputed data, with explicit heights and non-colour cues."""

import csv
import io
import json

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


def test_layer_auroc_figure(data):
    fig = _check(plots.layer_auroc_figure(data["det"], data["ref"], show_reference=True))
    names = [t.name for t in fig.data]
    assert "test AUROC" in names and "random directions, 95th percentile" in names
    assert any("reported by the original study" in n for n in names)
    auroc = next(t for t in fig.data if t.name == "test AUROC")
    assert list(auroc.y) == [r["auroc_test"] for r in data["det"]["layers"]]
    # series differ by dash or marker, not colour alone
    lines = [t for t in fig.data if t.mode and "markers" in t.mode and "reported" not in t.name]
    assert len({(t.line.dash, t.marker.symbol) for t in lines}) == len(lines)


def test_steering_figures(data):
    _check(plots.dose_response_figure(data["steer"]))
    _check(plots.dose_response_figure(data["steer"], scenario="maze", layer=data["steer"]["best_steering_layer"]))
    fig = _check(plots.success_figure(data["steer"]))
    probe_pos = next(r for r in data["steer"]["rates"] if (r["condition"], r["layer"], r["sign"]) == ("probe", "all", "pos"))
    assert fig.data[0].y[0] == pytest.approx(probe_pos["rate"])
    _check(plots.coherence_figure(data["steer"]))


def test_cross_model_figures(data):
    fig = _check(plots.depth_figure(data["cross"], data["ref"]))
    assert any("(ours)" in t.name for t in fig.data) and any("original study" in t.name for t in fig.data)
    _check(plots.agreement_figure(data["cross"]))


def test_csv_export_round_trips(data):
    fig = plots.layer_auroc_figure(data["det"])
    rows = list(csv.reader(io.StringIO(plots.figure_csv(fig))))
    assert rows[0] == ["trace", "x", "y"]
    auroc = [r for r in rows[1:] if r[0] == "test AUROC"]
    assert len(auroc) == data["det"]["n_layers"]
    assert float(auroc[3][2]) == pytest.approx(data["det"]["layers"][3]["auroc_test"])


def test_token_heatmap_escapes_and_signs():
    out = plots.token_heatmap_html(["<b>", " kind"], [-1.0, 2.0])
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert 'title="−1.00"' in out and 'title="+2.00"' in out
