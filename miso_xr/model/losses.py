"""MISO's losses: supervised over labelled query points, symmetric InfoNCE over all query points.

Labels are integer class indices per query point with ``-1`` for "unlabelled": such points (the
random and grid queries of a crop, and every point of an unlabelled tile) feed only the
contrastive terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..exceptions import InputError

__all__ = ["UNLABELLED", "info_nce", "miso_loss", "supervised_loss"]

UNLABELLED = -1


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b``: row ``i`` of each is a positive
    pair, every other row of the other set a negative.

    Rows are L2-normalised; logits are cosine similarities over ``temperature``; the loss is the
    mean of cross-entropy a->b and b->a (CLIP's form).

    Parameters
    ----------
    a, b
        (N, D) embeddings, or (..., D) flattened to (N, D).
    temperature
        Softmax temperature (MISO: 0.1).

    Examples
    --------
    >>> x = torch.eye(3)
    >>> round(float(info_nce(x, x, temperature=0.1)), 6)  # near-perfect alignment
    9.1e-05
    """
    if a.shape != b.shape or a.ndim < 2:
        raise InputError(
            f"info_nce needs two embedding sets of the same shape (N, D); got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    a = F.normalize(a.reshape(-1, a.shape[-1]).float(), dim=-1)
    b = F.normalize(b.reshape(-1, b.shape[-1]).float(), dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def supervised_loss(logits: Tensor, labels: Tensor, *, binary: bool) -> Tensor:
    """Cross-entropy over labelled query points only (``labels == -1`` are skipped).

    Binary tasks have one logit per point (BCE with the logit of class 1); K-class tasks have K
    logits (CE). With no labelled point the loss is an exact zero that still carries a graph.

    Parameters
    ----------
    logits
        (B, Q, 1) for binary, (B, Q, K) otherwise.
    labels
        (B, Q) integer class indices, ``-1`` for unlabelled.
    binary
        Whether the task is binary (one logit).

    Examples
    --------
    >>> supervised_loss(torch.zeros(1, 2, 1), torch.tensor([[1, -1]]), binary=True)
    tensor(0.6931)
    """
    if logits.shape[:-1] != labels.shape:
        raise InputError(
            f"labels have shape {tuple(labels.shape)}; they need the logits' leading shape "
            f"{tuple(logits.shape[:-1])} (one integer per query point, -1 = unlabelled)"
        )
    k = logits.shape[-1]
    if binary and k != 1:
        raise InputError(f"a binary task needs one logit per point, got {k}")
    labels = labels.long()
    mask = labels != UNLABELLED
    if bool(((labels < UNLABELLED) | (labels >= max(k, 2))).any()):
        raise InputError(
            f"labels must be -1 (unlabelled) or class indices 0..{max(k, 2) - 1}; got values "
            f"{sorted(set(labels.unique().tolist()))}"
        )
    if not bool(mask.any()):
        return logits.sum() * 0.0
    chosen = logits.float()[mask]
    target = labels[mask]
    if binary:
        return F.binary_cross_entropy_with_logits(chosen[:, 0], target.float())
    return F.cross_entropy(chosen, target)


def miso_loss(
    output: Any,
    labels: Tensor,
    *,
    binary: bool,
    contrastive_weight: float = 1.0,
    temperature: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total MISO loss and its parts.

    ``total = supervised + contrastive_weight * (satellite<->covariate + visual<->location)``,
    each contrastive term a symmetric InfoNCE over all query points of the batch (unlabelled ones
    included). A term whose branches the model lacks is left out ("satellite" is the optical
    embedding, or SAR when there is no optical).

    Parameters
    ----------
    output
        A :class:`~miso_xr.model.miso.MisoOutput` (``logits`` (B, Q, K), ``embeddings`` name ->
        (B, Q, D)).
    labels
        (B, Q) class indices, ``-1`` unlabelled.
    binary, contrastive_weight, temperature
        Task type, weight of the contrastive terms, InfoNCE temperature.

    Returns
    -------
    total, parts
        ``parts`` has ``"supervised"`` and, when present, ``"satellite_covariate"`` and
        ``"visual_location"`` (all detached-free tensors; call ``.item()`` to log).

    Examples
    --------
    >>> from miso_xr.model.miso import MisoOutput
    >>> out = MisoOutput(torch.zeros(2, 3, 1), {"optical": torch.randn(2, 3, 4),
    ...                                         "covariates": torch.randn(2, 3, 4)})
    >>> total, parts = miso_loss(out, torch.tensor([[1, -1, -1], [0, -1, -1]]), binary=True)
    >>> sorted(parts)
    ['satellite_covariate', 'supervised']
    """
    logits = output.logits
    emb: Mapping[str, Tensor] = output.embeddings
    parts = {"supervised": supervised_loss(logits, labels, binary=binary)}
    satellite = emb.get("optical", emb.get("sar"))
    if satellite is not None and "covariates" in emb:
        parts["satellite_covariate"] = info_nce(satellite, emb["covariates"], temperature)
    if "optical" in emb and "location" in emb:
        parts["visual_location"] = info_nce(emb["optical"], emb["location"], temperature)
    total = parts["supervised"]
    for name, value in parts.items():
        if name != "supervised":
            total = total + contrastive_weight * value
    return total, parts
