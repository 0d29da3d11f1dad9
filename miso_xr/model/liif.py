"""LIIF: a local implicit image function queried at continuous points on each encoder stage.

For one feature map of ``h x w`` cells and a query point, LIIF takes the 4 nearest cell centres
(the local ensemble), feeds each cell's feature with the query's offset from that centre and the
query's cell size through an MLP, and blends the 4 predictions with bilinear (area) weights: the
area of the rectangle between the query and the *opposite* cell centre.

Two exact rewrites keep dense prediction affordable (65,536 queries per 256 px window):

- the MLP's first layer is affine, so its feature part is applied once per *cell* (a 1x1
  convolution) and gathered, instead of once per query and neighbour;
- the blend weights sum to 1, so the MLP's last (affine) layer commutes with the blend and runs
  once per query instead of 4 times.

Offsets are in cell units (a neighbour centre is 1 away); at a border the missing neighbours are
clamped to the edge cell, whose offset is computed from its own centre, so weights still sum to 1.
Query coordinates follow ``torch.nn.functional.grid_sample`` (``align_corners=False``): x then y,
each in [-1, 1] across the image, edges at +-1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["LIIF", "MultiScaleLIIF", "pixel_centres"]


def pixel_centres(height: int, width: int, *, device: torch.device | str | None = None) -> Tensor:
    """Query coordinates of every pixel centre, row-major: (height * width, 2) as (x, y).

    >>> pixel_centres(2, 2).tolist()
    [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
    """
    ys = (torch.arange(height, device=device, dtype=torch.float32) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=torch.float32) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


class LIIF(nn.Module):
    """LIIF decoder of one feature map.

    Parameters
    ----------
    in_channels
        Channels of the feature map.
    out_dim
        Width of the returned embedding.
    hidden
        Hidden width of the 2-layer MLP; ``0`` makes the decoder a single affine map (then the
        output at a cell centre is exactly an affine function of that cell's feature).

    Examples
    --------
    >>> liif = LIIF(8, 16, hidden=32)
    >>> liif(torch.zeros(2, 8, 4, 4), torch.zeros(2, 5, 2)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, in_channels: int, out_dim: int, *, hidden: int = 256) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        first = hidden if hidden > 0 else out_dim
        # first layer split by input: cell feature / (dx, dy) offset / (cell_w, cell_h) size
        self.feature = nn.Conv2d(in_channels, first, kernel_size=1)
        self.offset = nn.Linear(2, first, bias=False)
        self.cell = nn.Linear(2, first, bias=False)
        self.act = nn.GELU() if hidden > 0 else nn.Identity()
        self.out = nn.Linear(hidden, out_dim) if hidden > 0 else nn.Identity()

    def forward(
        self, feat: Tensor, query: Tensor, *, cell: Sequence[float] | None = None
    ) -> Tensor:
        """Embeddings (B, Q, out_dim) of ``query`` (B, Q, 2) on ``feat`` (B, C, h, w).

        ``cell`` is the query's footprint (width, height) in feature cells (default: one input
        pixel is not known here, so 0); it is constant for point queries at one resolution.
        """
        b, _, h, w = feat.shape
        table = self.feature(feat).flatten(2).transpose(1, 2)  # (B, h*w, first)
        # continuous cell coordinates: cell centres at integers 0..w-1
        u = (query[..., 0].float() + 1) * (w / 2) - 0.5
        v = (query[..., 1].float() + 1) * (h / 2) - 0.5
        u0, v0 = torch.floor(u), torch.floor(v)
        tu, tv = u - u0, v - v0
        cell_t = torch.as_tensor(cell if cell is not None else (0.0, 0.0), dtype=table.dtype)
        base = self.cell(cell_t.to(table.device))
        batch = torch.arange(b, device=feat.device)[:, None]
        acc = None
        for du, wu in ((0, 1 - tu), (1, tu)):
            ci = (u0 + du).clamp(0, w - 1)
            for dv, wv in ((0, 1 - tv), (1, tv)):
                ri = (v0 + dv).clamp(0, h - 1)
                idx = (ri * w + ci).long()
                rel = torch.stack([u - ci, v - ri], dim=-1).to(table.dtype)
                pre = table[batch, idx] + self.offset(rel) + base
                term = self.act(pre) * (wu * wv).unsqueeze(-1).to(table.dtype)
                acc = term if acc is None else acc + term
        return self.out(acc)


class MultiScaleLIIF(nn.Module):
    """LIIF on each encoder stage, each to width ``D``, summed and layer-normed.

    Parameters
    ----------
    stage_dims
        Channels of each stage's feature map.
    width
        ``D``, the embedding width.
    hidden
        Hidden width of each stage's LIIF MLP.
    strides
        Input pixels per cell of each stage (``patch_size * 2**i``): sets the cell-size input.

    Examples
    --------
    >>> m = MultiScaleLIIF((8, 16), 32, hidden=16, strides=(4, 8))
    >>> m([torch.zeros(1, 8, 4, 4), torch.zeros(1, 16, 2, 2)], torch.zeros(1, 3, 2)).shape
    torch.Size([1, 3, 32])
    """

    def __init__(
        self,
        stage_dims: Sequence[int],
        width: int,
        *,
        hidden: int = 256,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(LIIF(c, width, hidden=hidden) for c in stage_dims)
        self.strides = tuple(strides) if strides is not None else (1,) * len(stage_dims)
        self.norm = nn.LayerNorm(width)

    def forward(self, features: Sequence[Tensor], query: Tensor) -> Tensor:
        total = None
        for liif, feat, stride in zip(self.stages, features, self.strides):
            # a query is one input pixel: 1/stride of a cell of this stage
            out = liif(feat, query, cell=(1.0 / stride, 1.0 / stride))
            total = out if total is None else total + out
        return self.norm(total)
