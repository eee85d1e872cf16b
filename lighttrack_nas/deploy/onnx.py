"""ONNX export of a tracking model's two branches, and an ONNX Runtime model with the same interface.

Two graphs per model (batch 1, static shapes, exported by ``torch.onnx.export(dynamo=True)``):

- template graph ``<name>.template.onnx``: ``z (1, 3, T, T)`` -> template features ``zf0, zf1, ...``
  (for a fused model: the neck's correlation kernel and bias; for a training-form model: the
  normalised template feature map), run once per sequence;
- frame graph ``<name>.onnx``: ``x (1, 3, S, S), zf0, zf1, ...`` -> ``cls (1, 1, H, W)``,
  ``reg (1, 4, H, W)``, run per frame.

Both record ``template_size``, ``search_size``, ``stride`` and ``arch`` in their metadata (an int8
frame graph also ``precision: int8``), so :class:`OnnxTrackingModel` needs nothing but the files
(and ONNX Runtime) to track.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from ..io import atomic_write
from ..models.tracking import TrackingNet

OPTIMIZATION_LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                       "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                       "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                       "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
"""ONNX Runtime graph optimisation levels; ``all`` adds the NCHWc (blocked) layout kernels."""
GEOMETRY = ("template_size", "search_size", "stride")


def template_path(path: str | Path) -> Path:
    """Where the template graph of the frame graph ``path`` goes: ``model.onnx`` -> ``model.template.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.template{path.suffix or '.onnx'}")


class _TemplateBranch(nn.Module):
    def __init__(self, model: TrackingNet):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _as_tuple(self.model.template_features(z))


class _FrameBranch(nn.Module):
    def __init__(self, model: TrackingNet, pack: bool):
        super().__init__()
        self.model, self.pack = model, pack

    def forward(self, x: torch.Tensor, *zf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.head(zf if self.pack else zf[0], x)


def _as_tuple(value: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


@contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers (``""``: the root logger) to at least ``level`` for the block: the ONNX
    tool chain logs a line per pass or tensor at INFO, which would bury a tool's own output."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, level))
    try:
        yield
    finally:
        for logger, old in zip(loggers, levels):
            logger.setLevel(old)


def module_to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
                   output_names: list[str], metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """Export ``module(*args)`` (eval mode, static shapes) with the torch.export-based exporter."""
    # torch.onnx notes such as "torchvision is not installed"; onnx_ir logs every initializer it merges
    with quiet_loggers("torch.onnx", "onnx_ir", level=logging.ERROR), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), args, None, dynamo=True, verbose=False,
                                    input_names=input_names, output_names=output_names)
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    return proto


def export_branches(model: TrackingNet) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The (template graph, frame graph) of a tracking model (training or fused form)."""
    model.eval()
    z = torch.randn(1, 3, model.template_size, model.template_size)
    x = torch.randn(1, 3, model.search_size, model.search_size)
    with torch.no_grad():
        zf = model.template_features(z)
    names = [f"zf{i}" for i in range(len(_as_tuple(zf)))]
    meta = {key: str(int(getattr(model, key))) for key in GEOMETRY}
    meta["arch"] = str(getattr(model, "arch", ""))
    template = module_to_onnx(_TemplateBranch(model), (z,), ["z"], names, meta)
    frame = module_to_onnx(_FrameBranch(model, not isinstance(zf, torch.Tensor)), (x, *_as_tuple(zf)),
                           ["x", *names], ["cls", "reg"], meta)
    return template, frame


def export_onnx(model: TrackingNet, path: str | Path,
                calibration: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
                keep_float: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write the template graph to ``template_path(path)`` and the frame graph to ``path`` (each
    atomically); with ``calibration`` crops the frame graph is quantised to int8 first, but for the op
    types in ``keep_float`` (``None``: the heads' output layers,
    :func:`~lighttrack_nas.deploy.quantize.quantize_graph`)."""
    path = Path(path)
    template, frame = export_branches(model)
    if calibration is not None:
        from .quantize import quantize_branches

        template, frame = quantize_branches(template, frame, calibration, keep_float=keep_float)
    for graph, target in ((template, template_path(path)), (frame, path)):
        atomic_write(target, graph.SerializeToString())
    return template_path(path), path


