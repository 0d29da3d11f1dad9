"""Swin Transformer v2 encoder returning its four stage feature maps, torchvision-compatible names.

Written here because torchvision has no CPU wheel on our build machines; the module tree mirrors
torchvision's ``swin_v2_b`` so its state dicts (and SatlasPretrain's, which wrap it as
``backbone.backbone.features...``) load key for key:

``features.0``            patch embedding: ``0`` conv (patch x patch, stride patch), ``1`` to
                          channels-last, ``2`` LayerNorm
``features.1, 3, 5, 7``   stages of :class:`SwinBlockV2` (``norm1``, ``attn.{qkv, proj,
                          logit_scale, cpb_mlp.0, cpb_mlp.2}``, ``norm2``, ``mlp.0``, ``mlp.3``)
``features.2, 4, 6``      :class:`PatchMergingV2` (``reduction``, ``norm``)

The classification ``norm``/``head`` are not built (MISO reads the four stage outputs, as
SatlasPretrain's backbone does). The position buffers ``relative_coords_table`` and
``relative_position_index`` are deterministic functions of the window size, so they are kept out
of the state dict (``persistent=False``) and recomputed; :func:`load_swin_v2_state_dict` skips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..exceptions import CheckpointError, InputError

__all__ = [
    "PatchMergingV2",
    "SwinBlockV2",
    "SwinLoadReport",
    "SwinV2Encoder",
    "WindowAttentionV2",
    "load_swin_v2_state_dict",
]

# Keys of torchvision's swin_v2_b that are recomputed here rather than loaded.
_RECOMPUTED = ("relative_coords_table", "relative_position_index")


class _ChannelsLast(nn.Module):
    """(B, C, H, W) -> (B, H, W, C); a module so the patch-embedding norm sits at index 2."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class _DropPath(nn.Module):
    """Stochastic depth per sample ("row" mode): drop the residual branch of whole samples."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class WindowAttentionV2(nn.Module):
    """Shifted-window multi-head self attention of Swin v2.

    Cosine attention with a learned per-head temperature (``logit_scale``, clamped at log 100) and
    a continuous position bias from a small MLP over log-spaced relative coordinates
    (``cpb_mlp``), squashed as ``16 * sigmoid``. The key bias is held at zero as in Swin v2.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        window_size: int,
        shift: int,
        cpb_hidden: int = 512,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, cpb_hidden), nn.ReLU(inplace=True), nn.Linear(cpb_hidden, num_heads, False)
        )
        w = window_size
        # relative offsets (-(w-1)..w-1)^2, scaled to +-8 and log-spaced as in Swin v2
        rel = torch.arange(-(w - 1), w, dtype=torch.float32) / max(w - 1, 1) * 8.0
        table = torch.stack(torch.meshgrid(rel, rel, indexing="ij"), dim=-1)[None]
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0
        self.register_buffer("relative_coords_table", table, persistent=False)
        coords = torch.stack(
            torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
        ).flatten(1)
        d = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
        index = (d[..., 0] * (2 * w - 1) + d[..., 1]).flatten()
        self.register_buffer("relative_position_index", index, persistent=False)
        # inference caches (never saved): the bias depends only on cpb_mlp's weights, the shift
        # mask only on the padded size; recomputing them every call costs as much as a block
        self._bias_cache: tuple[tuple, Tensor] | None = None
        self._mask_cache: dict[tuple, Tensor] = {}

    def position_bias(self) -> Tensor:
        """(1, heads, w*w, w*w) continuous relative position bias.

        Without gradients and in eval mode it is computed once per state of ``cpb_mlp``'s
        weights (their storage and version counters, which any update bumps) and reused.
        """
        if self.training or torch.is_grad_enabled():
            return self._position_bias()
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in self.cpb_mlp.parameters())
        if self._bias_cache is None or self._bias_cache[0] != key:
            self._bias_cache = (key, self._position_bias())
        return self._bias_cache[1]

    def _position_bias(self) -> Tensor:
        n = self.window_size**2
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)
        return 16.0 * torch.sigmoid(bias)[None]

    def _shift_mask(self, ph: int, pw: int, shift_h: int, shift_w: int, x: Tensor) -> Tensor:
        key = (ph, pw, shift_h, shift_w, x.device, x.dtype)
        mask = self._mask_cache.get(key)
        if mask is None:
            if len(self._mask_cache) > 16:  # a few image sizes are in use at a time
                self._mask_cache.clear()
            mask = self._mask_cache[key] = self._make_shift_mask(ph, pw, shift_h, shift_w, x)
        return mask

    def _make_shift_mask(self, ph: int, pw: int, shift_h: int, shift_w: int, x: Tensor) -> Tensor:
        # label the 3x3 regions a cyclic shift brings together; tokens of different regions must
        # not attend to each other inside one window
        w = self.window_size
        region = x.new_zeros((ph, pw))
        label = 0
        for hs in (slice(0, ph - w), slice(ph - w, ph - shift_h), slice(ph - shift_h, ph)):
            for ws in (slice(0, pw - w), slice(pw - w, pw - shift_w), slice(pw - shift_w, pw)):
                region[hs, ws] = label
                label += 1
        region = region.view(ph // w, w, pw // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)
        diff = region[:, None, :] - region[:, :, None]
        return torch.where(diff != 0, -100.0, 0.0).to(x.dtype)  # (nW, w*w, w*w)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (B, H, W, C) -> (B, H, W, C)."""
        b, h, w_, c = x.shape
        w = self.window_size
        pad_b, pad_r = (-h) % w, (-w_) % w
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w_ + pad_r
        # no shift along an axis one window already covers
        sh = self.shift if ph > w else 0
        sw = self.shift if pw > w else 0
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        nh, nw = ph // w, pw // w
        win = x.view(b, nh, w, nw, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, w * w, c)

        bias = self.qkv.bias
        if bias is not None:  # Swin v2 keeps the key bias at zero
            bias = torch.cat([bias[:c], torch.zeros_like(bias[c : 2 * c]), bias[2 * c :]])
        qkv = F.linear(win, self.qkv.weight, bias)
        qkv = qkv.view(win.shape[0], w * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * scale
        attn = attn + self.position_bias()
        if sh or sw:
            mask = self._shift_mask(ph, pw, sh, sw, attn)
            attn = attn.view(b, nh * nw, self.num_heads, w * w, w * w) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, w * w, w * w)
        out = attn.softmax(dim=-1) @ v
        out = self.proj(out.transpose(1, 2).reshape(win.shape[0], w * w, c))

        out = out.view(b, nh, nw, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
        if sh or sw:
            out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
        return out[:, :h, :w_, :]


class SwinBlockV2(nn.Module):
    """One Swin v2 block: residual post-norm around window attention and around the MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        window_size: int,
        shift: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        cpb_hidden: int = 512,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttentionV2(
            dim, num_heads, window_size=window_size, shift=shift, cpb_hidden=cpb_hidden
        )
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        # indices 0 and 3 hold the linears, as torchvision's MLP (Linear, GELU, Dropout, Linear,
        # Dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Linear(hidden, dim),
            nn.Dropout(0.0),
        )
        self.drop_path = _DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.norm1(self.attn(x)))
        return x + self.drop_path(self.norm2(self.mlp(x)))


class PatchMergingV2(nn.Module):
    """Halve the resolution, double the width: concatenate 2x2 neighbours, Linear, then LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # the torchvision order of the four neighbours (matters for loading weights)
        x = torch.cat(
            [
                x[..., 0::2, 0::2, :],
                x[..., 1::2, 0::2, :],
                x[..., 0::2, 1::2, :],
                x[..., 1::2, 1::2, :],
            ],
            dim=-1,
        )
        return self.norm(self.reduction(x))


class SwinV2Encoder(nn.Module):
    """Swin Transformer v2 returning the four stage feature maps.

    Parameters
    ----------
    in_channels
        Bands of the input image (9 for MISO's Sentinel-2 optical, 6 for terrain covariates).
    embed_dim, depths, num_heads, window_size
        Patch-embedding width, blocks per stage, heads per stage, attention window in tokens
        (Swin-v2-B: 128, (2, 2, 18, 2), (4, 8, 16, 32), 8).
    patch_size, mlp_ratio, drop_path, cpb_hidden
        Patch side in pixels, MLP width ratio, stochastic-depth rate at the deepest block (linearly
        increasing from 0), hidden width of the position-bias MLP (torchvision: 512).

    Examples
    --------
    >>> enc = SwinV2Encoder(9, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
    ...                     window_size=2)
    >>> [tuple(f.shape) for f in enc(torch.zeros(1, 9, 32, 32))]
    [(1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2), (1, 128, 1, 1)]
    """

    def __init__(
        self,
        in_channels: int,
        *,
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2, 18, 2),
        num_heads: tuple[int, ...] = (4, 8, 16, 32),
        window_size: int = 8,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        cpb_hidden: int = 512,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise InputError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.dims = tuple(embed_dim * 2**i for i in range(len(depths)))
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size),
                _ChannelsLast(),
                nn.LayerNorm(embed_dim),
            )
        ]
        total = sum(depths)
        k = 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = self.dims[i]
            blocks = []
            for j in range(depth):
                blocks.append(
                    SwinBlockV2(
                        dim,
                        heads,
                        window_size=window_size,
                        shift=0 if j % 2 == 0 else window_size // 2,
                        mlp_ratio=mlp_ratio,
                        drop_path=drop_path * k / max(total - 1, 1),
                        cpb_hidden=cpb_hidden,
                    )
                )
                k += 1
            layers.append(nn.Sequential(*blocks))
            if i < len(depths) - 1:
                layers.append(PatchMergingV2(dim))
        self.features = nn.Sequential(*layers)
        self._stage_indices = tuple(range(1, len(layers), 2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialisation: truncated normal linears, Xavier block MLPs, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, SwinBlockV2):
                for lin in (m.mlp[0], m.mlp[3]):
                    nn.init.xavier_uniform_(lin.weight)
                    nn.init.normal_(lin.bias, std=1e-6)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: (B, C, H, W) -> four maps (B, C_i, H / (p * 2**i), W / (p * 2**i))."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(
                f"encoder input has shape {tuple(x.shape)}; it needs (batch, {self.in_channels}, "
                "height, width)"
            )
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._stage_indices:
                outs.append(x.permute(0, 3, 1, 2))
        return outs


