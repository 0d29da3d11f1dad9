"""LIIF: a local implicit image function queried at continuous points on each encoder stage.

For one feature map of ``h x w`` cells and a query point, LIIF takes the 4 nearest cell centres
(the local ensemble), feeds each cell's feature, the query's offset from that centre and the
query's cell size (its footprint, in cells of this map) through an MLP, and blends the 4 results
with bilinear (area) weights: the area of the rectangle between the query and the *opposite*
cell centre. The MLP has the MISO reference's capacity: 3 linear layers per stage (two hidden
layers), then a LayerNorm per stage.

Exact rewrites that keep the work down (the maths is the same MLP):

- the first layer is affine in its concatenated input, so it splits into a part of the cell
  feature (applied once per *cell*, a 1x1 convolution, then gathered), a part of the offset and
  a part of the cell size;
- the blend weights sum to 1, so the last (affine) layer commutes with the blend and runs once
  per query instead of 4 times;
- :meth:`LIIF.dense` decodes *every* pixel of an image whose side is a whole number of cells:
  there the offsets repeat with the stage's stride, so the offset part is a small table per
  axis, the cell part is gathered by whole rows and columns, and the remaining layers run as
  large batched matmuls. It equals the query path at the pixel centres (tested to 1e-4).

Offsets are in cell units (a neighbour centre is 1 away); at a border the missing neighbours are
clamped to the edge cell, whose offset is computed from its own centre, so weights still sum to 1.
Query coordinates follow ``torch.nn.functional.grid_sample`` (``align_corners=False``): x then y,
each in [-1, 1] across the image, edges at +-1.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "LIIF",
    "MultiScaleLIIF",
    "block_points",
    "narrow_linear",
    "pixel_centres",
    "points_per_block",
    "unpacked",
]

ACTIVATIONS = ("relu", "gelu")


def pixel_centres(height: int, width: int, *, device: torch.device | str | None = None) -> Tensor:
    """Query coordinates of every pixel centre, row-major: (height * width, 2) as (x, y).

    >>> pixel_centres(2, 2).tolist()
    [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
    """
    ys = _centres_1d(height, device)
    xs = _centres_1d(width, device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def _centres_1d(n: int, device: torch.device | str | None) -> Tensor:
    return (torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1


def _axis(q: Tensor, n: int) -> list[tuple[Tensor, Tensor, Tensor]]:
    """For coordinates ``q`` in [-1, 1] on an axis of ``n`` cells: per neighbour (0, 1), the
    clamped cell index, the offset from that cell's centre and the bilinear weight.

    One function for the query path and the dense path, so both round identically.
    """
    u = (q.float() + 1) * (n / 2) - 0.5  # cell centres at integers 0..n-1
    u0 = torch.floor(u)
    t = u - u0
    out = []
    for d, weight in ((0, 1 - t), (1, t)):
        idx = (u0 + d).clamp(0, n - 1)
        out.append((idx.long(), u - idx, weight))
    return out


# below this many outputs a CPU matmul runs far from the hardware (MKL: a 8-wide output is
# ~4x slower than the same rows through a 16-wide block-diagonal copy); see narrow_linear
NARROW_OUTPUTS = 16


def narrow_linear(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)``; without gradients, a narrow layer runs on ``g`` rows at once.

    With ``g = NARROW_OUTPUTS // out_features`` consecutive rows side by side (a free view) and
    the weight repeated ``g`` times along a block diagonal, one matmul gives the same numbers
    (the off-diagonal blocks add exact zeros) at a shape the CPU's matmul handles well. The
    extra multiplications by zero are not counted as useful work (see the benchmark).

    >>> lin = nn.Linear(8, 4)
    >>> x = torch.randn(6, 8)
    >>> with torch.no_grad():
    ...     bool(torch.allclose(narrow_linear(lin, x), lin(x), atol=1e-6))
    True
    """
    k, n = layer.in_features, layer.out_features
    g = NARROW_OUTPUTS // n if 1 < n < NARROW_OUTPUTS else 1
    rows = x.numel() // k if k else 0
    if g == 1 or torch.is_grad_enabled() or rows % g or not x.is_contiguous() or not _packing:
        return layer(x)
    key = (g, layer.weight.data_ptr(), layer.weight._version, layer.weight.dtype)
    if layer.bias is not None:
        key += (layer.bias.data_ptr(), layer.bias._version)
    cached = layer.__dict__.get("_packed")
    if cached is None or cached[0] != key:  # built once per state of the weights
        w = torch.block_diag(*([layer.weight] * g))
        b = layer.bias.repeat(g) if layer.bias is not None else None
        cached = layer.__dict__["_packed"] = (key, w, b)
    out = nn.functional.linear(x.view(rows // g, k * g), cached[1], cached[2])
    return out.view(*x.shape[:-1], n)


_packing = True


class unpacked:  # noqa: N801 - used like a function: `with unpacked():`
    """Run narrow layers as they are (to count only useful FLOPs, as the benchmark does)."""

    def __enter__(self) -> None:
        global _packing
        self._saved, _packing = _packing, False

    def __exit__(self, *exc: object) -> None:
        global _packing
        _packing = self._saved


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")


class LIIF(nn.Module):
    """LIIF decoder of one feature map.

    Parameters
    ----------
    in_channels
        Channels of the feature map.
    out_dim
        Width of the returned embedding.
    hidden
        Widths of the MLP's hidden layers (the reference: two, so 3 linear layers); ``()`` makes
        the decoder a single affine map (then the output at a cell centre is exactly an affine
        function of that cell's feature).
    activation
        ``"relu"`` (the reference) or ``"gelu"``.
    norm
        A LayerNorm on the output (the reference has one per stage).

    Examples
    --------
    >>> liif = LIIF(8, 16, hidden=(32, 32))
    >>> liif(torch.zeros(2, 8, 4, 4), torch.zeros(2, 5, 2)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        *,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        norm: bool = True,
    ) -> None:
        super().__init__()
        widths = tuple(int(h) for h in hidden)
        self.in_channels = in_channels
        self.hidden = widths
        first = widths[0] if widths else out_dim
        # first layer split by input: cell feature / (dx, dy) offset / (cell_w, cell_h) size
        self.feature = nn.Conv2d(in_channels, first, kernel_size=1)
        self.offset = nn.Linear(2, first, bias=False)
        self.cell = nn.Linear(2, first, bias=False)
        self.act = _activation(activation) if widths else nn.Identity()
        # layers applied to each neighbour before the blend (after the first one)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], out_dim) if widths else nn.Identity()
        self.norm = nn.LayerNorm(out_dim) if norm else nn.Identity()

    def _neighbour(self, pre: Tensor) -> Tensor:
        """First-layer pre-activation -> the last hidden layer's output (per neighbour).

        ``pre`` is a fresh tensor, so ReLU runs in place (these are the largest tensors here).
        """
        relu = isinstance(self.act, nn.ReLU)
        x = torch.relu_(pre) if relu else self.act(pre)
        for layer in self.layers:
            x = narrow_linear(layer, x)
            x = torch.relu_(x) if relu else self.act(x)
        return x

    def _cell_term(self, cell: Tensor | Sequence[float] | None, like: Tensor) -> Tensor:
        c = torch.as_tensor(
            cell if cell is not None else (0.0, 0.0), dtype=like.dtype, device=like.device
        )
        return self.cell(c)

    def forward(
        self, feat: Tensor, query: Tensor, *, cell: Tensor | Sequence[float] | None = None
    ) -> Tensor:
        """Embeddings (B, Q, out_dim) of ``query`` (B, Q, 2) on ``feat`` (B, C, h, w).

        ``cell`` is each query's footprint (width, height) in cells of this map: a pair, or a
        tensor broadcastable to (B, Q, 2) (default 0: a point).
        """
        b, _, h, w = feat.shape
        table = self.feature(feat).flatten(2).transpose(1, 2)  # (B, h*w, first)
        base = self._cell_term(cell, table)
        batch = torch.arange(b, device=feat.device)[:, None]
        acc = None
        for ci, dx, wx in _axis(query[..., 0], w):
            for ri, dy, wy in _axis(query[..., 1], h):
                rel = torch.stack([dx, dy], dim=-1).to(table.dtype)
                pre = table[batch, ri * w + ci] + self.offset(rel) + base
                term = self._neighbour(pre) * (wx * wy).unsqueeze(-1).to(table.dtype)
                acc = term if acc is None else acc + term
        return self.readout(acc)

    def readout(self, blend: Tensor) -> Tensor:
        """The blended last hidden layer (..., F) -> embeddings (..., out_dim): the last layer
        and the norm, per pixel."""
        return self.norm(self.out(blend))

    def dense(
        self,
        feat: Tensor,
        height: int,
        width: int,
        *,
        cell: Sequence[float] | None = None,
        max_points: int | None = None,
    ) -> Tensor:
        """Embeddings (B, height * width, out_dim) at every pixel centre, row-major:
        ``readout(blend_dense(...))``.

        >>> liif = LIIF(4, 8, hidden=(16, 16))
        >>> f = torch.randn(1, 4, 2, 2)
        >>> q = pixel_centres(8, 8)[None]
        >>> bool(torch.allclose(liif.dense(f, 8, 8), liif(f, q), atol=1e-5))
        True
        """
        blend = self.blend_dense(feat, height, width, cell=cell, max_points=max_points)
        return self.readout(blend)

    def blend_dense(
        self,
        feat: Tensor,
        height: int,
        width: int,
        *,
        cell: Sequence[float] | None = None,
        max_points: int | None = None,
    ) -> Tensor:
        """The blended last hidden layer (B, height * width, F) at every pixel centre, row-major.

        The same as ``forward(feat, pixel_centres(height, width), cell=cell)`` (to float
        rounding) for a ``height x width`` image over ``feat`` (B, C, h, w), when ``height`` and
        ``width`` are whole multiples of ``h`` and ``w`` (a stride of ``height // h`` pixels per
        cell); much less work. Pixel ``s * i + j`` of an axis lies at phase ``j`` of cell ``i``:
        its neighbours are cells ``i + e_j`` and ``i + e_j + 1`` (``e_j`` is -1 in the cell's
        first half, 0 in its second) at offsets that depend on ``j`` only. So, for each half of
        the phases, each neighbour's first-layer input is a *shifted view* of the per-cell table
        plus a small per-phase offset table, formed in one broadcast add; the other layers are
        batched matmuls over blocks of at most ``max_points`` pixels (phase x window x cell; at
        least one row of cells of one window), the bound on memory; ``None``:
        :func:`block_points`, sized to the CPU's cache.

        A border pixel's missing neighbour is the edge cell again, at the same offset as the
        other (as in the query path): the two terms are equal, so they are merged into one of
        weight 1 and the missing neighbour is never evaluated. On a coarse stage that is most of
        the work (on a map of one cell, 3 of 4 neighbours). The last layer and the norm run once
        per pixel after the blend (:meth:`readout`), where the caller chooses: over the whole
        image (:meth:`dense`), or in cache-sized blocks of pixels together with the layers that
        follow (``MisoNet.dense_logits``).
        """
        b, _, h, w = feat.shape
        if height % h or width % w:
            raise ValueError(
                f"dense decoding needs an image of whole cells; {height} x {width} px over "
                f"{h} x {w} cells is not"
            )
        sy, sx = height // h, width // w
        # per-cell part of the first layer, channels last, cell-size part added once per cell
        table = self.feature(feat).permute(0, 2, 3, 1)
        table = table + self._cell_term(cell, table)
        dtype, dev = table.dtype, table.device
        fw = self.hidden_width
        ax = _phases(sx, w, dtype, dev)
        ay = _phases(sy, h, dtype, dev)
        # the blended last hidden layer of every pixel, (B, h, sy, w, sx, F): row-major pixels
        blend = torch.empty((b, h, sy, w, sx, fw), dtype=dtype, device=dev)
        wo_x, wo_y = self.offset.weight[:, 0], self.offset.weight[:, 1]
        grad = torch.is_grad_enabled()
        limit = max(1, block_points(self, dev) if max_points is None else int(max_points))
        for jy, ey, ty, wty, live_y in ay:  # a half of the row phases
            for jx, ex, tx, wtx, live_x in ax:  # a half of the column phases
                ny, nx = jy.stop - jy.start, jx.stop - jx.start
                p = ny * nx
                # phases outermost, channels innermost: (phases, B, cells, cells, F), so every
                # broadcast below runs along whole contiguous rows of channels. A block is a
                # few rows of cells of all windows, or one row of fewer windows
                per_row = p * w
                nb = max(1, min(b, limit // per_row))
                rows = max(1, min(h, limit // (nb * per_row)))
                for b0, r0 in itertools.product(range(0, b, nb), range(0, h, rows)):
                    b1, r1 = min(b0 + nb, b), min(r0 + rows, h)
                    acc = torch.empty((p, b1 - b0, r1 - r0, w, fw), dtype=dtype, device=dev)
                    first = True
                    for dv in live_y.order:
                        ylo, yhi = live_y.cells[dv]
                        lo, hi = max(ylo, r0), min(yhi, r1)
                        for du in live_x.order:
                            xlo, xhi = live_x.cells[du]
                            if lo >= hi or xlo >= xhi:
                                continue
                            # offset part of the first layer per phase, (p, F)
                            oyx = (ty - dv)[:, None, None] * wo_y + ((tx - du)[:, None] * wo_x)[
                                None
                            ]
                            oy, ox = ey + dv, ex + du  # the neighbour cell's shift
                            src = table[b0:b1, lo + oy : hi + oy, xlo + ox : xhi + ox]
                            pre = src[None] + oyx.reshape(p, 1, 1, 1, -1)
                            term = self._neighbour(pre)  # (p, B, rows, cols, F)
                            # weight per (phase, cell), spread over the channels once
                            wgt = wty[dv][lo:hi, :, None, None] * wtx[du][None, None, xlo:xhi]
                            wgt = wgt.permute(1, 3, 0, 2).reshape(p, 1, hi - lo, xhi - xlo, 1)
                            wgt = wgt.expand(-1, -1, -1, -1, fw).contiguous()
                            if first and not grad:  # present at every cell: the whole block
                                torch.mul(term, wgt, out=acc)
                            elif first:  # out= does not record gradients
                                acc.copy_(term * wgt)
                            else:
                                dst = acc[:, :, lo - r0 : hi - r0, xlo:xhi]
                                dst.addcmul_(term, wgt)
                            first = False
                    # into the row-major image: (ny, nx, B, rows, w, F) -> (B, rows, ny, w, nx, F)
                    blend[b0:b1, r0:r1, jy, :, jx] = acc.view(
                        ny, nx, b1 - b0, r1 - r0, w, fw
                    ).permute(2, 3, 0, 4, 1, 5)
        return blend.view(b, height * width, fw)

    @property
    def hidden_width(self) -> int:
        """Width of the last hidden layer (the blended one)."""
        return self.hidden[-1] if self.hidden else self.offset.out_features

    @property
    def norm_width(self) -> int:
        """Width of the returned embedding."""
        return (
            self.out.out_features if isinstance(self.out, nn.Linear) else self.offset.out_features
        )


# bytes of one block's widest layer in the dense decode on CPU, about the core's L2 cache:
# blocks of 1-4 MiB ran 5-10 % faster than 1 << 17 points (tens of MiB), blocks of 256 KiB or
# less slower (the per-block overhead) -- tiny, 64 px windows, 1 thread (profile_dense.py)
CPU_BLOCK_BYTES = 1 << 20
# elsewhere (CUDA) large blocks fill the device; the bound is only on memory
DEVICE_BLOCK_POINTS = 1 << 17


def block_points(liif: LIIF, device: torch.device | str) -> int:
    """Pixels per block of :meth:`LIIF.dense` when ``max_points`` is ``None``.

    On CPU, blocks whose widest layer takes ``CPU_BLOCK_BYTES``; elsewhere
    ``DEVICE_BLOCK_POINTS``.

    >>> block_points(LIIF(8, 16, hidden=(64, 32)), "cpu")
    4096
    """
    return points_per_block(max((*liif.hidden, liif.offset.out_features)), device)


def points_per_block(width: int, device: torch.device | str) -> int:
    """Rows of a ``width``-wide float32 layer per block: on CPU the rows that fill
    ``CPU_BLOCK_BYTES`` (about a core's L2 cache), elsewhere ``DEVICE_BLOCK_POINTS``.

    >>> points_per_block(128, "cpu")
    2048
    """
    if torch.device(device).type != "cpu":
        return DEVICE_BLOCK_POINTS
    return max(1, CPU_BLOCK_BYTES // (4 * width))


class _Live(NamedTuple):
    """Where each of an axis' two neighbours exists in a half of the phases."""

    cells: tuple[tuple[int, int], tuple[int, int]]  # per neighbour, cells [lo, hi) it exists at
    order: tuple[int, ...]  # the neighbours to evaluate, the one present at every cell first


def _phases(
    stride: int, cells: int, dtype: torch.dtype, device: torch.device
) -> list[tuple[slice, int, Tensor, tuple[Tensor, Tensor], _Live]]:
    """The two halves of an axis' pixel phases for :meth:`LIIF.dense` (cached per axis).

    Each: the phases (a slice of ``0..stride``), the shift ``e`` of the first neighbour cell,
    the offset ``t`` from it per phase, per neighbour the weight per (cell, phase), and where
    each neighbour exists. At a border cell the missing neighbour would be the other one again
    (clamped, same offset): it is dropped and the other gets weight 1.
    """
    return _phases_cached(int(stride), int(cells), dtype, torch.device(device))


@functools.lru_cache(maxsize=256)
def _phases_cached(
    stride: int, cells: int, dtype: torch.dtype, device: torch.device
) -> list[tuple[slice, int, Tensor, tuple[Tensor, Tensor], _Live]]:
    j = torch.arange(stride, dtype=torch.float64)
    u = (2 * j + 1 - stride) / (2 * stride)  # offset from the pixel's own cell centre
    halves = []
    lo = stride // 2  # phases left of their cell's centre: 2j + 1 < stride
    for sl, e in ((slice(0, lo), -1), (slice(lo, stride), 0)):
        if sl.stop <= sl.start:
            continue
        t = u[sl] - e
        w0 = (1 - t)[None].expand(cells, -1).clone()  # (cells, phases)
        w1 = t[None].expand(cells, -1).clone()
        i = torch.arange(cells)
        gone0 = (i + e < 0)[:, None]  # first neighbour beyond the first cell
        gone1 = (i + e + 1 > cells - 1)[:, None]  # second neighbour beyond the last
        w0, w1 = (
            torch.where(gone0, 0.0, torch.where(gone1, 1.0, w0)),
            torch.where(gone1, 0.0, torch.where(gone0, 1.0, w1)),
        )
        # e = -1: neighbour 0 (cell i - 1) exists from cell 1 on, neighbour 1 everywhere;
        # e = 0: neighbour 0 (cell i) everywhere, neighbour 1 (cell i + 1) up to cells - 2
        live = (
            _Live(((1, cells), (0, cells)), (1, 0) if cells > 1 else (1,))
            if e == -1
            else _Live(((0, cells), (0, cells - 1)), (0, 1) if cells > 1 else (0,))
        )
        halves.append(
            (
                sl,
                e,
                t.to(dtype=dtype, device=device),
                (w0.to(dtype=dtype, device=device), w1.to(dtype=dtype, device=device)),
                live,
            )
        )
    return halves


class MultiScaleLIIF(nn.Module):
    """LIIF on each encoder stage, each to width ``D``, summed and layer-normed.

    Parameters
    ----------
    stage_dims
        Channels of each stage's feature map.
    width
        ``D``, the embedding width.
    hidden
        Hidden widths of each stage's LIIF MLP: one sequence per stage, or one for all stages.
    activation
        The MLPs' activation, ``"relu"`` (the reference) or ``"gelu"``.
    strides
        Input pixels per cell of each stage (``patch_size * 2**i``): how the image's pixel size
        becomes a cell size on each stage.

    Examples
    --------
    >>> m = MultiScaleLIIF((8, 16), 32, hidden=(16, 16), strides=(4, 8))
    >>> m([torch.zeros(1, 8, 4, 4), torch.zeros(1, 16, 2, 2)], torch.zeros(1, 3, 2)).shape
    torch.Size([1, 3, 32])
    """

    def __init__(
        self,
        stage_dims: Sequence[int],
        width: int,
        *,
        hidden: Sequence[int] | Sequence[Sequence[int]] = (256, 256),
        activation: str = "relu",
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        per_stage = _per_stage(hidden, len(stage_dims))
        self.stages = nn.ModuleList(
            LIIF(c, width, hidden=hs, activation=activation) for c, hs in zip(stage_dims, per_stage)
        )
        self.strides = tuple(strides) if strides is not None else (1,) * len(stage_dims)
        self.norm = nn.LayerNorm(width)

    def _image_size(self, features: Sequence[Tensor]) -> tuple[int, int]:
        h, w = features[0].shape[-2:]
        return h * self.strides[0], w * self.strides[0]

    def forward(
        self, features: Sequence[Tensor], query: Tensor, *, cell: Tensor | None = None
    ) -> Tensor:
        """Embeddings (B, Q, D) of ``query`` (B, Q, 2) on the stage maps ``features``.

        ``cell``: each query's footprint (width, height) in the query's [-1, 1] units (a
        tensor broadcastable to (B, Q, 2)); default one pixel of the image the features were
        encoded from (``2 / W``, ``2 / H``), as LIIF's cell decoding. On each stage it becomes
        a size in that stage's cells.
        """
        if cell is None:
            hi, wi = self._image_size(features)
            cell = torch.tensor((2.0 / wi, 2.0 / hi), device=query.device)
        total = None
        for liif, feat in zip(self.stages, features):
            h, w = feat.shape[-2:]
            scale = torch.tensor((w / 2.0, h / 2.0), device=query.device)
            out = liif(feat, query, cell=cell * scale)
            total = out if total is None else total + out
        return self.norm(total)

    def dense(self, features: Sequence[Tensor], *, max_points: int | None = None) -> Tensor:
        """Embeddings (B, H * W, D) at every pixel of the encoded image, row-major.

        Equals ``forward(features, pixel_centres(H, W)[None].expand(B, -1, -1))``.
        """
        return self.readout(self.blend_dense(features, max_points=max_points))

    def blend_dense(
        self, features: Sequence[Tensor], *, max_points: int | None = None
    ) -> list[Tensor]:
        """Each stage's blended last hidden layer (B, H * W, F_s) at every pixel, row-major:
        the per-pixel work left (:meth:`readout`) can then run on any block of pixels."""
        hi, wi = self._image_size(features)
        out = []
        for liif, feat in zip(self.stages, features):
            h, w = feat.shape[-2:]
            out.append(liif.blend_dense(feat, hi, wi, cell=(w / wi, h / hi), max_points=max_points))
        return out

    def readout(self, blends: Sequence[Tensor]) -> Tensor:
        """Embeddings (..., D) from each stage's blended hidden layer (..., F_s) at the same
        pixels (:meth:`blend_dense`, or any slice of it)."""
        total = None
        for liif, blend in zip(self.stages, blends):
            out = liif.readout(blend)
            total = out if total is None else total + out
        return self.norm(total)


def _per_stage(hidden: Sequence[int] | Sequence[Sequence[int]], n: int) -> list[tuple[int, ...]]:
    items = list(hidden)
    if all(isinstance(h, Sequence) for h in items) and items:
        if len(items) != n:
            raise ValueError(f"hidden has {len(items)} entries; one per stage ({n}) is needed")
        return [tuple(int(v) for v in h) for h in items]
    return [tuple(int(v) for v in items)] * n