def session_options(threads: int = 1, optimization: str = "all") -> ort.SessionOptions:
    """Sequential execution on ``threads`` intra-op threads at an ``OPTIMIZATION_LEVELS`` level.

    The worker threads sleep between runs instead of spinning: a spinning pool holds the cores the
    tracker's own cropping and post-processing need, which cost the 2-thread tracker 1.7-2.7x in
    frame rate for 10-25 % of network time (docs/benchmarks.md, issue 30)."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"unknown optimisation level {optimization!r}; choose from {list(OPTIMIZATION_LEVELS)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    opts.log_severity_level = 3  # errors only (the NCHWc serialisation note is not one)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def create_session(graph: onnx.ModelProto | str | Path, threads: int = 1, optimization: str = "all",
                   options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for a graph (proto or file)."""
    source = graph.SerializeToString() if isinstance(graph, onnx.ModelProto) else str(graph)
    if isinstance(graph, (str, Path)) and not Path(graph).is_file():
        raise FileNotFoundError(f"{graph}: ONNX graph not found")
    return ort.InferenceSession(source, options or session_options(threads, optimization),
                                providers=["CPUExecutionProvider"])


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


class OnnxTrackingModel(nn.Module):
    """A tracking model run by ONNX Runtime, with :class:`TrackingNet`'s ``template(z)`` /
    ``track(x)`` interface (torch tensors in and out) and geometry attributes, so
    :class:`~lighttrack_nas.tracker.Tracker` runs it unchanged. It holds no torch parameters."""

    def __init__(self, template_graph: onnx.ModelProto | str | Path, frame_graph: onnx.ModelProto | str | Path,
                 threads: int = 1, optimization: str = "all"):
        super().__init__()
        self.threads, self.optimization = threads, optimization
        self.template_session = create_session(template_graph, threads, optimization)
        self.frame_session = create_session(frame_graph, threads, optimization)
        meta = self.frame_session.get_modelmeta().custom_metadata_map
        missing = [k for k in GEOMETRY if k not in meta]
        if missing:
            raise ValueError(f"frame graph lacks metadata {missing}: export it with export_onnx()")
        self.template_size, self.search_size, self.stride = (int(meta[k]) for k in GEOMETRY)
        self.score_size = self.search_size // self.stride
        self.arch = meta.get("arch", "")
        self.precision = meta.get("precision", "float32")
        self._names = [o.name for o in self.template_session.get_outputs()]
        self._zf: dict[str, np.ndarray] | None = None

    @classmethod
    def load(cls, path: str | Path, threads: int = 1, optimization: str = "all") -> "OnnxTrackingModel":
        """Open ``path`` (frame graph) and ``template_path(path)``."""
        return cls(template_path(path), path, threads, optimization)

    def template_features(self, z: torch.Tensor) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self.template_session.run(None, {"z": _numpy(z)})))

    def head(self, zf: dict[str, np.ndarray], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls, reg = self.frame_session.run(None, {"x": _numpy(x), **zf})
        return torch.from_numpy(cls), torch.from_numpy(reg)

    def template(self, z: torch.Tensor) -> None:
        """Compute and cache template features (once per sequence)."""
        self._zf = self.template_features(z)

    def track(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification logits (1,1,H,W) and l,t,r,b distances (1,4,H,W) for a search crop."""
        if self._zf is None:
            raise RuntimeError("call template(z) before track(x)")
        return self.head(self._zf, x)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.template_features(z), x)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, precision={self.precision}, threads={self.threads}, "
                f"optimization={self.optimization!r}")


def onnx_runner(module: nn.Module, inputs: Sequence[torch.Tensor], threads: int = 1,
                optimization: str = "all", int8: bool = False) -> Callable[[], list[np.ndarray]]:
    """Export ``module(*inputs)`` (with ``int8``: every layer quantised, as blocks are inside the int8
    graph, calibrated on normal random inputs of the same shapes) and return a call running it once in
    ONNX Runtime on those inputs (what a per-op latency table times for the ``onnxruntime`` and
    ``onnxruntime-int8`` backends; the heads' last layers, float in the deployed graph, are timed int8
    too: a table's fit on whole subnets absorbs the difference)."""
    names = [f"in{i}" for i in range(len(inputs))]
    with torch.no_grad():
        outputs = _as_tuple(module.eval()(*inputs))
    graph = module_to_onnx(module, tuple(inputs), names, [f"out{i}" for i in range(len(outputs))])
    if int8:
        from .quantize import quantize_graph

        graph = quantize_graph(graph, [{n: _numpy(torch.randn_like(t)) for n, t in zip(names, inputs)}
                                       for _ in range(2)], keep_float=())   # blocks as inside the graph
    session = create_session(graph, threads, optimization)
    feeds = {n: _numpy(t) for n, t in zip(names, inputs)}
    return lambda: session.run(None, feeds)
