"""The MISO architecture and its training defaults as plain data (no torch here).

A :class:`MisoConfig` is frozen and JSON round-trippable, so it hashes and tokenizes cleanly for
Dask and sits in a checkpoint's metadata. Two named configurations ship:

- ``"base"``: the paper. Swin-v2-B encoders (embed 128, depths 2-2-18-2, heads 4-8-16-32,
  window 8), embedding width 1024, 256 px crops, AdamW lr 5e-5.
- ``"tiny"``: the same architecture made small enough to train an epoch over 1,000 points in a few
  minutes on 2 CPU cores (64 px crops, embed 32, width 128), trained from scratch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..exceptions import InputError

__all__ = ["MisoConfig", "NAMED_CONFIGS"]


@dataclass(frozen=True)
class MisoConfig:
    """Architecture of a MISO network and its training defaults.

    Parameters
    ----------
    name
        A label (``"tiny"``, ``"base"`` or anything for a custom configuration).
    embed_dim, depths, num_heads, window_size, patch_size, mlp_ratio, drop_path, cpb_hidden
        The Swin Transformer v2 encoders (one per image modality): patch-embedding width, blocks
        per stage, attention heads per stage, attention window (tokens), patch size (pixels), MLP
        width ratio, stochastic-depth rate at the deepest block, hidden width of the continuous
        position-bias MLP (torchvision: 512).
    width
        ``D``, the common embedding width every branch produces per query point (paper: 1024).
    liif_hidden
        Hidden widths of each stage's LIIF decoder MLP (3 linear layers per stage, as the MISO
        reference): ``None`` takes the reference's proportions of ``width`` (stage ``i`` with
        ``C_i`` channels: ``max(C_i, D/4)`` then ``min(D, 2 * that)``; for "base" 256-512,
        256-512, 512-1024, 1024-1024); an int ``h`` means ``(h, h)`` on every stage; or one
        tuple of widths per stage.
    liif_activation
        The LIIF MLPs' activation: ``"relu"`` (the reference) or ``"gelu"``.
    pixel_skip
        Add each modality's own (normalised) pixel values at the query point, through one linear
        layer, to that modality's implicit embedding. The encoders see ``patch_size`` px patches
        and LIIF blends four cells, so without it nothing finer than a patch reaches the map,
        while a Random Forest reads the pixel itself. A departure from the reference MISO, off by
        default: validation loss preferred it on the synthetic demo scene (0.70 vs 0.80) but not
        on the CPCRW watershed (0.23 vs 0.12). Checkpoints written before it load with ``False``.
    location_min_wavelength, location_max_wavelength, location_scales
        Space2Vec "gridcell" sinusoids over coordinates taken relative to the centre of the
        training region: smallest and largest wavelength in metres (projected CRS units) and how
        many geometric scales lie between them. The shortest is km-scale as in the reference
        (its 0.0005 minimum radius over Alaska's normalised extent is a ~5.8 km wavelength), so
        the location branch cannot memorise single field points.
    location_layers
        Residual fully connected blocks after the sinusoids.
    fusion_hidden
        Hidden width of the fusion MLP before the task head.
    dropout
        Dropout in the fusion and location MLPs (also what MC-dropout samples).
    temperature, contrastive_weight
        InfoNCE temperature and the weight of each contrastive pair's (two-way, summed) loss in
        the total loss (paper: 0.1 and 0.1).
    crop, batch_size, lr, weight_decay, epochs, warmup_epochs, grad_clip
        Training defaults: crop side in pixels (also the default prediction window), batch size,
        AdamW learning rate and weight decay, epochs, linear warm-up epochs before the cosine
        decay, gradient-norm clip.
    query_fillers, query_random, query_grid
        Query points per crop besides the labelled point: label slots filled with other
        observations inside the crop (else random points), random points and a ``g x g`` grid
        spanning the crop edge to edge (paper: 4, 10 and 6, so 1 + 4 + 10 + 36 = 51 per crop).

    Examples
    --------
    >>> cfg = MisoConfig.named("tiny")
    >>> cfg.width, cfg.crop
    (128, 64)
    >>> MisoConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    name: str = "custom"
    # Swin v2 encoders
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    window_size: int = 4
    patch_size: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    cpb_hidden: int = 64
    # implicit representation and fusion
    width: int = 128
    liif_hidden: int | tuple[tuple[int, ...], ...] | None = None
    liif_activation: str = "relu"
    pixel_skip: bool = False
    fusion_hidden: int = 128
    dropout: float = 0.1
    # location encoder
    location_min_wavelength: float = 5_000.0
    location_max_wavelength: float = 4_000_000.0
    location_scales: int = 16
    location_layers: int = 2
    # losses
    temperature: float = 0.1
    contrastive_weight: float = 0.1
    # training defaults
    crop: int = 64
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    epochs: int = 40
    warmup_epochs: int = 1
    grad_clip: float = 1.0
    query_fillers: int = 4
    query_random: int = 10
    query_grid: int = 6

    def __post_init__(self) -> None:
        problems = []
        if len(self.depths) != len(self.num_heads) or not self.depths:
            problems.append(
                f"depths {self.depths} and num_heads {self.num_heads} must be non-empty and of "
                "equal length (one entry per stage)"
            )
        else:
            for i, heads in enumerate(self.num_heads):
                dim = self.embed_dim * 2**i
                if heads < 1 or dim % heads:
                    problems.append(
                        f"stage {i} width {dim} is not divisible by num_heads[{i}]={heads}"
                    )
        problems.extend(self._liif_problems())
        for field_name in ("embed_dim", "window_size", "patch_size", "width"):
            if getattr(self, field_name) < 1:
                problems.append(f"{field_name} must be >= 1, got {getattr(self, field_name)}")
        if self.window_size < 2:
            problems.append(f"window_size must be >= 2, got {self.window_size}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.location_min_wavelength < self.location_max_wavelength:
            problems.append(
                "location wavelengths must satisfy 0 < min < max, got "
                f"{self.location_min_wavelength} and {self.location_max_wavelength}"
            )
        if min(self.query_fillers, self.query_random, self.query_grid) < 0:
            problems.append(
                "query_fillers, query_random and query_grid must be >= 0, got "
                f"{self.query_fillers}, {self.query_random}, {self.query_grid}"
            )
        if self.location_scales < 1:
            problems.append(f"location_scales must be >= 1, got {self.location_scales}")
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.crop % self.reduction:
            problems.append(
                f"crop {self.crop} must be a multiple of {self.reduction} "
                "(patch_size * 2**(stages-1))"
            )
        if problems:
            raise InputError("MisoConfig is invalid: " + "; ".join(problems))

    @property
    def reduction(self) -> int:
        """Pixels per cell of the coarsest stage; image sides must be multiples of it."""
        return self.patch_size * 2 ** (len(self.depths) - 1)

    def _liif_problems(self) -> list[str]:
        h = self.liif_hidden
        problems = []
        if self.liif_activation not in ("relu", "gelu"):
            problems.append(
                f"liif_activation must be 'relu' or 'gelu', got {self.liif_activation!r}"
            )
        if h is None:
            return problems
        if isinstance(h, bool) or not isinstance(h, (int, tuple)):
            return [*problems, f"liif_hidden must be None, an int or a tuple per stage, got {h!r}"]
        if isinstance(h, int):
            if h < 1:
                problems.append(f"liif_hidden must be >= 1, got {h}")
            return problems
        if len(h) != len(self.depths) or not all(
            isinstance(s, tuple) and all(isinstance(v, int) and v >= 1 for v in s) for s in h
        ):
            problems.append(
                f"liif_hidden {h} needs one tuple of positive widths per stage ({len(self.depths)})"
            )
        return problems

    @property
    def liif_widths(self) -> tuple[tuple[int, ...], ...]:
        """The hidden widths of each stage's LIIF MLP, resolved (see ``liif_hidden``)."""
        h = self.liif_hidden
        if h is None:
            out = []
            for c in self.stage_dims:
                first = max(c, self.width // 4)
                out.append((first, min(self.width, 2 * first)))
            return tuple(out)
        if isinstance(h, int):
            return ((h, h),) * len(self.depths)
        return h

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channel width of each encoder stage's feature map."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @property
    def queries_per_crop(self) -> int:
        """Labelled point + filler slots + random points + grid points (paper: 51)."""
        return 1 + self.query_fillers + self.query_random + self.query_grid**2

    @classmethod
    def named(cls, name: str) -> MisoConfig:
        """The configuration called ``name``: ``"micro"`` (smoke tests), ``"tiny"`` or ``"base"``.

        >>> MisoConfig.named("base").depths
        (2, 2, 18, 2)
        """
        if isinstance(name, MisoConfig):
            return name
        try:
            return NAMED_CONFIGS[name]
        except (KeyError, TypeError):
            raise InputError(
                f"unknown MISO configuration {name!r}; choose one of {sorted(NAMED_CONFIGS)} "
                "or build a MisoConfig(...)"
            ) from None

    def replace(self, **changes: Any) -> MisoConfig:
        """A copy with some fields changed (``cfg.replace(crop=128)``)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(
                f"MisoConfig has no field(s) {sorted(unknown)}; fields are "
                f"{[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["depths"] = list(self.depths)
        d["num_heads"] = list(self.num_heads)
        if isinstance(self.liif_hidden, tuple):
            d["liif_hidden"] = [list(s) for s in self.liif_hidden]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MisoConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict):
            raise InputError(f"a MisoConfig dict is needed, got {type(d).__name__}")
        unknown = set(d) - names
        if unknown:
            raise InputError(
                f"MisoConfig dict has unknown key(s) {sorted(unknown)}; known keys are "
                f"{sorted(names)}"
            )
        kw = dict(d)
        for key in ("depths", "num_heads"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        if isinstance(kw.get("liif_hidden"), list):
            kw["liif_hidden"] = tuple(tuple(s) for s in kw["liif_hidden"])
        return cls(**kw)


NAMED_CONFIGS: dict[str, MisoConfig] = {
    # smoke tests and quick checks: the same code path as the others, a few thousand parameters
    "micro": MisoConfig(
        name="micro",
        embed_dim=8,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 2, 2),
        window_size=2,
        cpb_hidden=8,
        width=16,
        liif_hidden=8,
        fusion_hidden=16,
        location_scales=4,
        crop=32,
    ),
    # the reference's 3-layer LIIF MLPs, at 64 wide: every-pixel decoding stays affordable on a CPU
    "tiny": MisoConfig(name="tiny", liif_hidden=64),
    "base": MisoConfig(
        name="base",
        embed_dim=128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32),
        window_size=8,
        patch_size=4,
        mlp_ratio=4.0,
        drop_path=0.2,
        cpb_hidden=512,
        width=1024,
        fusion_hidden=1024,
        dropout=0.1,
        location_scales=32,
        location_layers=2,
        crop=256,
        batch_size=32,
        lr=5e-5,
        weight_decay=0.01,
        epochs=40,
        warmup_epochs=2,
    ),
}
