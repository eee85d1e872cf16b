"""Deployment: the fused inference form of subnets and the ONNX Runtime backend.

``inference_model(model, backend, threads)`` turns an extracted subnet into what the tracker runs:
``torch`` -> ``fuse(model)``; ``onnxruntime`` -> the fused form exported to ONNX and run by ONNX
Runtime (:class:`~lighttrack_nas.deploy.onnx.OnnxTrackingModel`); ``onnxruntime-int8`` -> that
export with its per-frame graph statically quantised to int8 (:mod:`~lighttrack_nas.deploy.quantize`),
calibrated on tracking crops. All keep the ``template(z)`` / ``track(x)`` interface and the geometry
attributes. ONNX (and onnxruntime) load on first use.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..models.tracking import TrackingNet
from .fuse import FusedTrackingNet, fold_bn, fuse

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")


def inference_model(model: nn.Module, backend: str = "torch", threads: int = 1,
                    calibration: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
                    keep_float: Sequence[str] | None = None) -> nn.Module:
    """The deployment form of ``model`` for ``backend`` (one of :data:`BACKENDS`), in eval mode.

    A :class:`TrackingNet` subnet is fused first; any other tracking model (``template``/``track``)
    runs as given on ``torch``, and needs ``template_features``/``head`` to be exported.
    ``onnxruntime-int8`` needs ``calibration``: tracking crop pairs ``(z, x)`` at the model's crop sizes
    (:func:`~lighttrack_nas.deploy.quantize.calibration_crops`); ``keep_float`` names op types it leaves
    in float (:func:`~lighttrack_nas.deploy.quantize.quantize_graph`; ``None``: its default, the heads'
    output layers).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
    if backend == "onnxruntime-int8" and calibration is None:
        from .quantize import CalibrationError

        raise CalibrationError("backend onnxruntime-int8 needs calibration crops (e.g. --calibration N from the "
                               "train split)")
    if isinstance(model, TrackingNet) and not isinstance(model, FusedTrackingNet):
        model = fuse(model)
    if backend == "torch":
        return model.eval()
    from .onnx import OnnxTrackingModel, export_branches

    graphs = export_branches(model)
    if backend == "onnxruntime-int8":
        from .quantize import quantize_branches

        graphs = quantize_branches(*graphs, calibration, keep_float=keep_float)
    return OnnxTrackingModel(*graphs, threads=threads)


__all__ = ["BACKENDS", "FusedTrackingNet", "fold_bn", "fuse", "inference_model"]
