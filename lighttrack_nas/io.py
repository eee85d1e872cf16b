"""The one way outputs reach the disk: atomically (a unique temporary file in the same folder,
flushed and fsynced, then renamed over the target), so an interrupted run never leaves a torn file;
and the one way a process claims an output folder (:func:`locked`), so two runs never write into
one run's files at once."""
from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import StopError

log = logging.getLogger(__name__)


class BusyError(StopError):
    """Another process holds the lock of an output folder; the message names it and its pid."""


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically. The file gets the permissions a plain ``open(path, "w")``
    would (``0o666`` less the umask), not the owner-only ones of the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON, atomically."""
    atomic_write(path, json.dumps(data, indent=indent))


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save(obj)`` atomically (serialised in memory first)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib figure drawn by Agg, outside pyplot's global state (nothing to close, one
    figure per thread, no display needed); ``kwargs`` go to ``Figure`` (``figsize``, ``layout``, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Any, path: str | Path, dpi: int = 100) -> Path:
    """A figure from :func:`new_figure` as PNG, laid out tight (unless it has a layout engine of its
    own), written atomically."""
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write(path, buffer.getvalue())
    return Path(path)


@contextmanager
def locked(path: str | Path, wait: bool = False, what: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (created, holding the holder's pid) for the
    block. With ``wait`` a second process waits its turn (for work it may then find done); without,
    it gets a :class:`BusyError` naming ``what`` (default: the lock's folder) and the holder's pid.
    The lock is the kernel's (``flock``): it goes with its process, so a killed run never leaves a
    stale one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            if not wait:
                raise BusyError(f"{what or path.parent}: in use by another process (pid {holder}); wait for it to "
                                "finish or choose another --out") from None
            log.info("waiting for %s: held by another process (pid %s)", what or path.parent, holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
