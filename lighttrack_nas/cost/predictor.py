"""A latency predictor fitted on measured whole subnets (any backend), within measurement noise.

A per-op lookup table times every op alone and sums along the path, which misses what happens in
context: fusion (Conv + activation, QDQ pairs into QLinearConv), layout changes between ops and
caches. :class:`LatencyModel` instead learns from whole subnets timed as deployed. Its features are
per-block: the fvcore MACs along an architecture's path, summed per group at three granularities,
all (MACs of the whole path), per op kind (``k5e6``, ``cls:k3``, ``neck``, ...) and per op kind and
stage (``k5e6@stage3``, ``cls:k3@s16``); plus the number of ops run (dispatch overhead) and a constant.
Seconds per frame are then a non-negative linear function of these, fitted by ridge-regularised
non-negative least squares on relative errors; the coarse groups carry what the data cannot pin
down per stage, and the ridge weight is chosen by 5-fold cross-validation.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from ..io import write_json
from ..machine import machine_info
from ..models.lighttrack import LightTrackSupernet
from ..space.space import Architecture
from .latency import LatencyTable, _check_backend, backend_settings, random_architectures, time_subnets
from .count import fvcore_macs
from .table import PathTable

RIDGE_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class LatencyModel:
    """Predicted seconds per frame = ``weights . features(arch)`` (see the module docstring)."""

    kind = "regression"

    def __init__(self, names: list[str], weights: np.ndarray, scale: np.ndarray, meta: dict[str, Any]):
        self.names, self.weights, self.scale, self.meta = list(names), np.asarray(weights), np.asarray(scale), meta
        self._index = {n: i for i, n in enumerate(self.names)}
        self._featurizer: Callable[[Architecture], dict[str, float]] | None = None

    @staticmethod
    def featurizer(supernet: LightTrackSupernet) -> Callable[[Architecture], dict[str, float]]:
        """``arch -> {feature name: value}`` for the supernet's space (MACs in millions)."""
        costs = PathTable.measure(supernet, fvcore_macs)
        stage = {i: supernet.space.choice(label).group for i, label in enumerate(costs.layer_labels)}

        def groups(key: tuple) -> tuple[str, str]:
            if key[0] == "stem":
                return "stem", "stem"
            if key[0] == "layer":
                return key[2], f"{key[2]}@{stage[key[1]]}"
            if key[0] == "neck":
                return "neck", f"neck@{key[1]}"
            kind, op, stride = key[1], key[4], key[5]
            return f"{kind}:{op}", f"{kind}:{op}@s{stride}"

        def features(arch: Architecture) -> dict[str, float]:
            out = {"const": 1.0, "ops": 0.0, "macs": 0.0}
            for _, key in costs.path(arch):
                macs = costs.entries[key] / 1e6
                if macs == 0:
                    continue
                out["ops"] += 1
                out["macs"] += macs
                for name in groups(key):
                    out[f"macs:{name}"] = out.get(f"macs:{name}", 0.0) + macs
            return out

        return features

    @classmethod
    def fit(cls, supernet: LightTrackSupernet, archs: list[Architecture], seconds: np.ndarray,
            meta: dict[str, Any] | None = None, folds: int = 5) -> "LatencyModel":
        """Fit on measured ``seconds`` of ``archs`` (at least 10)."""
        seconds = np.asarray(seconds, dtype=np.float64)
        if len(archs) < 10 or len(archs) != len(seconds):
            raise ValueError(f"a latency model needs at least 10 measured subnets with one time each, "
                             f"got {len(archs)} subnets and {len(seconds)} times")
        featurize = cls.featurizer(supernet)
        rows = [featurize(a) for a in archs]
        names = sorted({n for r in rows for n in r})
        x = np.array([[r.get(n, 0.0) for n in names] for r in rows])
        scale = np.where(x.std(axis=0) > 0, x.std(axis=0), np.abs(x).max(axis=0) + 1e-12)
        xs = x / scale
        rng = np.random.default_rng(0)
        fold = rng.permutation(len(seconds)) % folds
        errors = []
        for lam in RIDGE_GRID:
            err = []
            for k in range(folds):
                train, test = fold != k, fold == k
                w = _ridge_nnls(xs[train], seconds[train], lam)
                err.append(np.abs(xs[test] @ w - seconds[test]) / seconds[test])
            errors.append(float(np.mean(np.concatenate(err))))
        lam = RIDGE_GRID[int(np.argmin(errors))]
        weights = _ridge_nnls(xs, seconds, lam)
        meta = {**(meta or {}), "space": supernet.space.name, "settings": supernet.space.settings,
                "fit_subnets": len(archs), "ridge": lam, "cv_mean_abs_rel_error": min(errors)}
        model = cls(names, weights, scale, meta)
        model._featurizer = featurize
        return model

    @classmethod
    def build(cls, supernet: LightTrackSupernet, threads: int = 1, fit_subnets: int = 100, seed: int = 0,
              backend: str = "torch", min_run_time: float = 0.3,
              progress: Callable[[int], None] | None = None, repeats: int = 3) -> "LatencyModel":
        """Time ``fit_subnets`` random subnets (seed ``seed``) as ``backend`` runs them, each the median
        of ``repeats`` interleaved rounds (``progress``: ``subnet_steps(fit_subnets, repeats)`` calls), and fit."""
        _check_backend(backend)
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        archs = random_architectures(supernet, fit_subnets, seed)
        seconds = np.median(time_subnets(supernet, archs, threads, backend, repeats, min_run_time, progress), axis=0)
        meta = {"threads": threads, **backend_settings(backend), "machine": machine_info(),
                "min_run_time": min_run_time, "seed": seed, "repeats": repeats}
        return cls.fit(supernet, archs, seconds, meta)

    def bind(self, supernet: LightTrackSupernet) -> "LatencyModel":
        """Attach the supernet's cost tables (needed after ``load``)."""
        if supernet.space.name != self.meta["space"] or supernet.space.settings != self.meta["settings"]:
            raise ValueError(f"latency model was fitted for space {self.meta['space']!r} with other settings")
        self._featurizer = self.featurizer(supernet)
        return self

    def predict(self, arch: Architecture) -> float:
        """Predicted per-frame network latency in seconds."""
        if self._featurizer is None:
            raise RuntimeError("call bind(supernet) on a loaded latency model first")
        feats = self._featurizer(arch)
        x = np.array([feats.get(n, 0.0) for n in self.names]) / self.scale
        return float(x @ self.weights)

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (atomically)."""
        data = {"kind": self.kind, "meta": self.meta, "names": self.names, "weights": self.weights.tolist(),
                "scale": self.scale.tolist()}
        write_json(path, data, indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyModel":
        return cls(data["names"], np.array(data["weights"], dtype=np.float64),
                   np.array(data["scale"], dtype=np.float64), data["meta"])


def _ridge_nnls(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """argmin_{w >= 0} sum(((x w - y) / y)^2) + lam * len(y) * |w / mean(y)|^2, solved for v = w / mean(y)."""
    unit = float(np.mean(y))
    a = np.vstack([x * unit / y[:, None], np.sqrt(lam * len(y)) * np.eye(x.shape[1])])
    b = np.concatenate([np.ones(len(y)), np.zeros(x.shape[1])])
    return unit * nnls(a, b, maxiter=50 * x.shape[1])[0]


def load_latency_predictor(path: str | Path) -> LatencyTable | LatencyModel:
    """A latency table (tools/build_latency_lut.py --predictor lut) or fitted latency model
    (--predictor regression) from its JSON file; call ``bind(supernet)`` before ``predict``. One made
    for graphs the backend no longer builds (int8 graphs with other op types kept float) is refused."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: latency predictor not found (build it with tools/build_latency_lut.py)") from None
    except ValueError as err:
        raise ValueError(f"{path}: not a latency predictor ({err})") from None
    if isinstance(data, dict) and data.get("kind") == LatencyModel.kind:
        try:
            predictor = LatencyModel.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a latency model ({err})") from None
    else:
        predictor = LatencyTable.load(path)
    backend = predictor.meta.get("backend", "torch")
    kept, wanted = predictor.meta.get("keep_float", []), backend_settings(backend).get("keep_float", [])
    if kept != wanted:
        raise ValueError(f"{path}: made for {backend} graphs keeping {kept or 'nothing'} float, but that backend "
                         f"now keeps {wanted or 'nothing'} float: rebuild it (tools/build_latency_lut.py "
                         f"--backend {backend})")
    return predictor
