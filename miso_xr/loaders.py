"""Kept so that ``from miso_xr.loaders import load_checkpoint`` still works.

The room for "a checkpoint file <-> a model of its kind" is :mod:`miso_xr.checkpoint`.
"""

from __future__ import annotations

from .checkpoint import KINDS, load_checkpoint

__all__ = ["KINDS", "load_checkpoint"]
