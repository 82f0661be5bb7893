"""Fitting the probe on this machine (study/fit.py through the service and the CLI), custom model names,
and refusing a model too big for memory. Tiny random-init models saved as local directories: no download."""

import json
import threading
import time

import pytest
import torch

from empathy_core import store
from empathy_core.app.service import Service, UserError
from empathy_core.core.memory import Estimate, ModelTooBig, check_fits
from empathy_core.core.models import load_model
from empathy_core.study import fit as fit_mod
from empathy_core.testing import save_tiny_model


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPATHY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture()
def counted(monkeypatch):
    """Counts the detection experiments actually run (slowed a little, so a second request arrives while it runs)."""
    calls = []
    real = fit_mod.run_detection

    def run(*args, **kwargs):
        calls.append(time.perf_counter())
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_mod, "run_detection", run)
    return calls


def test_check_model_accepts_hub_ids_and_local_dirs_with_clear_messages(tmp_path, model_dir):
    svc = Service(judge=False, root=tmp_path / "precomputed")
    assert svc.check_model("smollm2-135m") == "smollm2-135m"
    assert svc.check_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    assert svc.check_model(str(model_dir)) == str(model_dir.resolve())
    (tmp_path / "empty").mkdir()
    for bad, words in [(str(tmp_path / "nope"), "no directory"), (str(tmp_path / "empty"), "no config.json"),
                       ("not a model", "Unknown model"), ("../../etc/passwd", "no directory"), ("a/../b", "Unknown model"),
                       ("x" * 500, "too long"), ("", "Choose a model")]:
        with pytest.raises(UserError, match=words):
            svc.check_model(bad)


