"""Shared fixtures: tiny random-init models (no download) and the bundled real models."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# at most 2 threads; fewer where OMP_NUM_THREADS asks (a suite run beside a long job on the same cores)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1, int(os.environ.get("OMP_NUM_THREADS") or 2))))

FAST_ARCHS = ("llama", "qwen2", "phi3", "gemma3")


@pytest.fixture(scope="session")
def tiny_tok():
    from empathy_core.testing import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_models(tiny_tok):
    from empathy_core.testing import tiny_model

    return {arch: tiny_model(arch, tokenizer=tiny_tok) for arch in FAST_ARCHS + ("gpt2",)}


@pytest.fixture(params=FAST_ARCHS)
def tiny(request, tiny_models):
    return tiny_models[request.param]


_REAL = {}


def real_model(key):
    from empathy_core.core.models import ModelUnavailable, load_model

    if key not in _REAL:
        try:
            _REAL[key] = load_model(key)
        except ModelUnavailable as exc:  # the bundled packages are installed by `make test`
            pytest.fail(str(exc))
    return _REAL[key]


@pytest.fixture(scope="session")
def smol():
    return real_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma():
    return real_model("gemma3-270m")


@pytest.fixture(scope="session")
def act_cache(tmp_path_factory):
    """A user cache for this test session only: activations computed here may be reused here, never from elsewhere."""
    return tmp_path_factory.mktemp("empathy-cache")


@pytest.fixture(scope="session")
def fresh_smol_detection(smol, act_cache):
    """The detection experiment rerun now with the committed settings: (committed, (probe, fresh)).

    The study's probe and every per-layer metric are recomputed in full; the dev-only choice is replayed on a
    reduced grid (the committed default's method, pooling and layer; the rule itself is checked on the committed
    candidates in test_detection_files.py) and only the TF-IDF baseline is refitted, to keep CI short."""
    from empathy_core import store
    from empathy_core.study.experiments import DetectionSettings, run_detection

    committed = store.load_detection("smollm2-135m")
    d = committed["default"]
    s = DetectionSettings.from_stored({**committed["settings"], "methods": [d["method"]],
                                       "poolings": sorted({d["pooling"], committed["settings"]["pooling"]}),
                                       "layers": [d["layer"]], "baselines": ["tfidf_logreg"], "cache_activations": True,
                                       "fixed_default": [d["method"], d["pooling"], d["layer"]]})
    import os

    old = os.environ.get("EMPATHY_CACHE")
    os.environ["EMPATHY_CACHE"] = str(act_cache)  # computed fresh (an empty cache); the quick precompute test reuses it
    try:
        return committed, run_detection(smol, s)
    finally:
        if old is None:
            os.environ.pop("EMPATHY_CACHE", None)
        else:
            os.environ["EMPATHY_CACHE"] = old


@pytest.fixture(scope="session")
def embedding_judge():
    """The MiniLM embedding judge, trained once per session (it embeds the whole dataset)."""
    from empathy_core.study.judges import EmbeddingJudge

    return EmbeddingJudge()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server():
    """The app, launched in this process on the bundled SmolLM2, once warm: (service, url)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import app
    from empathy_core.app.service import Service

    svc = Service("smollm2-135m")
    svc.start()
    demo = app.build_app(svc)
    port = free_port()
    app.launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    status = svc.wait_ready(timeout=600)
    assert status.state == "ready", status.message
    yield svc, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="session")
def client(app_server):
    from gradio_client import Client

    return Client(app_server[1], verbose=False)
