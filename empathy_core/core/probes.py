"""Empathy directions: fitting (mean difference, logistic regression, PCA of pair
differences), and a safetensors file format with metadata. Nothing is pickled.

A direction is a unit vector per layer, signed so that empathic text projects higher on
the training data. A ``Probe`` also keeps, per layer, the mean residual norm (so steering
can use relative alpha), the train class means of the projection, the accuracy threshold
(their midpoint) and a Platt calibration fitted on the dev split.

Example:
    >>> import torch
    >>> from empathy_core.probes import fit_direction
    >>> X = torch.randn(40, 8); y = torch.tensor([1, 0] * 20)
    >>> X[y == 1] += torch.eye(8)[0] * 3
    >>> d = fit_direction(X, y, "mean_diff")
    >>> round(float(d[0]), 1) > 0.9
    True
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import torch
from numpy.typing import ArrayLike
from safetensors import safe_open
from safetensors.torch import save_file

from .activations import LAYER_CONVENTION
from .ood import CantJudge

Method = Literal["mean_diff", "logistic", "pca"]
METHODS: tuple[str, ...] = ("mean_diff", "logistic", "pca")
SCHEMA = "empathy-probe/1"


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    if not torch.isfinite(n) or n == 0:
        raise ValueError("Cannot normalise a zero or non-finite direction.")
    return v / n


def fit_direction(X: torch.Tensor, y: ArrayLike, method: Method = "mean_diff",
                  pair_ids: Sequence[str] | None = None) -> torch.Tensor:
    """One layer's unit direction from activations X (N, H) and labels y (1 = empathic).

    ``pca`` needs ``pair_ids`` to match each empathic text with its task-focused twin; it
    takes the first principal axis of the (uncentred) pair differences.
    """
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y)).bool()
    if y.all() or not y.any():
        raise ValueError("Fitting a direction needs both empathic and task-focused examples.")
    if method == "mean_diff":
        d = X[y].mean(0) - X[~y].mean(0)
    elif method == "logistic":
        from sklearn.linear_model import LogisticRegression

        mu, sd = X.mean(0), X.std(0) + 1e-8
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(((X - mu) / sd).numpy(), y.numpy())
        d = torch.as_tensor(lr.coef_[0]) / sd  # back to activation space
    elif method == "pca":
        if pair_ids is None:
            raise ValueError("method='pca' needs pair_ids.")
        pos = {p: i for i, (p, lab) in enumerate(zip(pair_ids, y.tolist())) if lab}
        neg = {p: i for i, (p, lab) in enumerate(zip(pair_ids, y.tolist())) if not lab}
        common = sorted(set(pos) & set(neg))
        diffs = X[[pos[p] for p in common]] - X[[neg[p] for p in common]]  # (P, H)
        _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
        d = vh[0]
    else:
        raise ValueError(f"Unknown method {method!r}; choose from {METHODS}.")
    d = _unit(d)
    proj = X @ d
    if proj[y].mean() < proj[~y].mean():
        d = -d
    return d.float()


DETECTION_TENSORS = ("directions", "thresholds", "class_means", "calib", "gate_mean", "gate_precision")


@dataclass
class DetectionProbe:
    """The dev-chosen detection probe (``study/RULE.md``): one method and pooling, a direction per layer,
    and the can't-judge gate at the chosen layer. Stored in the probe file as ``detection.*`` tensors."""

    directions: torch.Tensor  # (L, H) unit rows, the chosen method fitted at every layer
    thresholds: torch.Tensor  # (L,) train class-mean midpoint
    class_means: torch.Tensor  # (L, 2) train mean projection of [task, empathic]
    calib: torch.Tensor  # (L, 2) Platt (a, b) on dev
    gate_mean: torch.Tensor  # (H,) the gate's reference mean at the chosen layer
    gate_precision: torch.Tensor  # (H, H) its Ledoit-Wolf precision
    meta: dict = field(default_factory=dict)  # method, pooling, layer, hyper, gate scalars, rule

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    @property
    def pooling(self) -> str:
        return str(self.meta["pooling"])

    @property
    def method(self) -> str:
        return str(self.meta["method"])

    def score(self, pooled: torch.Tensor) -> torch.Tensor:
        """Projection of pooled activations (N, L, H) on each layer's detection direction -> (N, L)."""
        return torch.einsum("nlh,lh->nl", pooled.float(), self.directions.float())

    def probability(self, score: float, layer: int | None = None) -> float:
        a, b = self.calib[self.layer if layer is None else layer].tolist()
        z = a * score + b
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def gate(self) -> CantJudge:
        """The can't-judge gate at the chosen layer."""
        return CantJudge(int(self.meta["gate"]["min_tokens"]), self.gate_mean.double().numpy(),
                         self.gate_precision.double().numpy(), float(self.meta["gate"]["max_distance"]),
                         float(self.meta["gate"].get("quantile", 0.99)))


