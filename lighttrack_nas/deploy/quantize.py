"""INT8 inference: static quantisation of a tracking model's per-frame graph with ONNX Runtime.

The float frame graph of :func:`~lighttrack_nas.deploy.onnx.export_branches` is quantised with
``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8 weights, activations
calibrated (min / max, or a percentile) on tracking crops, whose template features come from the
float template graph. The template graph stays float by default: it runs once per sequence, so
its speed does not matter and its precision is kept (``quantize_template=True`` quantises it too).
Op types listed in ``keep_float`` (ONNX op types, ``DepthwiseConv`` for grouped convolutions, and
``Output`` for the layers that write the graph's outputs) get no quantisation of their own; the
default, :data:`DEFAULT_KEEP_FLOAT`, keeps the heads' output layers float (chosen on val: issue 30,
docs/benchmarks.md), so the classification logits and box distances are not rounded to 8 bits. Where
every input of such an op still arrives dequantised (its producers' outputs are quantised for other
consumers) and its output is quantised for the next op,
ONNX Runtime's QDQ fusion runs it in int8 all the same: of LightTrack-Mobile's four MatMuls,
``keep_float=["MatMul"]`` leaves three in float.

Calibration crops are pairs ``(z, x)``: ``z (1 or B, 3, T, T)`` template crops and ``x (.., 3, S, S)``
search crops at the model's own crop sizes (``calibration_crops`` draws them from a split).
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..data.pairs import calibration_batches
from ..data.sequence import Sequence as TrackSequence
from .onnx import GEOMETRY, create_session, quiet_loggers

CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                       "entropy": CalibrationMethod.Entropy}
"""Activation range estimators of ONNX Runtime's calibrator."""
ACTIVATION_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
DEFAULT_KEEP_FLOAT = ("Output",)
"""What the int8 backend leaves float unless told otherwise: the heads' output layers."""

Crops = Sequence[tuple[torch.Tensor, torch.Tensor]]


class CalibrationError(ValueError):
    """The calibration set cannot calibrate this model (empty, or crops of the wrong size)."""


