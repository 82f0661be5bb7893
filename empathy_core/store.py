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