@dataclass
class Probe:
    """Directions for every layer of one model, plus what scoring and steering need.

    ``directions`` is the study's mean difference (mean pooling): the steering direction for now.
    ``detection`` (when present) is the dev-chosen detection probe the Probe tab reads.
    """

    directions: torch.Tensor  # (L, H) unit rows
    mean_norms: torch.Tensor  # (L,) mean residual-stream norm per layer (train texts)
    thresholds: torch.Tensor  # (L,) midpoint of train class means of the projection
    class_means: torch.Tensor  # (L, 2) train mean projection of [task, empathic]
    calib: torch.Tensor  # (L, 2) Platt (a, b) fitted on dev: P = sigmoid(a * score + b)
    meta: dict = field(default_factory=dict)
    detection: DetectionProbe | None = None

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[1])

    def score(self, pooled: torch.Tensor) -> torch.Tensor:
        """Projection of pooled activations (N, L, H) on each layer's direction -> (N, L)."""
        return torch.einsum("nlh,lh->nl", pooled.float(), self.directions.float())

    def probability(self, score: float, layer: int) -> float:
        a, b = self.calib[layer].tolist()
        z = a * score + b
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def check_compatible(self, n_layers: int, hidden_size: int, key: str = "") -> None:
        if (self.n_layers, self.hidden_size) != (n_layers, hidden_size):
            raise ValueError(f"This probe has {self.n_layers} layers of width {self.hidden_size}; "
                             f"model {key} has {n_layers} layers of width {hidden_size}.")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"schema": SCHEMA, "layer_convention": LAYER_CONVENTION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **self.meta}
        tensors = {"directions": self.directions, "mean_norms": self.mean_norms, "thresholds": self.thresholds,
                   "class_means": self.class_means, "calib": self.calib}
        if self.detection is not None:
            tensors.update({f"detection.{k}": getattr(self.detection, k) for k in DETECTION_TENSORS})
            meta["detection"] = self.detection.meta
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(path),
                  metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Probe:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No probe file at {path}.")
        tensors, meta = read_safetensors(path)
        missing = {"directions", "mean_norms", "thresholds", "class_means", "calib"} - set(tensors)
        if missing:
            raise ValueError(f"{path.name} is not a probe file: it lacks {sorted(missing)}.")
        detection = None
        if all(f"detection.{k}" in tensors for k in DETECTION_TENSORS) and isinstance(meta.get("detection"), dict):
            detection = DetectionProbe(meta=meta["detection"], **{k: tensors[f"detection.{k}"] for k in DETECTION_TENSORS})
            H = tensors["directions"].shape[-1]
            if (detection.directions.shape != tensors["directions"].shape or not 0 <= detection.layer < detection.directions.shape[0]
                    or tuple(detection.gate_mean.shape) != (H,) or tuple(detection.gate_precision.shape) != (H, H)):
                raise ValueError(f"{path.name}: the detection probe does not match the file's directions.")
        return cls(meta=meta, detection=detection,
                   **{k: tensors[k] for k in ("directions", "mean_norms", "thresholds", "class_means", "calib")})


def read_safetensors(path: str | Path, max_bytes: int = 64 * 2**20) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file and check every tensor is a finite float tensor."""
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path.name} is {path.stat().st_size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # an untrusted upload: whatever the parser raises, the caller gets one clear ValueError
        raise ValueError(f"{path.name} is not a readable safetensors file ({type(exc).__name__}).") from None
    for k, v in tensors.items():
        if not v.is_floating_point():
            raise ValueError(f"Tensor {k!r} has dtype {v.dtype}; a direction must be floating point.")
        if not torch.isfinite(v).all():
            raise ValueError(f"Tensor {k!r} contains NaN or infinite values.")
    for k, v in list(meta.items()):
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            pass
    return tensors, meta


def load_direction_file(path: str | Path, n_layers: int, hidden_size: int) -> torch.Tensor:
    """A user-supplied direction file -> (L, H) unit rows.

    Accepts a probe file, llama.cpp-style tensors ``direction.N`` (layers without a tensor get a
    zero row; they win over a plain ``direction``, as in this project's one-layer export), or a
    tensor ``direction`` of shape (H,) (used at every layer) or (L, H). Width, dtype and finiteness are checked before use.
    """
    tensors, _ = read_safetensors(path)
    if "directions" in tensors:
        D = tensors["directions"]
    elif any(k.startswith("direction.") for k in tensors):  # per-layer names say where each vector belongs
        D = torch.zeros((n_layers, hidden_size))
        for k, v in tensors.items():
            if k.startswith("direction."):
                i = int(k.split(".")[1])  # llama.cpp's direction.N is our layer N (see export.py)
                if not 0 <= i < n_layers:
                    raise ValueError(f"{k} names a layer this model does not have.")
                D[i] = v.reshape(-1)[:hidden_size] if v.numel() == hidden_size else _bad_width(v, hidden_size)
    elif "direction" in tensors:
        D = tensors["direction"]
    elif len(tensors) == 1:
        D = next(iter(tensors.values()))
    else:
        raise ValueError("The file holds several tensors and none is named 'directions' or 'direction'.")
    D = D.float()
    if D.ndim == 1:
        D = D.unsqueeze(0).expand(n_layers, -1)
    if D.ndim != 2 or D.shape[-1] != hidden_size:
        raise ValueError(f"The direction has shape {tuple(D.shape)}; this model needs width {hidden_size} "
                         f"(shape ({hidden_size},) or ({n_layers}, {hidden_size})).")
    if D.shape[0] != n_layers:
        raise ValueError(f"The direction has {D.shape[0]} layers; this model has {n_layers}.")
    norms = D.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, D / norms.clamp_min(1e-12), D)


def _bad_width(v: torch.Tensor, hidden_size: int) -> NoReturn:
    raise ValueError(f"A direction of width {v.numel()} does not fit a model of width {hidden_size}.")
