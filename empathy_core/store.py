"""Results storage: the one home for reading and writing ``precomputed/`` (and any other results root).

    precomputed/KEY/probes.safetensors   the probe (directions, norms, thresholds, calibration)
    precomputed/KEY/detection.json       per-layer detection metrics, best layer
    precomputed/KEY/steering.json        the steering sweep (when precomputed)
    precomputed/*.json                   cross-model, reference study, manifest

``EMPATHY_PRECOMPUTED`` moves the default root. Missing results raise ``StoreError``, whose
message says which command makes them.

    >>> from empathy_core import store
    >>> store.load_detection("smollm2-135m")["best_layer"]   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .core.probes import Probe

PRECOMPUTED = Path(os.environ.get("EMPATHY_PRECOMPUTED") or Path(__file__).resolve().parent.parent / "precomputed")


class StoreError(UserError):
    """A result file is missing; the message names the command that writes it."""


def model_dir(key: str, root: Path | None = None) -> Path:
    """The folder of one model's results (a hub id's ``/`` becomes ``__``)."""
    safe = key.replace("/", "__")
    return (root or PRECOMPUTED) / safe


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a temporary file, then a rename); NaN is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """The JSON in ``path`` (a fresh copy; see ``load_optional`` for the cached reads of the app)."""
    return json.loads(Path(path).read_text())


def probe_path(key: str, root: Path | None = None) -> Path:
    """Where a model's probe file lives."""
    return model_dir(key, root) / "probes.safetensors"


def has_probe(key: str, root: Path | None = None) -> bool:
    """Whether a model has a stored probe."""
    return probe_path(key, root).exists()


def load_detection(key: str, root: Path | None = None) -> dict:
    """``KEY/detection.json``; ``StoreError`` if it is missing."""
    path = model_dir(key, root) / "detection.json"
    if not path.exists():
        raise StoreError(f"No detection results for {key} at {path}. "
                         f"Run `python -m empathy_core extract --model {key}` first.")
    return read_json(path)


def load_probe(key: str, root: Path | None = None) -> Probe:
    """``KEY/probes.safetensors``; ``StoreError`` if it is missing."""
    path = probe_path(key, root)
    if not path.exists():
        raise StoreError(f"No probe file for {key} at {path}. Run `python -m empathy_core extract --model {key}` first.")
    from .core.probes import Probe  # torch: imported only when a probe is read

    return Probe.load(path)


SWEEP_DIRECTION = "sweep_direction.safetensors"


def load_sweep_probe(key: str, root: Path | None = None) -> Probe:
    """``KEY/sweep_direction.safetensors``: the probe the committed steering sweep used (kept when the detection
    probe was refitted on a newer dataset); ``StoreError`` if it is missing."""
    path = model_dir(key, root) / SWEEP_DIRECTION
    if not path.exists():
        raise StoreError(f"No sweep direction for {key} at {path}. "
                         f"`python -m empathy_core precompute --model {key} --only detection` keeps one.")
    from .core.probes import Probe

    return Probe.load(path)


def load_optional(key: str, name: str, root: Path | None = None) -> dict | None:
    """``KEY/NAME`` as JSON, or None where it is missing (for replays that may have nothing to show).

    Cached while the file is unchanged: treat the result as read-only.
    """
    return _cached(model_dir(key, root) / name)


def load_shared(name: str, root: Path | None = None) -> dict | None:
    """A file of the results root shared by every model (``cross_model.json``, ``reference_study.json``), or None.

    Cached while the file is unchanged: treat the result as read-only.
    """
    return _cached((root or PRECOMPUTED) / name)


def _cached(path: Path) -> dict | None:
    return _read_cached(str(path), path.stat().st_mtime_ns) if path.exists() else None


@lru_cache(maxsize=32)
def _read_cached(path: str, mtime_ns: int) -> dict:
    return read_json(Path(path))


# ---------------------------------------------------------------------- fits made on this machine (the user cache)
FIT_FILE = "fit.json"


def fits_root() -> Path:
    """``$EMPATHY_CACHE/fits`` (default ``~/.cache/empathy_probes/fits``; ``EMPATHY_FITS`` moves it alone):
    probes fitted here, never in ``precomputed/``."""
    if os.environ.get("EMPATHY_FITS"):
        return Path(os.environ["EMPATHY_FITS"])
    return Path(os.environ.get("EMPATHY_CACHE") or Path.home() / ".cache" / "empathy_probes") / "fits"


def fit_slug(model_id: str) -> str:
    """A folder name for a model id or a local directory's path."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id.strip("/"))[:120] or "model"


def fit_dir(model_id: str, revision: str, dataset_sha256: str, code_version: str) -> Path:
    """``fits/<slug>/<hash>``: the hash covers model id, revision, dataset sha256 and code version (``fit.fit_version``:
    with the matmul autocast dtype, where there is one)."""
    h = hashlib.sha256(json.dumps([model_id, revision, dataset_sha256, code_version]).encode()).hexdigest()[:16]
    return fits_root() / fit_slug(model_id) / h


def find_fit(model_id: str, dataset_sha256: str, code_version: str, revision: str | None = None) -> Path | None:
    """The newest complete fit for ``model_id`` made with this dataset and code (and ``revision`` when given)."""
    base = fits_root() / fit_slug(model_id)
    if not base.is_dir():
        return None
    found = []
    for d in base.iterdir():
        meta_path = d / FIT_FILE
        if not meta_path.is_file():
            continue  # unfinished: fit.json is written last
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError):
            continue
        if (meta.get("model_id") == model_id and meta.get("dataset_sha256") == dataset_sha256
                and meta.get("code_version") == code_version and (revision is None or meta.get("revision") == revision)):
            found.append((meta.get("fitted_at", ""), d))
    return max(found)[1] if found else None
