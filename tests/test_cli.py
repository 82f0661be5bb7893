"""The CLI contract, end to end on a tiny model saved to a local directory."""

import json
import subprocess
import sys

import pytest

from empathy_core import cli, store
from empathy_core.core.models import ModelUnavailable, load_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_models):
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_models["llama"].model.save_pretrained(d)
    tiny_models["llama"].tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def extracted(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("precomputed")
    rc = cli.main(["extract", "--model", str(tiny_dir), "--n-boot", "50", "--n-random", "20", "--out-dir", str(out)])
    assert rc == 0
    return out


def test_extract_writes_probe_and_detection(extracted, tiny_dir):
    d = store.model_dir(str(tiny_dir), extracted)
    det = json.loads((d / "detection.json").read_text())
    assert det["n_layers"] == 4 and len(det["layers"]) == 4
    row = det["layers"][det["best_layer"]]
    for k in ("auroc_test", "auroc_test_ci", "accuracy_test", "cohens_d_test", "random_auroc_p95", "loso_auroc",
              "lexical_auroc_test", "confound_auroc", "graded_spearman", "graded_pearson_ci", "auroc_dev"):
        assert k in row
    assert det["best_layer"] == max(det["layers"], key=lambda r: r["auroc_dev"])["layer"]
    lo, hi = row["auroc_test_ci"]
    assert lo <= row["auroc_test"] <= hi
    probe = store.load_probe(str(tiny_dir), extracted)
    assert probe.meta["dataset_sha256"] == det["dataset_sha256"]


def test_score_round_trip(extracted, tiny_dir, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "I stop and talk with them.", "id": 1}\n\n{"text": "I keep walking to the door."}\n')
    out = tmp_path / "out.jsonl"
    rc = cli.main(["score", "--model", str(tiny_dir), "--in", str(inp), "--out", str(out), "--out-dir", str(extracted)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    det = store.load_detection(str(tiny_dir), extracted)
    assert len(rows) == 2 and rows[0]["id"] == 1
    # the default detection probe, at its dev-chosen layer
    assert all(r["layer"] == det["default"]["layer"] and isinstance(r["score"], float) for r in rows)
    assert all(r["probe"] == det["default"]["method"] and r["verdict"] in ("ok", "too_short", "too_far") for r in rows)
    # layer N gives the projection at that layer
    rc = cli.main(["score", "--model", str(tiny_dir), "--layer", "0", "--in", str(inp), "--out", str(out),
                   "--out-dir", str(extracted)])
    assert rc == 0 and all(json.loads(line)["layer"] == 0 for line in out.read_text().splitlines())


@pytest.mark.parametrize("layer,msg", [("99", "out of range"), ("x", "number or 'best'"), ("-1", "out of range")])
def test_score_bad_layer(extracted, tiny_dir, tmp_path, capsys, layer, msg):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "hello"}\n')
    rc = cli.main(["score", "--model", str(tiny_dir), "--layer", layer, "--in", str(inp), "--out", str(tmp_path / "o"),
                   "--out-dir", str(extracted)])
    assert rc == 2 and msg in capsys.readouterr().err


@pytest.mark.parametrize("content,msg", [("not json\n", "not valid JSON"), ('{"txt": "a"}\n', '"text" field'),
                                         ('{"text": "  "}\n', '"text" field'), ("", "no lines")])
def test_score_bad_input_lines(extracted, tiny_dir, tmp_path, capsys, content, msg):
    inp = tmp_path / "in.jsonl"
    inp.write_text(content)
    rc = cli.main(["score", "--model", str(tiny_dir), "--in", str(inp), "--out", str(tmp_path / "o"),
                   "--out-dir", str(extracted)])
    assert rc == 2 and msg in capsys.readouterr().err


def test_score_without_probe_says_run_extract(tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "hello"}\n')
    rc = cli.main(["score", "--model", "smollm2-135m", "--in", str(inp), "--out", str(tmp_path / "o"),
                   "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "python -m empathy_core extract --model smollm2-135m" in err


def test_unknown_model_key_is_a_clear_error():
    with pytest.raises(ModelUnavailable, match="Unknown model 'no-such-model'.*smollm2-135m"):
        load_model("no-such-model")


def test_offline_hub_model_names_the_model_and_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match=r"phi3-mini \(microsoft/Phi-3-mini-4k-instruct\).*huggingface-cli download"):
        load_model("phi3-mini")


def test_empty_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="model key"):
        load_model("  ")


def test_module_entry_point_prints_help():
    r = subprocess.run([sys.executable, "-m", "empathy_core", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "extract" in r.stdout and "score" in r.stdout


def test_wrong_layer_is_a_clear_error(tiny_models):
    with pytest.raises(ValueError, match="out of range.*layers 0 to 3"):
        tiny_models["llama"].check_layer(4)


@pytest.mark.parametrize("args", [["--n-boot", "0"], ["--batch-size", "-1"], ["--n-random", "x"]])
def test_extract_rejects_non_positive_counts(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["extract", "--model", "smollm2-135m", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and ("must be at least 1" in err or "whole number" in err)


def test_unwritable_output_is_a_clear_error(extracted, tiny_dir, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "hello"}\n')
    rc = cli.main(["score", "--model", str(tiny_dir), "--in", str(inp), "--out", str(tmp_path), "--out-dir", str(extracted)])
    assert rc == 2 and "error:" in capsys.readouterr().err


def test_from_stored_needs_the_steering_step(tmp_path, capsys):
    rc = cli.main(["precompute", "--model", "smollm2-135m", "--from-stored", "--out-dir", str(tmp_path)])
    assert rc != 0 and "use it with --only steering" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything ran
