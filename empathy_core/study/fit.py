"""Fit the probe on this machine: the detection experiment of ``extract``, written to the user cache.

    python -m empathy_core fit --model Qwen/Qwen2.5-7B-Instruct      # or a local model directory

The result goes to ``$EMPATHY_CACHE/fits/<model>/<hash>/`` (``probes.safetensors``,
``detection.json`` and ``fit.json``, written last), never into ``precomputed/``. The hash covers
the model id, its revision, the dataset's sha256 and the code version, so a changed dataset or
code makes a fresh fit, and a later visit or a restarted app finds the old one.

``Fitter`` runs one fit at a time per model: a second caller asking for the same model while
it runs gets the same job and waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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


def fit_model(handle: ModelHandle, report: Report | None = None, progress: bool = False,
              settings: DetectionSettings | None = None) -> FitResult:
    """Run the detection experiment on ``handle`` and write the probe and its metrics to the user cache."""
    t0 = time.perf_counter()
    sha = dataset.dataset_sha256()
    probe, record = run_detection(handle, settings or DetectionSettings(), progress=progress, report=report)
    fitted_at = datetime.now(UTC).isoformat(timespec="seconds")
    record["fitted_on_this_machine_at"] = fitted_at
    out = store.fit_dir(handle.key, handle.revision, sha, CODE_VERSION)
    probe.save(out / "probes.safetensors")
    store.write_json(out / "detection.json", record)
    seconds = round(time.perf_counter() - t0, 2)
    store.write_json(out / store.FIT_FILE, {"model_id": handle.key, "revision": handle.revision, "dataset_sha256": sha,
                                            "code_version": CODE_VERSION, "fitted_at": fitted_at, "seconds": seconds,
                                            "best_layer": record["best_layer"]})
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
