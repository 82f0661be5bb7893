"""Fit the probe on this machine: the detection experiment of ``extract``, written to the user cache.

    python -m empathy_core fit --model Qwen/Qwen2.5-7B-Instruct      # or a local model directory

The result goes to ``$EMPATHY_CACHE/fits/<model>/<hash>/`` (``probes.safetensors``,
``detection.json`` and ``fit.json``, written last), never into ``precomputed/``. The hash covers
the model id, its revision, the dataset's sha256 and the code version (with the matmul autocast dtype
where there is one: ``fit_version``), so a changed dataset or code makes a fresh fit, and a later visit
or a restarted app finds the old one.

``Fitter`` runs one fit at a time per model: a second caller asking for the same model while
it runs gets the same job and waits for it.

On a CPU with bfloat16 matrix units (AMX or AVX512-BF16) the fit's forward passes run their matrix
products in bfloat16 under ``torch.autocast`` (``fit_matmul_dtype``; about 2-3x faster there), the
weights staying float32 and the pooling done in float32; ``fit.json`` and the record say so.
``EMPATHY_FIT_MATMUL=float32`` turns it off for a new fit, ``=bfloat16`` forces it (for a float32 model);
a fit already in the cache is used as found, whichever it was (``fit --refresh`` fits again, and the
newest fit is the one found). Precompute never uses it: the committed results are float32.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from .. import __version__, store
from ..core.models import ModelHandle
from . import dataset
from .experiments import DETECTION_SCHEMA, DetectionSettings, Report, run_detection

CODE_VERSION = f"{__version__}+{DETECTION_SCHEMA}"


@dataclass(frozen=True)
class FitResult:
    model_id: str
    path: Path  # the fit's folder in the user cache
    fitted_at: str  # ISO time, UTC
    seconds: float
    best_layer: int


def current_fit(model_id: str, revision: str | None = None) -> Path | None:
    """The cached fit for ``model_id`` made with this dataset and code, or None."""
    return store.find_fit(model_id, dataset.dataset_sha256(), CODE_VERSION, revision)


def read_fit(path: Path) -> dict:
    """The fit's ``fit.json`` (model id, revision, dataset sha256, code version, time, seconds)."""
    return store.read_json(path / store.FIT_FILE)


MATMUL_ENV = "EMPATHY_FIT_MATMUL"


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX tiles or AVX512-BF16)."""
    cpu = getattr(torch, "cpu", None)
    checks = (getattr(cpu, "_is_amx_tile_supported", None), getattr(cpu, "_is_avx512_bf16_supported", None))
    return any(bool(f()) for f in checks if f is not None)


def fit_matmul_dtype(handle: ModelHandle) -> str | None:
    """The matmul dtype of a live fit on ``handle``: "bfloat16" for a float32 model on a CPU with bfloat16
    matrix units, else None (as loaded). ``EMPATHY_FIT_MATMUL`` ("float32" or "bfloat16") overrides."""
    want = os.environ.get(MATMUL_ENV, "").strip().lower()
    if want in ("float32", "none", "off"):
        return None
    cpu_f32 = handle.device.type == "cpu" and handle.dtype == torch.float32
    if want == "bfloat16":
        return "bfloat16" if handle.dtype == torch.float32 else None  # a bfloat16 model has nothing to autocast
    if want:
        raise ValueError(f"{MATMUL_ENV}={want!r}: use float32 or bfloat16")
    return "bfloat16" if cpu_f32 and cpu_has_bf16_matmul() else None


def fit_version(matmul_autocast: str | None) -> str:
    """What the fit's folder is keyed by besides model, revision and dataset: the code version, and the matmul
    autocast dtype where there is one (so a bfloat16-matmul fit and a float32 one are kept apart).
    ``current_fit`` finds either, since both are fits of this dataset by this code."""
    return CODE_VERSION if matmul_autocast is None else f"{CODE_VERSION}+{matmul_autocast}-matmul"


def fit_model(handle: ModelHandle, report: Report | None = None, progress: bool = False,
              settings: DetectionSettings | None = None) -> FitResult:
    """Run the detection experiment on ``handle`` and write the probe and its metrics to the user cache.

    Without ``settings`` the defaults are used, with ``fit_matmul_dtype``'s matmul dtype."""
    t0 = time.perf_counter()
    sha = dataset.dataset_sha256()
    s = settings or DetectionSettings(matmul_dtype=fit_matmul_dtype(handle))
    probe, record = run_detection(handle, s, progress=progress, report=report)
    fitted_at = datetime.now(UTC).isoformat(timespec="seconds")
    record["fitted_on_this_machine_at"] = fitted_at
    out = store.fit_dir(handle.key, handle.revision, sha, fit_version(s.matmul_dtype))
    probe.save(out / "probes.safetensors")
    store.write_json(out / "detection.json", record)
    seconds = round(time.perf_counter() - t0, 2)
    store.write_json(out / store.FIT_FILE, {"model_id": handle.key, "revision": handle.revision, "dataset_sha256": sha,
                                            "code_version": CODE_VERSION, "fitted_at": fitted_at, "seconds": seconds,
                                            "best_layer": record["best_layer"],
                                            "matmul_autocast": s.matmul_dtype,
                                            "model_dtype": str(handle.dtype).removeprefix("torch.")})
    return FitResult(handle.key, out, fitted_at, seconds, int(record["best_layer"]))


@dataclass
class FitJob:
    """One running fit: its future and how far it is (read by every visitor waiting on it)."""

    model_id: str
    future: Future[FitResult] = field(default_factory=Future)
    fraction: float = 0.0
    description: str = "starting"

    def report(self, fraction: float, description: str) -> None:
        self.fraction, self.description = float(fraction), description


class Fitter:
    """At most one fit per model at a time; a second request for the same model joins the running one."""

    def __init__(self) -> None:
        self._jobs: dict[str, FitJob] = {}
        self._lock = threading.Lock()
        self.started = 0  # fits actually started (a joined request does not count)

    def job(self, model_id: str, start: Callable[[FitJob], object]) -> tuple[FitJob, bool]:
        """The running job for ``model_id``, or a new one handed to ``start``; returns (job, whether it is new)."""
        with self._lock:
            job = self._jobs.get(model_id)
            if job is not None and not job.future.done():
                return job, False
            job = self._jobs[model_id] = FitJob(model_id)
            self.started += 1
        start(job)
        return job, True

    def run(self, job: FitJob, handle: ModelHandle) -> FitResult:
        """Do the fit for ``job`` (on whichever thread calls this) and settle its future."""
        try:
            result = fit_model(handle, report=job.report)
        except BaseException as exc:
            job.future.set_exception(exc)
            raise
        job.report(1.0, "done")
        job.future.set_result(result)
        return result