def calibration_crops(sequences: list[TrackSequence], template_size: int, search_size: int, count: int,
                      seed: int = 12345) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` tracking crop pairs ``(z (1,3,T,T), x (1,3,S,S))`` from ``sequences`` (e.g. the train
    split): the target near the search crop's centre, as the tracker crops it, deterministic per seed."""
    if count < 1:
        raise CalibrationError(f"calibration needs at least 1 crop pair, got {count}")
    if not sequences:
        raise CalibrationError("calibration needs crops, but the calibration split has no sequences")
    return [(z[i:i + 1], x[i:i + 1]) for z, x in calibration_batches(sequences, template_size, search_size, count,
                                                                     seed=seed) for i in range(len(z))]


def check_crops(crops: Crops, template_size: int, search_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The crops as float32 arrays, one pair per batch element; a :class:`CalibrationError` names the
    first crop whose shape the model cannot take, or an empty set."""
    out = []
    for i, (z, x) in enumerate(crops):
        z, x = np.asarray(z, dtype=np.float32), np.asarray(x, dtype=np.float32)
        want_z, want_x = (3, template_size, template_size), (3, search_size, search_size)
        if z.ndim != 4 or z.shape[1:] != want_z or x.ndim != 4 or x.shape[1:] != want_x or len(z) != len(x):
            raise CalibrationError(f"calibration crop {i}: template {tuple(z.shape)} and search {tuple(x.shape)}, "
                                   f"but the model takes (B, {', '.join(map(str, want_z))}) and "
                                   f"(B, {', '.join(map(str, want_x))})")
        out += [(z[j:j + 1], x[j:j + 1]) for j in range(len(z))]
    if not out:
        raise CalibrationError("the calibration set is empty: give at least 1 crop pair")
    return out


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds = iter(list(feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _kind(node: onnx.NodeProto) -> str:
    """The node's op type, ``DepthwiseConv`` for a grouped Conv (so ``keep_float`` can name it apart)."""
    groups = [a.i for a in node.attribute if a.name == "group"]
    return "DepthwiseConv" if node.op_type == "Conv" and groups and groups[0] > 1 else node.op_type


WEIGHTED_OPS = frozenset({"Conv", "MatMul", "Gemm"})


def output_layers(graph: onnx.GraphProto) -> set[str]:
    """Names of the nodes between each graph output and the nearest Conv / MatMul / Gemm above it,
    inclusive (the heads' last layers: ``keep_float=["Output"]``), so the outputs stay float. A path
    with no such op is followed up to the graph's inputs. Every node must be named (as ONNX Runtime's
    pre-processing names them)."""
    producer = {out: node for node in graph.node for out in node.output}
    seen: set[int] = set()
    names: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        if not node.name:
            raise ValueError(f"output_layers: a {node.op_type} node writing {list(node.output)} has no name")
        seen.add(id(node))
        names.add(node.name)
        if node.op_type not in WEIGHTED_OPS:
            stack += list(node.input)
    return names


def _metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def quantize_graph(graph: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]], method: str = "minmax",
                   activations: str = "uint8", keep_float: Sequence[str] | None = None, per_channel: bool = True,
                   reduce_range: bool = False) -> onnx.ModelProto:
    """Static QDQ quantisation of ``graph`` calibrated on ``feeds`` (input name -> array), but for the op
    types in ``keep_float`` (``None``: :data:`DEFAULT_KEEP_FLOAT`); the graph's metadata is kept and
    ``precision: int8`` added."""
    keep_float = DEFAULT_KEEP_FLOAT if keep_float is None else tuple(keep_float)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {list(CALIBRATION_METHODS)}")
    if activations not in ACTIVATION_TYPES:
        raise ValueError(f"unknown activation type {activations!r}; choose from {list(ACTIVATION_TYPES)}")
    if not feeds:
        raise CalibrationError("the calibration set is empty: give at least 1 crop pair")
    meta = _metadata(graph)
    with tempfile.TemporaryDirectory(prefix="lighttrack-int8-") as tmp:
        src, pre, dst = (Path(tmp) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(graph, src)
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        with quiet_loggers("", "onnxruntime"):  # a line per tensor whose scale it adjusts
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            pre_graph = onnx.load(str(pre)).graph
            nodes = [(n.name, _kind(n)) for n in pre_graph.node]
            kinds = {kind for _, kind in nodes} | {"Output"}
            unknown = sorted(set(keep_float) - kinds)
            if unknown:
                raise ValueError(f"keep_float: {unknown} are not op types of this graph; its op types: "
                                 f"{sorted(kinds)}")
            wanted = set(keep_float)
            keep = {name for name, kind in nodes if kind in wanted}
            if "Output" in keep_float:
                keep |= output_layers(pre_graph)
            quantize_static(str(pre), str(dst), _Feeds(feeds), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            reduce_range=reduce_range, activation_type=ACTIVATION_TYPES[activations],
                            weight_type=QuantType.QInt8, nodes_to_exclude=sorted(keep),
                            calibrate_method=CALIBRATION_METHODS[method], extra_options=extra)
        proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for key, value in {**meta, "precision": "int8"}.items():
        proto.metadata_props.add(key=key, value=value)
    return proto


def quantize_branches(template: onnx.ModelProto, frame: onnx.ModelProto, crops: Crops, method: str = "minmax",
                      activations: str = "uint8", keep_float: Sequence[str] | None = None,
                      quantize_template: bool = False,
                      per_channel: bool = True, reduce_range: bool = False) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The (template, frame) graphs with the frame graph (and with ``quantize_template`` the template
    graph too, with the same ``keep_float``: by default its output layers stay float as well) quantised
    to int8, calibrated on tracking ``crops``."""
    meta = _metadata(frame)
    missing = [k for k in GEOMETRY if k not in meta]
    if missing:
        raise ValueError(f"frame graph lacks metadata {missing}: export it with export_branches()")
    pairs = check_crops(crops, int(meta["template_size"]), int(meta["search_size"]))
    session = create_session(template)
    names = [o.name for o in session.get_outputs()]
    feeds = [{"x": x, **dict(zip(names, session.run(None, {"z": z})))} for z, x in pairs]
    options = dict(method=method, activations=activations, keep_float=keep_float, per_channel=per_channel,
                   reduce_range=reduce_range)
    frame = quantize_graph(frame, feeds, **options)
    if quantize_template:
        template = quantize_graph(template, [{"z": z} for z, _ in pairs], **options)
    return template, frame


def random_crops(template_size: int, search_size: int, count: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normal random crop pairs: enough to build an int8 graph whose *speed* is right (latency tables
    and benchmarks); its accuracy needs :func:`calibration_crops`."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 3, template_size, template_size, generator=gen),
             torch.randn(1, 3, search_size, search_size, generator=gen)) for _ in range(count)]