def test_fit_in_the_service_writes_the_user_cache_and_a_new_instance_finds_it(tmp_path, cache, model_dir, counted):
    root = tmp_path / "precomputed"
    svc = Service(judge=False, root=root)
    key = svc.check_model(str(model_dir))
    assert not svc.has_results(key)
    with pytest.raises(UserError, match="no probe for .* yet"):
        svc.probe(key)
    results = []
    threads = [threading.Thread(target=lambda: results.append(svc.start_fit(key))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (job1, new1), (job2, new2) = results
    assert job1 is job2 and sorted([new1, new2]) == [False, True]  # the second request joined the first
    res = job1.future.result(timeout=300)
    assert len(counted) == 1 and svc.fitter.started == 1
    assert job1.fraction == 1.0
    # in the user cache, keyed by model, revision, dataset and code version; never in precomputed/
    assert res.path.is_relative_to(cache / "fits") and not root.exists()
    meta = json.loads((res.path / "fit.json").read_text())
    h = svc.handle(key)
    assert meta["model_id"] == key and meta["revision"] == h.revision == f"dir:{model_dir.resolve()}"
    assert meta["dataset_sha256"] == fit_mod.dataset.dataset_sha256() and meta["code_version"] == fit_mod.CODE_VERSION
    assert meta["matmul_autocast"] == fit_mod.fit_matmul_dtype(h) and meta["model_dtype"] == "float32"
    assert res.path == store.fit_dir(key, h.revision, meta["dataset_sha256"], fit_mod.fit_version(meta["matmul_autocast"]))
    # every tab works with it
    det = svc.detection(key)
    assert det["settings"]["matmul_dtype"] == meta["matmul_autocast"]
    assert det["best_layer"] == res.best_layer and det["fitted_on_this_machine_at"] == res.fitted_at
    assert len(det["layers"]) == h.n_layers and "random_auroc_p95" in det["layers"][0] and "loso_auroc" in det["layers"][0]
    assert svc.fit_note(key).startswith("fitted on this machine at ")
    info = svc.model_info(key)
    assert info["best_steering_layer"] == res.best_layer and "no steering sweep" in info["steering_layer_source"]
    r = svc.score(key, "I stopped to help her before the timer ran out.")
    # the Probe tab reads the fitted detection probe at its dev-chosen layer (a random-init model's gate may refuse)
    assert (r.verdict.probability is not None or r.verdict.cannot_judge) and r.best_layer == det["default"]["layer"]
    last = list(svc.stream_steer(key, "listener", "Someone is stuck.", 0.3, max_new_tokens=4))[-1]
    assert len(last.rows) == 2 and last.layer == res.best_layer
    # a new app instance (same cache) finds it without fitting again
    svc2 = Service(judge=False, root=root)
    assert svc2.has_results(key) and svc2.probe(key).directions.shape == (h.n_layers, h.hidden_size)
    assert torch.equal(svc2.probe(key).directions, svc.probe(key).directions)
    job3, new3 = svc2.start_fit(key)  # asking again settles at once from the cache
    assert job3.future.result(timeout=300).path == res.path and len(counted) == 1


def test_a_new_dataset_means_a_new_fit(tmp_path, cache, model_dir, counted, monkeypatch):
    svc = Service(judge=False, root=tmp_path / "precomputed")
    key = svc.check_model(str(model_dir))
    first = svc.start_fit(key)[0].future.result(timeout=300)
    monkeypatch.setattr(fit_mod.dataset, "dataset_sha256", lambda: "0" * 64)
    assert not Service(judge=False, root=tmp_path / "precomputed").has_results(key)
    second = svc.start_fit(key)[0].future.result(timeout=300)
    assert second.path != first.path and len(counted) == 2


def test_a_failed_fit_reaches_every_waiting_visitor_and_a_later_one_can_retry(tmp_path, cache, model_dir, monkeypatch):
    svc = Service(judge=False, root=tmp_path / "precomputed")
    key = svc.check_model(str(model_dir))

    def broken(*a, **k):
        raise UserError("the dataset is unreadable")

    monkeypatch.setattr(fit_mod, "run_detection", broken)
    job, _ = svc.start_fit(key)
    with pytest.raises(UserError, match="unreadable"):
        job.future.result(timeout=300)
    monkeypatch.undo()
    monkeypatch.setenv("EMPATHY_CACHE", str(cache))
    job2, new = svc.start_fit(key)
    assert new and job2.future.result(timeout=300).path.exists()


def test_a_precomputed_model_has_nothing_to_fit():
    with pytest.raises(UserError, match="already has a precomputed probe"):
        Service(judge=False).start_fit("smollm2-135m")


def test_cli_fit_writes_the_same_cache_entry(tmp_path, cache, model_dir, capsys):
    from empathy_core.cli import main

    assert main(["fit", "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    svc = Service(judge=False, root=tmp_path / "precomputed")
    key = svc.check_model(str(model_dir))
    path = svc.fit_path(key)
    assert path is not None and f"Wrote {path}" in out
    assert main(["fit", "--model", str(model_dir)]) == 0
    assert "Already fitted" in capsys.readouterr().out


# ---------------------------------------------------------------------- memory
def huge_config_dir(path, layers=126, hidden=16384):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "intermediate_size": 53248,
        "num_hidden_layers": layers, "num_attention_heads": 128, "num_key_value_heads": 8, "vocab_size": 128256}))
    return path


def test_a_model_too_big_for_memory_is_refused_quickly_with_the_numbers(tmp_path):
    d = huge_config_dir(tmp_path / "huge")  # no weights at all: the refusal comes from the config
    t = time.perf_counter()
    with pytest.raises(ModelTooBig) as err:
        load_model(str(d))
    assert time.perf_counter() - t < 5
    msg = str(err.value)
    assert "405.85 B parameters" in msg and "GiB" in msg and "available" in msg
    assert "EMPATHY_DTYPE=bfloat16" in msg and "GPU" in msg and "smaller model" in msg


def test_the_refusal_reaches_the_app_as_a_user_error(tmp_path):
    svc = Service(judge=False, root=tmp_path / "precomputed")
    with pytest.raises(UserError, match="Nothing was loaded"):
        svc.handle(str(huge_config_dir(tmp_path / "huge")))


def test_check_fits_on_cpu_and_cuda_with_given_free_memory():
    est = Estimate("m", 7_615_616_512, torch.bfloat16)  # Qwen2.5-7B in bf16: 14.2 GiB of weights
    gib = 1024 ** 3
    assert check_fits(est, torch.device("cpu"), free_cpu=64 * gib).device_map is None
    with pytest.raises(ModelTooBig, match="16.3 GiB.*8.0 GiB of RAM"):
        check_fits(est, torch.device("cpu"), free_cpu=8 * gib)
    assert check_fits(est, torch.device("cuda:0"), free_cpu=0, free_gpus=[80 * gib]).device_map is None
    assert check_fits(est, torch.device("cuda:0"), free_cpu=0, free_gpus=[10 * gib, 10 * gib]).device_map == "auto"
    with pytest.raises(ModelTooBig, match="GPU 0 has 4.0 GiB free"):
        check_fits(est, torch.device("cuda:0"), free_cpu=gib, free_gpus=[4 * gib])
    assert Estimate("m", 10, torch.float32).needed_bytes == 46 and Estimate("m", 10, torch.float16).bytes_per_param == 2


# ---------------------------------------------------------------------- bfloat16 matmuls
def test_fit_matmul_dtype_follows_the_cpu_and_the_environment(model_dir, monkeypatch):
    h = load_model(str(model_dir))
    monkeypatch.delenv(fit_mod.MATMUL_ENV, raising=False)
    monkeypatch.setattr(fit_mod, "cpu_has_bf16_matmul", lambda: True)
    assert fit_mod.fit_matmul_dtype(h) == "bfloat16"
    monkeypatch.setattr(fit_mod, "cpu_has_bf16_matmul", lambda: False)
    assert fit_mod.fit_matmul_dtype(h) is None  # emulated bfloat16 would be slower than float32
    monkeypatch.setenv(fit_mod.MATMUL_ENV, "bfloat16")
    assert fit_mod.fit_matmul_dtype(h) == "bfloat16"
    monkeypatch.setenv(fit_mod.MATMUL_ENV, "float32")
    monkeypatch.setattr(fit_mod, "cpu_has_bf16_matmul", lambda: True)
    assert fit_mod.fit_matmul_dtype(h) is None
    monkeypatch.setenv(fit_mod.MATMUL_ENV, "fp8")
    with pytest.raises(ValueError, match="EMPATHY_FIT_MATMUL"):
        fit_mod.fit_matmul_dtype(h)
    monkeypatch.delenv(fit_mod.MATMUL_ENV)
    h16 = load_model(str(model_dir), dtype="bfloat16")  # already bfloat16: nothing to autocast, even when forced
    assert fit_mod.fit_matmul_dtype(h16) is None
    monkeypatch.setenv(fit_mod.MATMUL_ENV, "bfloat16")
    assert fit_mod.fit_matmul_dtype(h16) is None


def test_float32_and_bfloat16_matmul_fits_are_kept_apart_and_either_is_found(tmp_path, cache, model_dir, monkeypatch):
    svc = Service(judge=False, root=tmp_path / "precomputed")
    key = svc.check_model(str(model_dir))
    h = svc.handle(key)
    monkeypatch.setenv(fit_mod.MATMUL_ENV, "bfloat16")
    half = fit_mod.fit_model(h)
    assert fit_mod.current_fit(key, h.revision) == half.path  # a bfloat16 fit alone is found
    monkeypatch.setenv(fit_mod.MATMUL_ENV, "float32")
    full = fit_mod.fit_model(h)
    assert half.path != full.path and fit_mod.current_fit(key, h.revision) in (full.path, half.path)
    a, b = (json.loads((r.path / "detection.json").read_text()) for r in (full, half))
    assert a["settings"]["matmul_dtype"] is None and b["settings"]["matmul_dtype"] == "bfloat16"
    # the same experiment: every layer's test AUROC agrees closely (a random-init model, so the values are noisy)
    diffs = [abs(x["auroc_test"] - y["auroc_test"]) for x, y in zip(a["layers"], b["layers"])]
    assert len(diffs) == h.n_layers and max(diffs) < 0.1


def test_load_model_packs_only_float32_cpu_models_and_honours_the_switch(model_dir, monkeypatch):
    """The packed decode path (core/fast_linear.py) goes on float32 models on CPU, not on bfloat16 ones, and
    EMPATHY_PACKED_LINEAR=0 leaves every layer on the stock path."""
    from empathy_core.core.fast_linear import packed_linear_available

    def patched(h):
        return [("forward" in m.__dict__) for m in h.model.modules() if type(m) is torch.nn.Linear]

    monkeypatch.delenv("EMPATHY_PACKED_LINEAR", raising=False)
    assert all(patched(load_model(str(model_dir)))) is packed_linear_available()
    assert not any(patched(load_model(str(model_dir), dtype="bfloat16")))
    monkeypatch.setenv("EMPATHY_PACKED_LINEAR", "0")
    assert not any(patched(load_model(str(model_dir))))
