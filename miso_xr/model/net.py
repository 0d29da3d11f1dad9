"""The MISO network in torch: per-modality encoders, LIIF decoders, fusion, head, location.

Network (one instance per configuration of modalities, never a fork of the code)::

    image modality m (optical / covariates / sar / any) --SwinV2Encoder_m--> 4 stage maps
        --MultiScaleLIIF_m at the query points--> (B, Q, D) --MLP + LayerNorm--> e_m
    visual = MLP + LayerNorm (sum_m e_m) --head MLP--> logits            (B, Q, K)
    location (x, y metres from the region centre) --LocationEncoder--> e_loc

As in the paper, location never enters the prediction: ``e_loc`` exists only for the fused
visual <-> location InfoNCE, which regularises the visual embedding to vary smoothly in space.
The ``location_prior=True`` option (a departure from the paper, off by default) adds a location
head's logits to the visual logits, a learned spatial prior that can memorise field points; the
map then changes when the same pixels are moved. The embeddings returned for the contrastive
losses are the ``e_m``, ``visual`` and ``e_loc``. The user-facing, self-describing predictor is
:class:`~miso_xr.model.miso.MisoModel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..exceptions import InputError, MissingBandError
from .config import MisoConfig
from .liif import MultiScaleLIIF, points_per_block
from .location import LocationEncoder
from .swin import SwinV2Encoder

__all__ = ["MisoNet", "MisoOutput", "count_parameters", "flops_per_crop", "readout_points"]


class MisoOutput(NamedTuple):
    """What :meth:`MisoNet.forward` returns.

    ``logits``: (B, Q, num_outputs); ``embeddings``: branch name (each image modality, and
    ``"location"`` when enabled) -> (B, Q, D).
    """

    logits: Tensor
    embeddings: dict[str, Tensor]


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (all, or only those with ``requires_grad``).

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _mlp_norm(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.LayerNorm(width)
    )


class MisoNet(nn.Module):
    """MISO: per-modality Swin v2 + LIIF embeddings, fused; a location encoder for contrast.

    Parameters
    ----------
    config
        A :class:`MisoConfig` (or its name, ``"tiny"``/``"base"``).
    bands
        Image modality -> number of input channels, in the order the model reads them
        (``{"optical": 9, "covariates": 6}``; ``{"covariates": 6}`` alone is a valid model).
    num_outputs
        1 for a binary task (one logit, BCE), K for K classes (CE).
    location
        Whether to build the location encoder (for the visual <-> location contrastive loss).
    location_prior
        Also add location logits to the prediction (a departure from the paper; needs
        ``location``).

    Examples
    --------
    >>> net = MisoNet("micro", {"covariates": 6}, num_outputs=1, location=False)
    >>> out = net({"covariates": torch.zeros(2, 6, 32, 32)}, torch.zeros(2, 5, 2), None)
    >>> tuple(out.logits.shape), sorted(out.embeddings)
    ((2, 5, 1), ['covariates', 'visual'])
    """

    def __init__(
        self,
        config: MisoConfig | str,
        bands: Mapping[str, int],
        num_outputs: int,
        location: bool = True,
        location_prior: bool = False,
    ) -> None:
        super().__init__()
        config = MisoConfig.named(config) if isinstance(config, str) else config
        if not bands:
            raise InputError(
                "MisoNet needs at least one image modality, e.g. bands={'covariates': 6}"
            )
        for name, n in bands.items():
            if not name.isidentifier() or name in ("location", "visual"):
                raise InputError(
                    f"modality name {name!r} must be a Python identifier other than 'location' "
                    "and 'visual'"
                )
            if int(n) < 1:
                raise InputError(f"modality {name!r} has {n} bands; it needs at least 1")
        if int(num_outputs) < 1:
            raise InputError(f"num_outputs must be >= 1 (1 for binary), got {num_outputs}")
        if location_prior and not location:
            raise InputError("location_prior=True needs the location encoder (location=True)")
        self.config = config
        self.bands = {str(k): int(v) for k, v in bands.items()}
        self.num_outputs = int(num_outputs)
        self.has_location = bool(location)
        self.location_prior = bool(location_prior)
        c = config
        strides = tuple(c.patch_size * 2**i for i in range(len(c.depths)))
        self.encoders = nn.ModuleDict(
            {
                m: SwinV2Encoder(
                    n,
                    embed_dim=c.embed_dim,
                    depths=c.depths,
                    num_heads=c.num_heads,
                    window_size=c.window_size,
                    patch_size=c.patch_size,
                    mlp_ratio=c.mlp_ratio,
                    drop_path=c.drop_path,
                    cpb_hidden=c.cpb_hidden,
                )
                for m, n in self.bands.items()
            }
        )
        self.implicit = nn.ModuleDict(
            {
                m: MultiScaleLIIF(
                    c.stage_dims,
                    c.width,
                    hidden=c.liif_widths,
                    activation=c.liif_activation,
                    strides=strides,
                )
                for m in self.bands
            }
        )
        if c.pixel_skip:
            self.pixel = nn.ModuleDict({m: nn.Linear(n, c.width) for m, n in self.bands.items()})
        self.project = nn.ModuleDict({m: _mlp_norm(c.width) for m in self.bands})
        self.visual = _mlp_norm(c.width)
        half = max(1, c.fusion_hidden // 2)
        # the reference's output head: D -> D -> D/2 -> K with GELUs (dropout for MC-dropout)
        self.head = nn.Sequential(
            nn.Linear(c.width, c.fusion_hidden),
            nn.GELU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.fusion_hidden, half),
            nn.GELU(),
            nn.Linear(half, self.num_outputs),
        )
        if self.has_location:
            self.location = LocationEncoder(
                c.width,
                min_wavelength=c.location_min_wavelength,
                max_wavelength=c.location_max_wavelength,
                scales=c.location_scales,
                layers=c.location_layers,
                dropout=c.dropout,
            )
        if self.location_prior:
            self.location_head = nn.Sequential(
                nn.Dropout(c.dropout), nn.Linear(c.width, self.num_outputs)
            )

    # -- the two halves, separate so dense prediction encodes once and queries in chunks --------
    def encode(self, images: Mapping[str, Tensor]) -> dict[str, list[Tensor]]:
        """Run each modality's encoder: name -> four stage maps."""
        missing = [m for m in self.bands if m not in images]
        if missing:
            raise MissingBandError(
                f"images lack modality {missing}; this model reads {list(self.bands)}"
            )
        r = self.config.reduction
        out = {}
        for m, n in self.bands.items():
            x = images[m]
            if x.ndim != 4 or x.shape[1] != n:
                raise InputError(
                    f"images[{m!r}] has shape {tuple(x.shape)}; it needs (batch, {n}, height, width)"
                )
            if x.shape[-1] % r or x.shape[-2] % r:
                raise InputError(
                    f"images[{m!r}] is {x.shape[-2]} x {x.shape[-1]} px; height and width must be "
                    f"multiples of {r} (patch_size * 2**(stages-1))"
                )
            out[m] = self.encoders[m](x)
        return out

    def decode(
        self,
        features: Mapping[str, list[Tensor]],
        query: Tensor | None,
        location: Tensor | None,
        images: Mapping[str, Tensor] | None = None,
        prior: Tensor | None = None,
    ) -> MisoOutput:
        """Embeddings and logits at ``query`` (B, Q, 2) from encoded ``features``.

        ``query=None`` decodes every pixel of the encoded images, row-major (Q = H * W), through
        LIIF's dense path: the same values as the pixel centres' queries, for much less work.
        ``location`` (B, Q, 2), metres from the region centre, is needed with the location prior;
        otherwise it only adds the ``"location"`` embedding (training) and may be None.
        ``images`` are the encoded images themselves, needed by a net with the pixel skip.
        ``prior`` (B, Q, outputs): the location prior's logits at the queries, already computed
        (:meth:`location_logits`); it replaces ``location`` (no ``"location"`` embedding then).
        """
        if query is not None and (query.ndim != 3 or query.shape[-1] != 2):
            raise InputError(
                f"query has shape {tuple(query.shape)}; it needs (batch, points, 2) as (x, y) in "
                "[-1, 1]"
            )
        qshape = self._query_shape(features) if query is None else tuple(query.shape)
        location = self._check_extras(qshape, location, images, prior)
        pixels = self._skip_pixels(images, query)
        zs = {}
        for m in self.bands:
            imp = self.implicit[m]
            zs[m] = imp.dense(features[m]) if query is None else imp(features[m], query)
        emb: dict[str, Tensor] = {}
        logits = self._fuse(zs, pixels, location, prior, emb)
        return MisoOutput(logits=logits, embeddings=emb)

    def dense_logits(
        self,
        features: Mapping[str, list[Tensor]],
        location: Tensor | None = None,
        images: Mapping[str, Tensor] | None = None,
        prior: Tensor | None = None,
        *,
        max_points: int | None = None,
    ) -> Tensor:
        """Logits (B, H * W, K), float32, at every pixel of the encoded images, row-major.

        The same values as ``decode(features, None, location, images, prior).logits`` (to float
        rounding) in less time. LIIF's hidden layers run over the whole image, in their own
        blocks (:meth:`MultiScaleLIIF.blend_dense`); everything after them is per pixel (each
        stage's last layer and norm, the projections, the fusion, the head, the location prior),
        so it runs on blocks of ``max_points`` pixels whose tensors all stay in the CPU's cache
        (``None``: :func:`readout_points`) instead of streaming a dozen (B, H * W, D) tensors
        through main memory. No embeddings are kept: this is the inference path.
        """
        qshape = self._query_shape(features)
        location = self._check_extras(qshape, location, images, prior)
        if not self.location_prior:
            location = None  # only its contrastive embedding would use it
        b, q = qshape[:2]
        n = b * q  # blocks run over the flattened (window, pixel) rows: contiguous slices

        def flat(t: Tensor) -> Tensor:
            return t.reshape(n, t.shape[-1])

        blends = {
            m: [flat(x) for x in self.implicit[m].blend_dense(features[m])] for m in self.bands
        }
        pixels = {m: flat(p) for m, p in self._skip_pixels(images, None).items()}
        location = None if location is None else flat(location)
        prior = None if prior is None else flat(prior)
        some = blends[next(iter(self.bands))][0]
        step = readout_points(self.config.width, some.device) if max_points is None else max_points
        step = max(1, int(step))
        # float32 logits: under autocast the blends are bf16, but a logit (plus the prior's)
        # rounded to bf16 would move probabilities by ~1e-2
        out = torch.empty((n, self.num_outputs), dtype=torch.float32, device=some.device)
        for r0 in range(0, n, step):
            cut = slice(r0, min(r0 + step, n))
            zs = {m: self.implicit[m].readout([x[cut] for x in blends[m]]) for m in self.bands}
            out[cut] = self._fuse(
                zs,
                {m: p[cut] for m, p in pixels.items()},
                None if location is None else location[cut],
                None if prior is None else prior[cut],
                None,
            )
        return out.view(b, q, self.num_outputs)

    def _skip_pixels(
        self, images: Mapping[str, Tensor] | None, query: Tensor | None
    ) -> dict[str, Tensor]:
        """Each modality's pixel values at the queries for the pixel skip; {} without it."""
        if not self.config.pixel_skip:
            return {}
        return {m: _pixels_at(images[m], query) for m in self.bands}  # type: ignore[index]

    def _query_shape(self, features: Mapping[str, list[Tensor]]) -> tuple[int, ...]:
        """(B, H * W, 2): every pixel of the images ``features`` were encoded from."""
        f = next(iter(features.values()))[0]
        return (f.shape[0], f.shape[-2] * f.shape[-1] * self.config.patch_size**2, 2)

    def _check_extras(
        self,
        qshape: tuple[int, ...],
        location: Tensor | None,
        images: Mapping[str, Tensor] | None,
        prior: Tensor | None,
    ) -> Tensor | None:
        """Check decode's optional inputs against the query shape; the location to use."""
        if self.config.pixel_skip and images is None:
            raise InputError(
                "this model adds the pixel values at each query (pixel_skip): pass the images "
                "that were encoded as decode(..., images=images)"
            )
        if prior is not None:
            want = (*qshape[:2], self.num_outputs)
            if not self.location_prior or tuple(prior.shape) != want:
                raise InputError(
                    f"prior has shape {tuple(prior.shape)}; it needs {want}, the location prior's "
                    "logits at the queries, from a net with location_prior=True (this one has "
                    f"{'a' if self.location_prior else 'no'} location prior)"
                )
            return None
        if self.has_location and (location is not None or self.location_prior):
            if location is None or tuple(location.shape) != qshape:
                raise InputError(
                    "this model has a location prior; location must be projected x/y in metres "
                    f"with the query's shape {qshape}, got "
                    f"{None if location is None else tuple(location.shape)}"
                )
            return location
        return None

    def _fuse(
        self,
        zs: Mapping[str, Tensor],
        pixels: Mapping[str, Tensor],
        location: Tensor | None,
        prior: Tensor | None,
        emb: dict[str, Tensor] | None,
    ) -> Tensor:
        """Logits from each modality's implicit embedding ``zs[m]`` (..., D) at some points:
        the pixel skip, projections, fusion, head, and the location branch or its ``prior``
        logits; the embeddings go into ``emb`` (None: not kept)."""
        fused = None
        # sorted: the sum's rounding must not depend on the order a spec lists modalities in
        for m in sorted(self.bands):
            z = zs[m]
            if self.config.pixel_skip:
                z = z + self.pixel[m](pixels[m])
            e = self.project[m](z)
            if emb is not None:
                emb[m] = e
            fused = e if fused is None else fused + e
        visual = self.visual(fused)
        logits = self.head(visual)
        if emb is not None:
            emb["visual"] = visual
        if prior is not None:
            return logits + prior
        if location is not None:
            e_loc = self.location(location)
            if emb is not None:
                emb["location"] = e_loc
            if self.location_prior:
                logits = logits + self.location_head(e_loc)
        return logits

    def location_logits(self, location: Tensor) -> Tensor:
        """The location prior's logits (..., outputs) at ``location`` (..., 2), metres from the
        region centre: what :meth:`decode` adds to the image logits."""
        if not self.location_prior:
            raise InputError("this network has no location prior (location_prior=False)")
        return self.location_head(self.location(location))

    def forward(
        self, images: Mapping[str, Tensor], query: Tensor, location: Tensor | None = None
    ) -> MisoOutput:
        """``images[m]`` (B, C_m, H, W), ``query`` (B, Q, 2) grid_sample convention (x, y in
        [-1, 1], edges at +-1), ``location`` (B, Q, 2) projected x/y in metres (float64 keeps
        full precision; ignored by a model without the location branch)."""
        return self.decode(self.encode(images), query, location, images)


