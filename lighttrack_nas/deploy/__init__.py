"""Deployment: the fused inference form of subnets and the ONNX Runtime backend.

``inference_model(model, backend, threads)`` turns an extracted subnet into what the tracker runs:
``torch`` -> ``fuse(model)``; ``onnxruntime`` -> the fused form exported to ONNX and run by ONNX
Runtime (:class:`~lighttrack_nas.deploy.onnx.OnnxTrackingModel`). Both keep the ``template(z)`` /
``track(x)`` interface and the geometry attributes. ONNX (and onnxruntime) load on first use.
"""
from __future__ import annotations

from torch import nn

from ..models.lighttrack import TrackingNet
from .fuse import FusedTrackingNet, fold_bn, fuse

BACKENDS = ("torch", "onnxruntime")


def inference_model(model: nn.Module, backend: str = "torch", threads: int = 1) -> nn.Module:
    """The deployment form of ``model`` for ``backend`` (one of :data:`BACKENDS`), in eval mode.

    A :class:`TrackingNet` subnet is fused first; any other tracking model (``template``/``track``)
    runs as given on ``torch``, and needs ``template_features``/``head`` to be exported.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
    if isinstance(model, TrackingNet) and not isinstance(model, FusedTrackingNet):
        model = fuse(model)
    if backend == "torch":
        return model.eval()
    from .onnx import OnnxTrackingModel

    return OnnxTrackingModel.from_model(model, threads)


__all__ = ["BACKENDS", "FusedTrackingNet", "fold_bn", "fuse", "inference_model"]
