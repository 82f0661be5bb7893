"""Export: safetensors and llama.cpp GGUF control vectors, read back with the gguf package."""

import numpy as np
import pytest
import torch

from empathy_core import cli, store
from empathy_core.core.export import export_vector, read_gguf, write_gguf
from empathy_core.core.probes import Probe, load_direction_file


@pytest.fixture
def probe_dir(tmp_path):
    L, H = 5, 16
    D = torch.nn.functional.normalize(torch.randn(L, H), dim=1)
    p = Probe(directions=D, mean_norms=torch.arange(1.0, L + 1) * 10, thresholds=torch.zeros(L),
              class_means=torch.zeros(L, 2), calib=torch.zeros(L, 2), meta={"model_key": "smollm2-135m"})
    d = store.model_dir("smollm2-135m", tmp_path)
    p.save(d / "probes.safetensors")
    store.write_json(d / "detection.json", {"best_layer": 3, "layers": []})
    return tmp_path, p


def test_gguf_export_reads_back(probe_dir, tmp_path):
    root, p = probe_dir
    out = tmp_path / "cv.gguf"
    rc = cli.main(["export", "--model", "smollm2-135m", "--layer", "best", "--alpha", "0.5", "--format", "gguf",
                   "--out", str(out), "--out-dir", str(root)])
    assert rc == 0
    tensors, fields = read_gguf(out)
    assert list(tensors) == ["direction.3"]  # our layer 3 = llama.cpp's direction.3 (block 3's output)
    assert tensors["direction.3"].shape == (16,)
    np.testing.assert_allclose(tensors["direction.3"], (0.5 * 40.0 * p.directions[3]).numpy(), rtol=1e-6)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama"
    assert fields["controlvector.layer_count"] == 1


def test_safetensors_export_round_trips_into_a_direction_file(probe_dir, tmp_path):
    root, p = probe_dir
    out = tmp_path / "v.safetensors"
    assert cli.main(["export", "--model", "smollm2-135m", "--layer", "2", "--unit", "raw", "--alpha", "3",
                     "--out", str(out), "--out-dir", str(root)]) == 0
    from empathy_core.core.probes import read_safetensors

    tensors, meta = read_safetensors(out)
    torch.testing.assert_close(tensors["direction"], 3 * p.directions[2])
    assert meta["layer"] == 2 and meta["unit"] == "raw" and meta["llama_cpp_name"] == "direction.2"
    D = load_direction_file(out, n_layers=5, hidden_size=16)
    torch.testing.assert_close(D[2], p.directions[2])


def test_unit_direction_without_alpha(probe_dir):
    _, p = probe_dir
    torch.testing.assert_close(export_vector(p, 1, None, "relative"), p.directions[1])


def test_layer_zero_cannot_go_to_llama_cpp(tmp_path):
    with pytest.raises(ValueError, match="block 0"):
        write_gguf(tmp_path / "x.gguf", torch.ones(4), 0, "llama")


def test_export_bad_layer(probe_dir, tmp_path, capsys):
    root, _ = probe_dir
    rc = cli.main(["export", "--model", "smollm2-135m", "--layer", "9", "--out", str(tmp_path / "x"), "--out-dir", str(root)])
    assert rc == 2 and "out of range" in capsys.readouterr().err
