"""MISO's losses: supervised over labelled query points, symmetric InfoNCE over all query points
(negatives from other crops at the same query slot).

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

__all__ = ["UNLABELLED", "contrastive_losses", "info_nce", "miso_loss", "supervised_loss"]

UNLABELLED = -1


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric InfoNCE between paired embeddings, negatives from other crops per query slot.

    For ``(B, Q, D)`` inputs (B crops, Q query slots), slot ``q`` of crop ``i`` in ``a`` is paired
    with slot ``q`` of crop ``i`` in ``b``; the negatives are slot ``q`` of the *other* crops,
    never other points of the same crop (neighbours a few pixels apart are not negatives). This
    is the reference MISO's contrastive loss. A ``(N, D)`` input is one slot over N rows.

    Rows are L2-normalised; logits are cosine similarities over ``temperature``; the loss is
    cross-entropy a->b **plus** b->a, each averaged over crops and slots (the reference sums the
    two directions). With one crop there are no negatives and the loss is 0.

    Parameters
    ----------
    a, b
        (B, Q, D) or (N, D) embeddings of the same shape.
    temperature
        Softmax temperature (MISO: 0.1).

    Examples
    --------
    >>> x = torch.eye(3)
    >>> round(float(info_nce(x, x, temperature=0.1)), 6)  # near-perfect alignment
    0.000182
    """
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise InputError(
            "info_nce needs two embedding sets of the same shape, (crops, slots, D) or (N, D); "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if a.ndim == 2:
        a, b = a[:, None], b[:, None]
    n = a.shape[0]
    a = F.normalize(a.float(), dim=-1).transpose(0, 1)  # (Q, B, D)
    b = F.normalize(b.float(), dim=-1).transpose(0, 1)
    logits = a @ b.transpose(1, 2) / temperature  # (Q, B, B): crop i vs crop j at one slot
    target = torch.arange(n, device=a.device).repeat(logits.shape[0])
    flat = logits.reshape(-1, n)
    flat_t = logits.transpose(1, 2).reshape(-1, n)
    return F.cross_entropy(flat, target) + F.cross_entropy(flat_t, target)


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
    contrastive_weight: float = 0.1,
    temperature: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total MISO loss and its parts, as in the reference.

    ``total = supervised + contrastive_weight * (satellite<->covariate + visual<->location)``.
    Each contrastive term is :func:`info_nce` with negatives from the other crops of the batch
    at the same query slot; unlabelled queries and unlabelled crops take part. The pairs:

    - ``satellite_covariate``: the satellite embedding (optical, else SAR) and the covariate
      embedding, when the model has both;
    - ``visual_location``: the *fused* visual embedding (``embeddings["visual"]``, what the head
      reads) and the location embedding, when the model has a location encoder. A
      covariates-only model therefore still has a contrastive term.

    Parameters
    ----------
    output
        A :class:`~miso_xr.model.net.MisoOutput` (``logits`` (B, Q, K), ``embeddings`` name ->
        (B, Q, D)).
    labels
        (B, Q) class indices, ``-1`` unlabelled.
    binary, contrastive_weight, temperature
        Task type, weight of each contrastive pair (paper: 0.1), InfoNCE temperature.

    Returns
    -------
    total, parts
        ``parts`` has ``"supervised"`` and, when present, ``"satellite_covariate"`` and
        ``"visual_location"`` (call ``.item()`` to log).

    Examples
    --------
    >>> from miso_xr.model.net import MisoOutput
    >>> emb = {m: torch.randn(2, 3, 4) for m in ("optical", "covariates", "visual")}
    >>> out = MisoOutput(torch.zeros(2, 3, 1), emb)
    >>> total, parts = miso_loss(out, torch.tensor([[1, -1, -1], [0, -1, -1]]), binary=True)
    >>> sorted(parts)
    ['satellite_covariate', 'supervised']
    """
    logits = output.logits
    emb: Mapping[str, Tensor] = output.embeddings
    parts = {"supervised": supervised_loss(logits, labels, binary=binary)}
    parts.update(contrastive_losses(emb, temperature=temperature))
    total = parts["supervised"]
    for name, value in parts.items():
        if name != "supervised":
            total = total + contrastive_weight * value
    return total, parts


def contrastive_losses(emb: Mapping[str, Tensor], *, temperature: float = 0.1) -> dict[str, Tensor]:
    """The contrastive pairs of :func:`miso_loss` that the embeddings allow (no labels needed).

    Self-supervised pretraining uses these alone.
    """
    parts: dict[str, Tensor] = {}
    satellite = emb.get("optical", emb.get("sar"))
    if satellite is not None and "covariates" in emb:
        parts["satellite_covariate"] = info_nce(satellite, emb["covariates"], temperature)
    if "visual" in emb and "location" in emb:
        parts["visual_location"] = info_nce(emb["visual"], emb["location"], temperature)
    return parts