def readout_points(width: int, device: torch.device | str) -> int:
    """Pixels per block of :meth:`MisoNet.dense_logits`' per-pixel layers when ``max_points`` is
    None: LIIF's cache-sized blocks (:func:`~miso_xr.model.liif.points_per_block`) of its
    ``width``-wide tensors, at least 64 (tiny, 4 windows of 64 px, 1 thread: the layers after
    LIIF's blend took 110 ms in blocks of 2,048 px, 151 ms over the whole 16,384 px, 121 ms in
    blocks of 512).

    >>> readout_points(128, "cpu")
    2048
    """
    return max(64, points_per_block(width, device))


def _pixels_at(image: Tensor, query: Tensor | None) -> Tensor:
    """(B, Q, C) values of the pixels that hold each query point; every pixel row-major if None."""
    if query is None:
        return image.flatten(2).transpose(1, 2)
    # nearest pixel in grid_sample's convention (edges at +-1), exact at pixel centres
    picked = nn.functional.grid_sample(
        image, query.to(image.dtype).unsqueeze(1), mode="nearest", align_corners=False
    )
    return picked.squeeze(2).transpose(1, 2)


def flops_per_crop(
    config: MisoConfig | str,
    *,
    bands: Mapping[str, int] | None = None,
    crop: int = 256,
    queries: int | None = None,
    location: bool = True,
    device: str = "meta",
) -> int:
    """Forward FLOPs of one crop, counted with ``torch.utils.flop_counter.FlopCounterMode``.

    ``queries`` defaults to the training query count (51); ``crop * crop`` gives dense prediction.
    Counting runs on the ``meta`` device (shapes only), so even the base model costs no compute.
    """
    from torch.utils.flop_counter import FlopCounterMode

    config = MisoConfig.named(config) if isinstance(config, str) else config
    bands = dict(bands or {"optical": 9, "covariates": 6})
    queries = config.queries_per_crop if queries is None else queries
    with torch.device(device):
        net = MisoNet(config, bands, 1, location).eval()
        images = {m: torch.zeros(1, c, crop, crop) for m, c in bands.items()}
        query = torch.zeros(1, queries, 2)
        loc = torch.zeros(1, queries, 2, dtype=torch.float64)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(images, query, loc)
    return int(counter.get_total_flops())
