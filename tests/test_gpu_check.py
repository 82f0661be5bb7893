"""gpu-check runs where torch is but gradio and plotly are not: it imports with both blocked, and its
exactness checks pass on a tiny model here and fail when batching is broken on purpose."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

BLOCKED = """
import sys
for name in ("gradio", "gradio_client", "plotly", "spaces"):
    sys.modules[name] = None  # any import of them now raises ImportError
import empathy_core.gpu_check, empathy_core.core.study_models, empathy_core.study.fit, empathy_core.study.experiments
import empathy_core.core.memory, empathy_core.cli
assert empathy_core.cli.build_parser().parse_args(["gpu-check", "--json", "x"]).func.__name__ == "cmd_gpu_check"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("gradio", "plotly") and sys.modules[m] is not None)
print("loaded:", loaded)
"""


def test_gpu_check_imports_without_gradio_or_plotly():
    out = subprocess.run([sys.executable, "-c", BLOCKED], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded: []" in out.stdout


def test_blocking_works():
    """The same trick makes a gradio import fail (so the test above can fail)."""
    code = "import sys; sys.modules['gradio'] = None; import empathy_core.app.ui.common"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "gradio" in out.stderr


def test_exactness_checks_pass_on_a_tiny_model_and_catch_a_broken_batch(tiny_models, monkeypatch):
    from empathy_core import gpu_check
    from empathy_core.core import activations

    h = tiny_models["qwen2"]
    assert gpu_check.check_extraction(h, torch.float32)["ok"]
    assert gpu_check.check_alpha_zero(h)["ok"]
    assert gpu_check.check_per_row(h, greedy=True)["ok"]
    sampled = gpu_check.check_per_row(h, greedy=False)
    assert sampled["ok"] and sampled["other_seed_differs"]
    real = activations.extract

    def leaky(handle, texts, *a, batch_size=16, **k):  # batched rows see a trace of their neighbours
        acts = real(handle, texts, *a, batch_size=batch_size, **k)
        if batch_size > 1:
            acts.pooled = acts.pooled + 1e-3 * acts.pooled.roll(1, 0)
        return acts

    monkeypatch.setattr(gpu_check, "extract", leaky)
    assert not gpu_check.check_extraction(h, torch.float32)["ok"]


def test_unknown_dtype_is_refused():
    from empathy_core import gpu_check

    with pytest.raises(ValueError, match="Unknown dtype"):
        gpu_check.run("tiny", "fp8")


def test_unknown_timing_model_is_refused():
    from empathy_core import gpu_check

    with pytest.raises(ValueError, match="Unknown model"):
        gpu_check.run("tiny", "bf16", models=("Mistral-7B",))


def test_interleaved_timing_runs_each_function_per_round_in_turn():
    from empathy_core import gpu_check

    calls: list[str] = []
    med, raw = gpu_check._interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                      torch.device("cpu"), rounds=3)
    assert calls == ["a", "b"] * 4  # one warm-up each, then a, b in every round
    assert set(med) == {"a", "b"} and all(len(v) == 3 for v in raw.values())
