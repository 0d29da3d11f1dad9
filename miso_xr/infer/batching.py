"""How many windows one model call takes: ``batch_size="auto"`` sizes batches by memory.

A batch is sized on the worker that runs it (its device is only known there): the estimated peak
memory of one window (:func:`window_bytes`) against a share of what the device has free: half
of the free CUDA memory on a GPU, a quarter of the available RAM split between the CPU threads
that may run side by side. Larger batches fill a GPU; on a CPU they only need to be large enough
for big matmuls, and larger ones run slower (their per-pixel tensors no longer stay near the
caches), so a CPU batch is also held to :data:`CPU_BATCH_BYTES` and :data:`CPU_MAX_BATCH`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CPU_BATCH_BYTES", "CPU_MAX_BATCH", "GPU_MAX_BATCH", "auto_batch_size", "window_bytes"]

CPU_MAX_BATCH = 32
# the estimated peak of a CPU batch. The tiny model's 64 px windows (30 MB each when the layers
# after LIIF ran over whole windows) took 143 ms CPU a window in batches of 4, 161 in 8, 229 in
# 16; with those layers in cache-sized blocks (10 MB a window) 58 ms in 4, 54 in 8 and in 16
# (dense decode, 1 thread)
CPU_BATCH_BYTES = 128 << 20
GPU_MAX_BATCH = 512
FALLBACK_BATCH = 16


def window_bytes(model: Any, window: int) -> int:
    """Estimated peak bytes to predict one ``window x window`` window with ``model``.

    For a MISO model, from its configuration: each modality's blended LIIF hidden layers at every
    pixel (``MisoNet.dense_logits``; the LIIF blocks and the layers after the blend work in
    bounded blocks of pixels), the encoders' stage-0 tokens and the inputs and outputs. Other
    models: inputs, probabilities and the blend, per pixel.

    >>> from types import SimpleNamespace as NS
    >>> rf = NS(spec=NS(classes=("a", "b"), modalities=(("covariates", ("e", "s")),)))
    >>> window_bytes(rf, 64)
    163840
    """
    spec = model.spec
    px = window * window
    k = len(spec.classes)
    bands = sum(len(b) for _, b in spec.modalities)
    io = px * (4 * bands + 8 * 2 * k)  # float32 inputs; float64 probabilities and blend
    cfg = getattr(model, "config", None)
    width = getattr(cfg, "width", None)
    if cfg is None or width is None:
        return int(io)
    n_mod = len(spec.modalities)
    # every stage's blended last hidden layer, per modality, live until the readout
    widths = getattr(cfg, "liif_widths", None)
    blended = sum(w[-1] for w in widths) if widths else 4 * width
    post = px * 4 * (blended * n_mod + 2 * k)  # and the logits
    tokens = px // max(1, getattr(cfg, "patch_size", 4)) ** 2
    enc = tokens * 4 * getattr(cfg, "embed_dim", 32) * (getattr(cfg, "mlp_ratio", 4.0) + 8) * n_mod
    return int(io + post + enc)


def _device_budget(device: str) -> tuple[int, int]:
    """(bytes a batch may use on ``device``, the largest sensible batch there)."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(0.5 * free), GPU_MAX_BATCH
    import psutil

    threads = max(1, os.cpu_count() or 1)  # tasks of a process may predict side by side
    share = int(0.25 * psutil.virtual_memory().available / threads)
    return min(share, CPU_BATCH_BYTES), CPU_MAX_BATCH


def auto_batch_size(model: Any, window: int, device: str) -> int:
    """Windows per model call on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) by memory.

    >>> from types import SimpleNamespace as NS
    >>> rf = NS(spec=NS(classes=("a", "b"), modalities=(("covariates", ("e", "s")),)))
    >>> 1 <= auto_batch_size(rf, 64, "cpu") <= CPU_MAX_BATCH
    True
    """
    try:
        per = window_bytes(model, window)
    except (AttributeError, TypeError):  # a predictor without a readable spec
        return FALLBACK_BATCH
    budget, most = _device_budget(device)
    return int(max(1, min(most, budget // max(1, per))))
