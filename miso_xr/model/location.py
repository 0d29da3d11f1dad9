"""Space2Vec "gridcell" location encoder over projected x/y in metres.

For ``S`` wavelengths ``lambda_s`` spaced geometrically between a minimum and a maximum, and the 3
unit directions ``a_j`` at 0, 120 and 240 degrees, the features of a point ``p`` are
``sin(2 pi <p, a_j> / lambda_s)`` and ``cos(...)``: ``6 S`` numbers, like grid cells' firing
fields at many scales (Mai et al., 2020). Residual fully connected blocks map them to width ``D``.

Phases are computed in float64 as cycles, and only the fraction of a cycle (``torch.frac``, in
(-1, 1)) goes to float32 before the 2 pi scaling: an Alaska Albers coordinate (~2e6 m) over a 20 m
wavelength is a phase of ~6e5 rad, which float32 would carry with only ~0.06 rad of precision.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GridCellEncoding", "LocationEncoder"]


class GridCellEncoding(nn.Module):
    """The fixed multi-scale sinusoids (no parameters): (..., 2) metres -> (..., 6 * scales).

    Examples
    --------
    >>> enc = GridCellEncoding(min_wavelength=20.0, max_wavelength=4e6, scales=16)
    >>> enc(torch.zeros(3, 2, dtype=torch.float64)).shape
    torch.Size([3, 96])
    """

    def __init__(self, *, min_wavelength: float, max_wavelength: float, scales: int) -> None:
        super().__init__()
        if scales == 1:
            lambdas = torch.tensor([min_wavelength], dtype=torch.float64)
        else:
            ratio = (max_wavelength / min_wavelength) ** (1.0 / (scales - 1))
            lambdas = min_wavelength * ratio ** torch.arange(scales, dtype=torch.float64)
        angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
        directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # (3, 2)
        # (2, 3 * S): projection onto each direction, divided by each wavelength
        freq = (directions.T[:, :, None] / lambdas[None, None, :]).reshape(2, -1)
        self.register_buffer("frequencies", freq, persistent=False)
        self.out_dim = 6 * scales

    def forward(self, xy: Tensor) -> Tensor:
        cycles = xy.to(torch.float64) @ self.frequencies.to(xy.device)  # in cycles, float64
        # the fraction of a cycle (in (-1, 1): sine and cosine are periodic), then float32
        phase = torch.frac(cycles).to(torch.float32).mul_(2 * math.pi)
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class _Residual(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width, width),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class LocationEncoder(nn.Module):
    """Gridcell sinusoids, a linear map to ``width``, residual FC blocks, LayerNorm.

    Parameters
    ----------
    width
        ``D``, the output width.
    min_wavelength, max_wavelength, scales
        Wavelength range in metres and number of geometric scales.
    layers
        Residual blocks (each LayerNorm, Linear, GELU, Dropout, Linear, plus the skip).
    dropout
        Dropout inside the residual blocks.

    Examples
    --------
    >>> loc = LocationEncoder(32, min_wavelength=20.0, max_wavelength=4e6, scales=8)
    >>> loc(torch.tensor([[[250_000.0, 1_650_000.0]]], dtype=torch.float64)).shape
    torch.Size([1, 1, 32])
    """

    def __init__(
        self,
        width: int,
        *,
        min_wavelength: float,
        max_wavelength: float,
        scales: int,
        layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoding = GridCellEncoding(
            min_wavelength=min_wavelength, max_wavelength=max_wavelength, scales=scales
        )
        self.input = nn.Linear(self.encoding.out_dim, width)
        self.blocks = nn.Sequential(*(_Residual(width, dropout) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)

    def forward(self, xy: Tensor) -> Tensor:
        """(..., 2) projected x/y in metres (float64 preferred) -> (..., width)."""
        return self.norm(self.blocks(self.input(self.encoding(xy))))
