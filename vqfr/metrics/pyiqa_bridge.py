"""Any pyiqa metric by name (``pyiqa:musiq``, ``pyiqa:niqe``, ...), through the optional extra
``vqfr-eval[iqa]``. pyiqa is imported only when such a metric is created.

pyiqa fetches its weights on first use (``load_file_from_url`` into ``DEFAULT_CACHE_DIR`` =
``torch.hub.get_dir()/pyiqa``, from the chaofengc/IQA-PyTorch-Weights hub). Here nothing may be
downloaded: while the metric is built every download path is blocked (pyiqa's downloader,
torch.hub's, Hugging Face in offline mode, and as a last line any socket connection), and a
missing file becomes an ``AssetUnavailable`` naming the file and where to put it. Give the file
with ``weights=PATH`` (passed as pyiqa's ``pretrained_model_path``) or copy it into that cache.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from vqfr.errors import AssetUnavailable, VqfrError
from vqfr.metrics.base import Metric, MetricResult, check_images, ordered_rows


class _NetworkBlocked(RuntimeError):
    def __init__(self, what: str, url: str = "", target: str = "") -> None:
        super().__init__(what)
        self.what, self.url, self.target = what, url, target


@contextlib.contextmanager
def _no_network() -> Iterator[None]:
    """Make every way pyiqa (and the libraries under it) fetch files fail at once."""
    import huggingface_hub.constants as hf_constants
    import pyiqa.utils.download_util as pyiqa_download

    def blocked_download(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise _NetworkBlocked("download", url, dst)

    def blocked_connect(sock: socket.socket, address: Any, *args: Any, **kwargs: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise _NetworkBlocked(f"connection to {address}")
        return real_connect(sock, address, *args, **kwargs)

    real_connect = socket.socket.connect
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(pyiqa_download, "download_url_to_file",
                                              blocked_download))
        stack.enter_context(mock.patch("torch.hub.download_url_to_file", blocked_download))
        stack.enter_context(mock.patch.object(hf_constants, "HF_HUB_OFFLINE", True))
        stack.enter_context(mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1",
                                                         "TRANSFORMERS_OFFLINE": "1"}))
        stack.enter_context(mock.patch.object(socket.socket, "connect", blocked_connect))
        yield


def _blocked_cause(error: BaseException) -> _NetworkBlocked | None:
    """The blocked download behind ``error``, if any. Hugging Face downloads (timm / transformers
    backbones) fail in offline mode with LocalEntryNotFoundError; the wanted repo and file are
    read from the ``hf_hub_download`` frame of the traceback."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    while error is not None:
        if isinstance(error, _NetworkBlocked):
            return error
        if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            wanted = "a file"
            trace = error.__traceback__
            while trace is not None:
                local = trace.tb_frame.f_locals
                if trace.tb_frame.f_code.co_name == "hf_hub_download" and "repo_id" in local:
                    wanted = f"{local.get('filename')!r} of Hugging Face repo {local['repo_id']!r}"
                trace = trace.tb_next
            return _NetworkBlocked(f"Hugging Face Hub download of {wanted}")
        error = error.__cause__ or error.__context__
    return None


def _unavailable(name: str, blocked: _NetworkBlocked) -> AssetUnavailable:
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

    if blocked.url:
        filename = Path(blocked.target).name or Path(blocked.url).name
        return AssetUnavailable(
            f"pyiqa metric {name!r} needs the file {filename!r} (pyiqa downloads it from "
            f"{blocked.url}); downloads are disabled. Get the file by hand, then either pass "
            f"it as the metric's weights=PATH (pyiqa's pretrained_model_path) or copy it to "
            f"{Path(DEFAULT_CACHE_DIR) / filename}.")
    return AssetUnavailable(
        f"pyiqa metric {name!r} tried to reach the network ({blocked.what}) while loading its "
        f"weights, which is disabled. Put the files it needs into pyiqa's cache "
        f"{DEFAULT_CACHE_DIR} or the Hugging Face cache (HF_HOME), or pass weights=PATH.")


def _pyiqa_config(metric: str) -> dict[str, Any]:
    """pyiqa's default configuration of ``metric``; a clear error without pyiqa or for a name it
    does not have."""
    try:
        from pyiqa.default_model_configs import DEFAULT_CONFIGS
    except ImportError:
        raise VqfrError(f"metric pyiqa:{metric} needs pyiqa, the optional extra: "
                        "pip install 'vqfr-eval[iqa]'") from None
    if metric not in DEFAULT_CONFIGS:
        raise VqfrError(f"pyiqa has no metric {metric!r}; its {len(DEFAULT_CONFIGS)} metrics are "
                        "listed by: python -c 'import pyiqa; print(pyiqa.list_models())'")
    return DEFAULT_CONFIGS[metric]


class PyiqaMetric(Metric):
    """A pyiqa metric as a suite metric. ``options`` go to ``pyiqa.create_metric`` unchanged
    (e.g. ``color_space='ycbcr'`` for NIQE); ``weights`` becomes ``pretrained_model_path``."""

    @staticmethod
    def is_full_reference(metric: str) -> bool:
        """Whether pyiqa's ``metric`` compares with a reference image (without building it)."""
        return _pyiqa_config(metric).get("metric_mode") == "FR"

    def __init__(self, metric: str, weights: str | Path | None = None,
                 device: str | torch.device = "cpu", **options: Any) -> None:
        super().__init__()
        config = _pyiqa_config(metric)
        import pyiqa
        from pyiqa.utils.registry import ARCH_REGISTRY

        self.metric = metric
        self.name = f"pyiqa:{metric}"
        self.device = torch.device(device)
        self._options = dict(options)
        if weights is not None:
            arch = ARCH_REGISTRY.get(config["metric_opts"]["type"])
            if "pretrained_model_path" not in inspect.signature(arch).parameters:
                raise ValueError(f"pyiqa:{metric} loads several files and takes no single "
                                 f"weights path; put them into pyiqa's cache instead")
            options["pretrained_model_path"] = str(weights)
        try:
            with _no_network(), contextlib.redirect_stdout(io.StringIO()):  # pyiqa's chatter
                self.net = pyiqa.create_metric(metric, as_loss=False, device=self.device,
                                               **options)
        except Exception as error:
            blocked = _blocked_cause(error)
            if blocked is None:
                raise
            raise _unavailable(metric, blocked) from None
        self.lower_is_better = bool(self.net.lower_better)
        self.needs_reference = self.net.metric_mode == "FR"
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("values", torch.zeros(0, dtype=torch.float64), reduce="cat")

    @torch.inference_mode()
    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> None:
        check_images(restored, reference, self.name)
        if index is None:
            raise ValueError(f"{self.name}: update() needs the global image indices")
        if self.needs_reference and reference is None:
            raise ValueError(f"{self.name} is a full-reference metric: it needs the GT images")
        x = restored.to(self.device).float() / 255.0  # pyiqa wants RGB in [0, 1]
        args = (x, reference.to(self.device).float() / 255.0) if self.needs_reference else (x,)
        scores = self.net(*args).reshape(len(x))
        self.index = torch.cat([self.index, index.detach().cpu().long()])
        self.values = torch.cat([self.values, scores.detach().double().cpu()])

    def compute(self) -> MetricResult:
        index, values = ordered_rows(self.index, self.values)
        return MetricResult(value=float(values.mean()) if len(values) else float("nan"),
                            per_image=dict(zip(index.tolist(), values.tolist())),
                            extra={"count": len(values)})

    def options(self) -> dict[str, Any]:
        import pyiqa

        return {"pyiqa": pyiqa.__version__, "metric": self.metric, **self._options}