@dataclass
class SwinLoadReport:
    """What :func:`load_swin_v2_state_dict` did with each key of the source state dict."""

    prefix: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # classification norm/head
    recomputed: list[str] = field(default_factory=list)  # position buffers
    reinitialised: list[str] = field(default_factory=list)  # first conv, band count differs
    ignored: list[str] = field(default_factory=list)  # outside the backbone prefix (Satlas FPN...)
    missing: list[str] = field(default_factory=list)  # only when strict=False
    unexpected: list[str] = field(default_factory=list)  # only when strict=False

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors (prefix {self.prefix!r}); dropped "
            f"{len(self.dropped)} head tensors; recomputed {len(self.recomputed)} buffers; "
            f"re-initialised {self.reinitialised or 'none'}; ignored {len(self.ignored)} keys "
            f"outside the backbone; missing {self.missing or 'none'}; unexpected "
            f"{self.unexpected or 'none'}"
        )


def _as_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    return torch.from_numpy(np.asarray(value))


def load_swin_v2_state_dict(
    encoder: SwinV2Encoder,
    state_dict: dict[str, Any],
    *,
    strict: bool = True,
    input_conv: str = "reinit",
) -> SwinLoadReport:
    """Load torchvision-layout Swin v2 weights (e.g. SatlasPretrain Sentinel-2) into ``encoder``.

    The backbone prefix is found from the patch-embedding key ``features.0.0.weight``: plain
    torchvision (``""``), SatlasPretrain (``"backbone.backbone."``) or any other wrapper. Keys
    outside that prefix (Satlas FPN and heads) are ignored; the classification ``norm``/``head``
    are dropped; position buffers are recomputed from the window size.

    When the patch-embedding conv's band count differs from ``encoder.in_channels`` (RGB weights
    into a 9-band encoder), ``input_conv`` decides: ``"reinit"`` (MISO's choice) keeps the
    encoder's fresh truncated-normal weight and loads only the bias; ``"mean"`` fills every new band
    with the mean of the pretrained bands' kernels scaled by ``old_bands / new_bands``, which keeps
    the response to a band-constant image.

    Parameters
    ----------
    encoder
        The target, built with the source's embed width, depths, heads and window.
    state_dict
        Name -> tensor (torch or numpy), as from ``safetensors.torch.load_file``.
    strict
        Refuse missing backbone keys and unknown keys inside the prefix (default). Shape
        mismatches are always refused.
    input_conv
        ``"reinit"`` or ``"mean"`` (see above).

    Returns
    -------
    SwinLoadReport
        Which keys were loaded, dropped, recomputed, re-initialised or ignored.

    Raises
    ------
    CheckpointError
        No patch-embedding key, a shape mismatch (naming the key and both shapes), or (strict)
        missing/unexpected keys.

    Examples
    --------
    >>> from safetensors.torch import load_file                  # doctest: +SKIP
    >>> enc = SwinV2Encoder(9)                                     # doctest: +SKIP
    >>> print(load_swin_v2_state_dict(enc, load_file("satlas_s2_swinb.safetensors")))  # doctest: +SKIP
    """
    if input_conv not in ("reinit", "mean"):
        raise InputError(f"input_conv must be 'reinit' or 'mean', got {input_conv!r}")
    anchor = "features.0.0.weight"
    prefixes = sorted({k[: -len(anchor)] for k in state_dict if k.endswith(anchor)}, key=len)
    if not prefixes:
        raise CheckpointError(
            f"state dict has no Swin v2 patch-embedding key {anchor!r} (with or without a prefix "
            "such as 'backbone.backbone.'); it is not a torchvision-layout Swin v2"
        )
    prefix = prefixes[0]  # the outermost backbone when several wrappers nest
    report = SwinLoadReport(prefix=prefix)
    target = encoder.state_dict()
    source: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            report.ignored.append(key)
            continue
        name = key[len(prefix) :]
        if name.startswith(("head.", "norm.")):
            report.dropped.append(key)
        elif name.rsplit(".", 1)[-1] in _RECOMPUTED:
            report.recomputed.append(key)
        elif name in target:
            source[name] = _as_tensor(value)
        else:
            report.unexpected.append(key)
    report.missing = sorted(set(target) - set(source))
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(
            f"Swin v2 state dict (prefix {prefix!r}) does not fit the encoder: missing "
            f"{report.missing[:5]}{' ...' if len(report.missing) > 5 else ''}, unexpected "
            f"{report.unexpected[:5]}{' ...' if len(report.unexpected) > 5 else ''}; build the "
            "encoder with the source's embed_dim, depths, num_heads and window_size"
        )
    conv = "features.0.0.weight"
    new_state: dict[str, Tensor] = {}
    for name, value in source.items():
        want = target[name]
        if name == conv and value.ndim == 4 and value.shape[1] != want.shape[1]:
            if value.shape[0] != want.shape[0] or value.shape[2:] != want.shape[2:]:
                raise CheckpointError(
                    f"{prefix}{name} has shape {tuple(value.shape)}; the encoder needs "
                    f"{tuple(want.shape)}"
                )
            report.reinitialised.append(prefix + name)
            if input_conv == "mean":
                mean = value.float().mean(dim=1, keepdim=True) * (value.shape[1] / want.shape[1])
                new_state[name] = mean.expand_as(want).clone().to(want.dtype)
            continue  # "reinit": keep the encoder's fresh weight
        if tuple(value.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{prefix}{name} has shape {tuple(value.shape)}; the encoder needs "
                f"{tuple(want.shape)}"
            )
        new_state[name] = value.to(want.dtype)
        report.loaded.append(prefix + name)
    encoder.load_state_dict(new_state, strict=False)
    return report
