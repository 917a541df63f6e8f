"""Run a backbone in the precision and memory layout that are fastest on this device, chosen by timing.

Grouped 3D convolutions are slower in bf16 than in TF32 on an H200, channels-last is faster for both
backbones on a Xeon CPU: the fastest mode depends on the model, the device and the library versions, so
it is measured, never assumed. :func:`pick_mode` times the candidates on a few batches and caches the
answer per process.

The memory layout is always measured (it changes speed, not results beyond float rounding). The precision
is the caller's (extraction passes its store config's ``precision``; ``auto`` measures fp32 against
bf16/fp16 too), else ``CAVNET_PRECISION`` (the bench), else float32 (TF32 on CUDA): reduced precision
changes the features, and every worker of a run must agree.
``CAVNET_LAYOUT`` (``contiguous``, ``channels_last``) pins the layout.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

# A reduced precision must beat the best float32 mode by this factor to be chosen: close calls keep fp32.
REDUCED_PRECISION_MARGIN = 1.10
_CACHE: dict[tuple, "RunMode"] = {}


@dataclass(frozen=True)
class RunMode:
    """``precision``: ``fp32`` (TF32 tensor cores on CUDA), ``bf16`` or ``fp16`` autocast;
    ``layout``: ``contiguous`` or ``channels_last`` (``channels_last_3d`` for 5-D inputs)."""

    precision: str = "fp32"
    layout: str = "contiguous"

    @property
    def name(self) -> str:
        return f"{self.precision}/{self.layout}"


def memory_format(mode: RunMode, ndim: int) -> torch.memory_format:
    """The torch memory format of ``mode`` for inputs of ``ndim`` dimensions (4 or 5)."""
    if mode.layout != "channels_last":
        return torch.contiguous_format
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


def candidate_modes(device: torch.device, precision: str | None = None) -> list[RunMode]:
    """The modes worth timing on ``device``. ``precision``: ``auto`` (every precision the device has),
    ``fp32``, ``bf16`` or ``fp16``; None reads ``CAVNET_PRECISION`` (default ``fp32``)."""
    want = (precision or os.environ.get("CAVNET_PRECISION") or "fp32").lower()
    if want == "tf32":
        want = "fp32"
    has = ["fp32", "bf16"]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        has = ["fp32", "fp16"]
    precisions = has if want == "auto" else [want]
    layout = os.environ.get("CAVNET_LAYOUT", "").lower()
    layouts = [layout] if layout in ("contiguous", "channels_last") else ["channels_last", "contiguous"]
    return [RunMode(p, lay) for p in precisions for lay in layouts]


def prepare(model: nn.Module, mode: RunMode, ndim: int) -> nn.Module:
    """``model`` with its weights in ``mode``'s layout (in place); enables TF32 and cuDNN autotuning.

    Every 4-D and 5-D weight takes the channels-last format of its own rank, whatever the input's ``ndim``:
    a 2-D patch embedding inside a model fed 5-D clips (CLIP on frames) is laid out as channels_last."""
    if next(model.parameters()).is_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for p in model.parameters():
        if p.dim() in (4, 5):
            p.data = p.data.contiguous(memory_format=memory_format(mode, p.dim()))
    return model


@contextlib.contextmanager
def running(mode: RunMode, device: torch.device) -> Iterator[None]:
    """Inference mode plus ``mode``'s autocast on ``device``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode.precision)
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device.type, dtype=dtype):
                yield


def forward(model: nn.Module, x: torch.Tensor, mode: RunMode) -> torch.Tensor:
    """``model(x)`` in ``mode``: ``x`` ``(B, C, ...)`` float is laid out as the mode wants; float32 out."""
    x = x.contiguous(memory_format=memory_format(mode, x.dim()))
    with running(mode, x.device):
        return model(x).float()


def time_mode(model: nn.Module, example: torch.Tensor, mode: RunMode, iters: int = 3, warmup: int = 1,
              min_seconds: float = 0.25, max_iters: int = 50) -> float:
    """Items per second of ``model`` on ``example`` ``(B, ...)`` in ``mode``: the best of at least ``iters``
    runs (more until ``min_seconds`` are spent, at most ``max_iters``) after ``warmup`` runs; CUDA is
    synchronised around each run."""
    prepare(model, mode, example.dim())
    best, spent, runs = float("inf"), 0.0, 0
    for _ in range(warmup):
        forward(model, example, mode)
    while runs < iters or (spent < min_seconds and runs < max_iters):
        _sync(example.device)
        t0 = time.perf_counter()
        forward(model, example, mode)
        _sync(example.device)
        took = time.perf_counter() - t0
        best, spent, runs = min(best, took), spent + took, runs + 1
    return example.shape[0] / best


def pick_mode(model: nn.Module, example: torch.Tensor, key: str = "", precision: str | None = None,
              iters: int = 3) -> tuple[RunMode, dict[str, float]]:
    """The fastest of :func:`candidate_modes` for ``model`` on ``example`` and every mode's items/s (none is
    timed when there is a single candidate, e.g. a layout pinned by ``CAVNET_LAYOUT`` and fp32).

    The answer is cached per process under ``key`` (e.g. the backbone name), the device, the example
    shape and the precision asked; ``model`` is left prepared for the chosen mode.
    """
    device = example.device
    candidates = candidate_modes(device, precision)
    cache_key = (key or type(model).__name__, str(device), tuple(example.shape), tuple(candidates))
    if cache_key in _CACHE:
        mode = _CACHE[cache_key]
        prepare(model, mode, example.dim())
        return mode, {}
    rates = {m.name: time_mode(model, example, m, iters) for m in candidates} if len(candidates) > 1 else {}
    mode = best_mode(rates) if rates else candidates[0]
    _CACHE[cache_key] = mode
    prepare(model, mode, example.dim())
    return mode, rates


def best_mode(rates: dict[str, float]) -> RunMode:
    """The fastest mode of ``{"precision/layout": items/s}``; reduced precision needs a clear margin."""
    modes = {RunMode(*name.split("/")): r for name, r in rates.items()}
    fp32 = {m: r for m, r in modes.items() if m.precision == "fp32"}
    best = max(modes, key=modes.get)
    if fp32 and best.precision != "fp32":
        best32 = max(fp32, key=fp32.get)
        if modes[best] < REDUCED_PRECISION_MARGIN * fp32[best32]:
            return best32
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
