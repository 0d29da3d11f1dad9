"""The MISO network and the user-facing, self-describing :class:`MisoModel`.

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
losses are the ``e_m``, ``visual`` and ``e_loc``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..exceptions import CheckpointError, IncompatibleCubeError, InputError, MissingBandError
from ..spec import ModelSpec
from .config import MisoConfig
from .inputs import InputEncoding, Preparation
from .liif import MultiScaleLIIF, pixel_centres
from .location import LocationEncoder
from .swin import SwinV2Encoder

__all__ = ["MisoModel", "MisoNet", "MisoOutput", "count_parameters", "flops_per_crop"]


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
    ) -> MisoOutput:
        """Embeddings and logits at ``query`` (B, Q, 2) from encoded ``features``.

        ``query=None`` decodes every pixel of the encoded images, row-major (Q = H * W), through
        LIIF's dense path: the same values as the pixel centres' queries, for much less work.
        ``location`` (B, Q, 2), metres from the region centre, is needed with the location prior;
        otherwise it only adds the ``"location"`` embedding (training) and may be None.
        ``images`` are the encoded images themselves, needed by a net with the pixel skip.
        """
        skip = self.config.pixel_skip
        if skip and images is None:
            raise InputError(
                "this model adds the pixel values at each query (pixel_skip): pass the images "
                "that were encoded as decode(..., images=images)"
            )
        if query is None:
            f = next(iter(features.values()))[0]
            hw = f.shape[-2] * f.shape[-1] * self.config.patch_size**2
            qshape: tuple[int, ...] = (f.shape[0], hw, 2)
        elif query.ndim != 3 or query.shape[-1] != 2:
            raise InputError(
                f"query has shape {tuple(query.shape)}; it needs (batch, points, 2) as (x, y) in "
                "[-1, 1]"
            )
        else:
            qshape = tuple(query.shape)
        emb: dict[str, Tensor] = {}
        fused = None
        # sorted: the sum's rounding must not depend on the order a spec lists modalities in
        for m in sorted(self.bands):
            imp = self.implicit[m]
            z = imp.dense(features[m]) if query is None else imp(features[m], query)
            if skip:
                z = z + self.pixel[m](_pixels_at(images[m], query))
            e = self.project[m](z)
            emb[m] = e
            fused = e if fused is None else fused + e
        visual = self.visual(fused)
        emb["visual"] = visual
        logits = self.head(visual)
        if self.has_location and (location is not None or self.location_prior):
            if location is None or tuple(location.shape) != qshape:
                raise InputError(
                    "this model has a location prior; location must be projected x/y in metres "
                    f"with the query's shape {qshape}, got "
                    f"{None if location is None else tuple(location.shape)}"
                )
            e_loc = self.location(location)
            emb["location"] = e_loc
            if self.location_prior:
                logits = logits + self.location_head(e_loc)
        return MisoOutput(logits=logits, embeddings=emb)

    def forward(
        self, images: Mapping[str, Tensor], query: Tensor, location: Tensor | None = None
    ) -> MisoOutput:
        """``images[m]`` (B, C_m, H, W), ``query`` (B, Q, 2) grid_sample convention (x, y in
        [-1, 1], edges at +-1), ``location`` (B, Q, 2) projected x/y in metres (float64 keeps
        full precision; ignored by a model without the location branch)."""
        return self.decode(self.encode(images), query, location, images)


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "zeros_",
    "ones_",
    "constant_",
)


def _pixels_at(image: Tensor, query: Tensor | None) -> Tensor:
    """(B, Q, C) values of the pixels that hold each query point; every pixel row-major if None."""
    if query is None:
        return image.flatten(2).transpose(1, 2)
    # nearest pixel in grid_sample's convention (edges at +-1), exact at pixel centres
    picked = nn.functional.grid_sample(
        image, query.to(image.dtype).unsqueeze(1), mode="nearest", align_corners=False
    )
    return picked.squeeze(2).transpose(1, 2)


class _no_init:  # noqa: N801 - used like a function: `with _no_init():`
    """Skip random initialisation while building a network whose weights are loaded next.

    Initialising Swin-v2-B's 187 M parameters costs tens of seconds on a CPU only to be
    overwritten by the checkpoint; the init functions become no-ops for the duration. Callers
    hold the construction (a worker's model cache loads under a lock).
    """

    def __enter__(self) -> None:
        self._saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)

    def __exit__(self, *exc: object) -> None:
        for name, fn in self._saved.items():
            setattr(nn.init, name, fn)


def _region_origin(spec: ModelSpec) -> tuple[float, float]:
    """The training region's centre (``spec.extra["location_origin"]``), else (0, 0).

    Location features are taken relative to it, so moving a whole scene moves nothing.
    """
    text = dict(spec.extra).get("location_origin")
    if not text:
        return (0.0, 0.0)
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as err:
        raise InputError(f"spec location_origin {text!r} is not 'x,y'") from err
    return (x, y)


def _num_outputs(classes: tuple[str, ...]) -> int:
    if len(classes) < 2:
        raise InputError(f"a model needs at least 2 classes, got {list(classes)}")
    return 1 if len(classes) == 2 else len(classes)


class MisoModel:
    """A trained (or fresh) MISO network that describes itself: the predictor protocol.

    Parameters
    ----------
    net
        The :class:`MisoNet`.
    spec
        :class:`~miso_xr.spec.ModelSpec` with ``kind="miso"``: classes, modalities and bands,
        normalisation (per input feature, required for every modality), window, resolution,
        CRS, ``location`` (True: the prediction uses the location prior, a departure from the
        paper), input encoding and region centre in ``extra``.
    config
        The :class:`MisoConfig` the net was built with.
    training
        JSON-able summary of the training data and run (stored in the checkpoint).

    Examples
    --------
    >>> from miso_xr.spec import ModelSpec, Normalisation
    >>> spec = ModelSpec(kind="miso", task="permafrost", classes=("absent", "present"),
    ...                  modalities=(("covariates", ("elevation", "slope")),), window=64,
    ...                  stride=32, resolution=10.0, crs="EPSG:3338",
    ...                  normalisation=(("covariates", Normalisation((0.0, 0.0), (1.0, 1.0))),))
    >>> model = MisoModel.create(spec, "tiny", seed=0)
    >>> x = 1000.0 + 10 * np.arange(64); y = 2000.0 - 10 * np.arange(64)
    >>> p = model.predict_windows({"covariates": np.zeros((1, 2, 64, 64), "float32")},
    ...                           x[None], y[None])
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1))
    ((1, 2, 64, 64), True)
    """

    kind = "miso"

    def __init__(
        self,
        net: MisoNet,
        spec: ModelSpec,
        config: MisoConfig,
        training: dict[str, Any] | None = None,
    ) -> None:
        if spec.kind != "miso":
            raise InputError(f"spec.kind is {spec.kind!r}; a MisoModel needs kind='miso'")
        self._prepare = Preparation(spec)  # checks normalisation: one statistic per feature
        self.encoding = self._prepare.encoding
        want = self._prepare.widths()
        if want != net.bands:
            raise InputError(
                f"spec modalities {want} (input features per modality) differ from the network's "
                f"{net.bands}"
            )
        if _num_outputs(spec.classes) != net.num_outputs:
            raise InputError(
                f"spec has {len(spec.classes)} classes; the network has {net.num_outputs} outputs "
                "(binary tasks need 1, K classes need K)"
            )
        if spec.location != net.location_prior:
            raise InputError(
                f"spec.location={spec.location} but the network "
                f"{'has' if net.location_prior else 'has no'} location prior"
            )
        self.net = net.eval()
        self.spec = spec
        self.config = config
        self.training = dict(training or {})
        self.sha256: str | None = None
        self.source: str | None = None
        self.device = torch.device("cpu")
        self.origin = _region_origin(spec)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        spec: ModelSpec,
        config: MisoConfig | str = "tiny",
        *,
        seed: int | None = None,
        training: dict[str, Any] | None = None,
    ) -> MisoModel:
        """A freshly initialised model for ``spec`` (``seed`` makes the weights reproducible)."""
        config = MisoConfig.named(config) if isinstance(config, str) else config
        bands = InputEncoding.from_extra(spec.extra).widths(spec.modalities)
        k = _num_outputs(spec.classes)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            net = MisoNet(config, bands, k, location=True, location_prior=spec.location)
        return cls(net, spec, config, training)

    def prepare(self, modality: str, values: np.ndarray) -> np.ndarray:
        """Raw cube values ``(N, C, H, W)`` in spec band order -> normalised network input
        (circular/categorical bands expanded, NaN -> 0, the feature mean)."""
        return self._prepare(modality, values)

    # -- checkpoint -----------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray]:
        """The network's state dict as float32 numpy arrays (what a checkpoint stores)."""
        return {
            k: v.detach().to("cpu", torch.float32).numpy().copy()
            for k, v in self.net.state_dict().items()
        }

    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config`` metadata of a checkpoint: the MisoConfig plus the network's shape."""
        return {
            **self.config.to_dict(),
            "net": {
                "bands": dict(self.net.bands),
                "num_outputs": self.net.num_outputs,
                "location": self.net.has_location,
                "location_prior": self.net.location_prior,
            },
        }

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write a ``.safetensors`` checkpoint atomically; returns (and records) its sha256."""
        from ..checkpoint import write_checkpoint

        digest = write_checkpoint(
            path,
            self.state_tensors(),
            spec=self.spec,
            config=self.checkpoint_config(),
            training=self.training,
        )
        self.sha256 = digest
        self.source = str(os.path.abspath(path))
        return digest

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, np.ndarray], info: Any) -> MisoModel:
        """Rebuild from :func:`miso_xr.checkpoint.read_checkpoint` output (no code runs)."""
        cfg = dict(info.config)
        net_info = cfg.pop("net", None)
        try:
            config = MisoConfig.from_dict(cfg)
        except InputError as err:
            raise CheckpointError(f"checkpoint config is not a MisoConfig: {err}") from err
        spec = info.spec
        try:
            bands = InputEncoding.from_extra(spec.extra).widths(spec.modalities)
        except InputError as err:
            raise CheckpointError(f"checkpoint spec is inconsistent: {err}") from err
        net_info = dict(net_info or {})
        if dict(net_info.get("bands", bands)) != bands:
            raise CheckpointError(
                f"checkpoint network bands {net_info.get('bands')} differ from its spec's {bands}"
            )
        # checkpoints before the location prior became optional had it whenever they had location
        has_location = bool(net_info.get("location", spec.location))
        prior = bool(net_info.get("location_prior", spec.location))
        with _no_init():  # every parameter is overwritten below
            net = MisoNet(config, bands, _num_outputs(spec.classes), has_location, prior)
        want = net.state_dict()
        missing = sorted(set(want) - set(tensors))
        unexpected = sorted(set(tensors) - set(want))
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint tensors do not match its MISO config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        state = {}
        for k, v in want.items():
            arr = tensors[k]
            if tuple(arr.shape) != tuple(v.shape):
                raise CheckpointError(
                    f"checkpoint tensor {k!r} has shape {tuple(arr.shape)}; the config needs "
                    f"{tuple(v.shape)}"
                )
            state[k] = torch.from_numpy(np.ascontiguousarray(arr)).to(v.dtype)
        net.load_state_dict(state)
        return cls(net, spec, config, dict(info.training))

    # -- predictor protocol ---------------------------------------------------------------------
    def to(self, device: str | torch.device) -> MisoModel:
        """Move the network to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``); returns self."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def eval(self) -> MisoModel:
        self.net.eval()
        return self

    def train(self, mode: bool = True) -> MisoModel:
        self.net.train(mode)
        return self

    def num_parameters(self) -> int:
        return count_parameters(self.net)

    def _check_inputs(
        self, inputs: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> tuple[int, int]:
        n = w = None
        for m, bands in self.spec.modalities:
            if m not in inputs:
                raise MissingBandError(
                    f"inputs lack modality {m!r}; the model needs {m!r} with bands "
                    f"{' '.join(bands)}"
                )
            a = inputs[m]
            if a.ndim != 4 or a.shape[1] != len(bands) or a.shape[2] != a.shape[3]:
                raise IncompatibleCubeError(
                    f"inputs[{m!r}] has shape {tuple(a.shape)}; it needs (windows, {len(bands)}, "
                    f"W, W) with bands {' '.join(bands)}"
                )
            if n is None:
                n, w = a.shape[0], a.shape[2]
            elif (a.shape[0], a.shape[2]) != (n, w):
                raise IncompatibleCubeError(
                    f"inputs[{m!r}] has {a.shape[0]} windows of {a.shape[2]} px; other modalities "
                    f"have {n} of {w} px"
                )
        assert n is not None and w is not None
        if np.shape(x) != (n, w) or np.shape(y) != (n, w):
            raise InputError(
                f"x and y have shapes {np.shape(x)} and {np.shape(y)}; they need ({n}, {w}): the "
                "pixel-centre coordinates of each window's columns and rows"
            )
        r = self.config.reduction
        if w % r:
            raise InputError(
                f"window of {w} px is not a multiple of {r}; use a window such as "
                f"{max(r, round(w / r) * r)} (spec.window={self.spec.window})"
            )
        return n, w

    @torch.no_grad()
    def predict_windows(
        self,
        inputs: Mapping[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        *,
        device: str | torch.device | None = None,
        mc_samples: int = 0,
        batch_size: int = 8,
        max_points: int = 65536,
        dense: bool = True,
    ) -> np.ndarray:
        """Class probabilities at every pixel of each window.

        Parameters
        ----------
        inputs
            Modality -> raw cube values (N, C, W, W) float32 in spec band order; NaN allowed
            (filled with 0 after normalising, i.e. the band mean; infer/ masks NaN pixels after).
        x, y
            (N, W) pixel-centre coordinates of each window's columns and rows (CRS ``spec.crs``).
        device
            Where to run (default: where the model is). CUDA runs under bf16 (or fp16) autocast;
            CPU stays fp32.
        mc_samples
            ``0``: one deterministic pass. ``> 0``: mean of that many passes with dropout on
            (MC-dropout), for uncertainty.
        batch_size
            Windows encoded together.
        max_points
            Query points decoded at once (windows x pixels) by the query path, bounding memory.
        dense
            Decode every pixel through LIIF's dense path (the default: the same values, much less
            work); ``False`` queries the pixel centres as points (the path training uses).

        Returns
        -------
        numpy.ndarray
            (N, K, W, W) float32, K = ``len(spec.classes)``; binary tasks give ``[1 - p, p]``.
        """
        n, w = self._check_inputs(inputs, x, y)
        if mc_samples < 0:
            raise InputError(f"mc_samples must be >= 0, got {mc_samples}")
        if device is not None:
            self.to(device)
        dev = self.device
        k = len(self.spec.classes)
        out = np.empty((n, k, w, w), np.float32)
        if n == 0:
            return out
        query = pixel_centres(w, w, device=dev)  # (W*W, 2), row-major
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        passes = max(mc_samples, 1)
        was_training = self.net.training
        # switching modes walks every module (milliseconds a call): only when it changes anything
        switched = mc_samples > 0 or any(mod.training for mod in self.net.modules())
        if switched:
            self.net.eval()
        if mc_samples > 0:  # dropout on, everything else (drop path, norms) in eval mode
            for mod in self.net.modules():
                if isinstance(mod, nn.Dropout):
                    mod.train()
        autocast = _autocast(dev)
        try:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                images = {
                    m: torch.from_numpy(self.prepare(m, inputs[m][start:stop])).to(dev)
                    for m, _ in self.spec.modalities
                }
                b = stop - start
                loc = None
                if self.net.location_prior:
                    gx = np.broadcast_to(x[start:stop, None, :] - self.origin[0], (b, w, w))
                    gy = np.broadcast_to(y[start:stop, :, None] - self.origin[1], (b, w, w))
                    loc = torch.from_numpy(np.stack([gx, gy], -1).reshape(b, w * w, 2)).to(dev)
                chunk = max(1, max_points // b)
                prob = torch.zeros((b, w * w, k), dtype=torch.float32, device=dev)
                for _ in range(passes):
                    with autocast:
                        feats = self.net.encode(images)
                        if dense:
                            logits = self.net.decode(feats, None, loc, images).logits.float()
                            prob += _probabilities(logits, k)
                            continue
                        for q0 in range(0, w * w, chunk):
                            q1 = min(q0 + chunk, w * w)
                            q = query[q0:q1].expand(b, -1, -1)
                            lq = loc[:, q0:q1] if loc is not None else None
                            logits = self.net.decode(feats, q, lq, images).logits.float()
                            prob[:, q0:q1] += _probabilities(logits, k)
                prob /= passes
                out[start:stop] = (
                    prob.view(b, w, w, k).permute(0, 3, 1, 2).cpu().numpy().astype(np.float32)
                )
        finally:
            if switched:
                self.net.train(was_training)
        return out

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}[{len(b)}]" for m, b in self.spec.modalities)
        return (
            f"MisoModel(config={self.config.name!r}, task={self.spec.task!r}, "
            f"classes={list(self.spec.classes)}, modalities=({mods}), "
            f"location={self.spec.location}, window={self.spec.window}, "
            f"params={self.num_parameters():,}, device={str(self.device)!r}, "
            f"sha256={self.sha256[:12] + '...' if self.sha256 else None})"
        )


def _probabilities(logits: Tensor, k: int) -> Tensor:
    """Class probabilities (..., K) from logits; one logit of a binary task gives [1 - p, p]."""
    if k == 2 and logits.shape[-1] == 1:
        p1 = torch.sigmoid(logits)
        return torch.cat([1 - p1, p1], dim=-1)
    return torch.softmax(logits, dim=-1)


def _autocast(device: torch.device) -> Any:
    """bf16 (else fp16) autocast on CUDA; a no-op context on CPU (CPU bf16 is ~400x slower)."""
    import contextlib

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


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
