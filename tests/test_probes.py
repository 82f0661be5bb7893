"""Probe fitting recovers known directions; probe files round-trip; bad files are refused."""

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from empathy_core.core.activations import extract, layer_hidden
from empathy_core.core.probes import (
    METHODS,
    Probe,
    fit_direction,
    load_direction_file,
    read_safetensors,
)
from empathy_core.study import dataset


def _planted(n=200, h=48, strength=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    d_true = torch.nn.functional.normalize(torch.randn(h, generator=g), dim=0)
    base = torch.randn(n // 2, h, generator=g) * 2.0  # shared per pair: pairs differ only along d_true
    noise = lambda: torch.randn(n // 2, h, generator=g) * 0.3  # noqa: E731
    X = torch.empty(n, h)
    X[0::2] = base + strength * d_true + noise()
    X[1::2] = base + noise()
    y = np.tile([1, 0], n // 2)
    ids = [f"p{i // 2}" for i in range(n)]
    return X, y, ids, d_true


@pytest.mark.parametrize("method", METHODS)
def test_synthetic_direction_is_recovered(method):
    # Logistic regression finds the Bayes direction only when the classes overlap and n is
    # large; on separable data any separating direction is optimal for it.
    X, y, ids, d_true = _planted(n=12000, strength=1.0) if method == "logistic" else _planted()
    d = fit_direction(X, y, method, pair_ids=ids)
    assert abs(d.norm().item() - 1) < 1e-5
    assert torch.dot(d, d_true).item() > 0.99  # right direction and sign


@pytest.mark.parametrize("method", METHODS)
def test_sign_follows_the_empathic_class(method):
    X, y, ids, d_true = _planted(n=12000, strength=1.0, seed=1) if method == "logistic" else _planted(seed=1)
    d = fit_direction(-X, y, method, pair_ids=ids)  # flip the data: the direction must flip too
    assert torch.dot(d, d_true).item() < -0.99


def test_direction_planted_inside_a_model_is_recovered(tiny_models):
    """Add a known vector to block 1's output for empathic texts only; extraction + mean
    difference at layer 1 must find it (cosine > 0.99)."""
    handle = tiny_models["llama"]
    pairs = dataset.load_pairs()[:24]
    ts = dataset.pair_texts(pairs)
    d_true = torch.nn.functional.normalize(torch.randn(handle.hidden_size, generator=torch.Generator().manual_seed(7)), dim=0)
    acts = {}
    for label in (0, 1):
        texts = [t for t, lab in zip(ts.texts, ts.labels) if lab == label]

        def add(mod, args, out, label=label):
            h = layer_hidden(out)
            h = h + 6.0 * label * d_true
            return h if isinstance(out, torch.Tensor) else (h,) + tuple(out[1:])

        hook = handle.layers[1].register_forward_hook(add)
        try:
            acts[label] = extract(handle, texts, batch_size=8).pooled[:, 1]
        finally:
            hook.remove()
    X = torch.cat([acts[1], acts[0]])
    y = np.r_[np.ones(len(acts[1])), np.zeros(len(acts[0]))]
    d = fit_direction(X, y, "mean_diff")
    assert torch.dot(d, d_true).item() > 0.99


def _probe(L=3, H=8):
    D = torch.nn.functional.normalize(torch.randn(L, H), dim=1)
    return Probe(directions=D, mean_norms=torch.rand(L) + 1, thresholds=torch.randn(L), class_means=torch.randn(L, 2),
                 calib=torch.randn(L, 2), meta={"model_key": "tiny", "pooling": "mean", "method": "mean_diff",
                                                "dataset_sha256": "abc", "revision": "r"})


def test_probe_round_trip(tmp_path):
    p = _probe()
    path = p.save(tmp_path / "p.safetensors")
    q = Probe.load(path)
    for k in ("directions", "mean_norms", "thresholds", "class_means", "calib"):
        torch.testing.assert_close(getattr(q, k), getattr(p, k), rtol=0, atol=0)
    for k in ("model_key", "pooling", "method", "dataset_sha256", "layer_convention", "created", "schema"):
        assert k in q.meta
    assert q.meta["layer_convention"] == "block_output_0based"
    # The file is safetensors, not a pickle: an 8-byte little-endian header length, a JSON header that
    # names every tensor with its dtype, shape and byte range, then raw data; the unpickler refuses it.
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8: 8 + n])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert set(tensors) == {"directions", "mean_norms", "thresholds", "class_means", "calib"}
    assert tensors["directions"] == {"dtype": "F32", "shape": [3, 8], "data_offsets": tensors["directions"]["data_offsets"]}
    assert max(v["data_offsets"][1] for v in tensors.values()) == len(raw) - 8 - n
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(raw)


def test_probability_is_calibrated_logistic():
    p = _probe()
    p.calib[0] = torch.tensor([2.0, -1.0])
    assert p.probability(0.5, 0) == pytest.approx(0.5)
    assert p.probability(10.0, 0) > 0.99


def test_nan_file_is_refused(tmp_path):
    save_file({"direction": torch.tensor([1.0, float("nan")])}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="NaN"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_integer_file_is_refused(tmp_path):
    save_file({"direction": torch.arange(8)}, str(tmp_path / "int.safetensors"))
    with pytest.raises(ValueError, match="dtype"):
        read_safetensors(tmp_path / "int.safetensors")


def test_garbage_file_is_refused(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_safetensors(tmp_path / "x.safetensors")


def test_direction_file_width_is_checked(tmp_path):
    save_file({"direction": torch.randn(7)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="width 8"):
        load_direction_file(tmp_path / "w.safetensors", n_layers=3, hidden_size=8)
    save_file({"direction": torch.randn(8) * 5}, str(tmp_path / "ok.safetensors"))
    D = load_direction_file(tmp_path / "ok.safetensors", n_layers=3, hidden_size=8)
    assert D.shape == (3, 8)
    torch.testing.assert_close(D.norm(dim=1), torch.ones(3))


def test_probe_file_is_not_json_pickle(tmp_path):
    p = _probe().save(tmp_path / "p.safetensors")
    header_len = int.from_bytes(p.read_bytes()[:8], "little")
    header = json.loads(p.read_bytes()[8: 8 + header_len])
    assert "__metadata__" in header and header["__metadata__"]["method"] == "mean_diff"
