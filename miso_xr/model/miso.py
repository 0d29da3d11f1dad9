"""The user-facing, self-describing MISO predictor: :class:`MisoModel`.

It holds a :class:`~miso_xr.model.net.MisoNet` (the network, in ``net.py``) with the
:class:`~miso_xr.spec.ModelSpec` that says what the network reads and predicts, normalises raw cube
values, saves and loads checkpoints, and predicts class probabilities at every pixel of windows
(the predictor protocol that ``infer/`` calls).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..exceptions import CheckpointError, IncompatibleCubeError, InputError, MissingBandError
from ..spec import ModelSpec
from .config import MisoConfig
from .inputs import InputEncoding, Preparation
from .liif import pixel_centres
from .net import MisoNet, count_parameters

__all__ = ["MisoModel"]

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
        prior: np.ndarray | None = None,
        lanes: int | None = None,
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
        prior
            (N, W, W, outputs) float32: the location prior's logits at each window's pixels, cut
            from :meth:`location_prior` of a larger grid. The location branch then does not run
            here: a pixel under 4 windows gets its prior once, not 4 times. ``None``: computed
            per window (and, with ``mc_samples``, sampled with dropout like the rest).
        lanes
            On a CPU, batches run side by side in this many threads of one torch thread each:
            the same values, sooner, as a model's small per-pixel ops do not wait on each other
            across threads. ``None``: torch's thread count on a CPU (so 1 inside a task that
            already shares the cores, :func:`miso_xr.infer.workers.task_threads`), 1 with
            ``mc_samples`` (whose passes then follow the seeded random stream in order) and on
            other devices. ``1``: batches in order, each on all of torch's threads.

        Returns
        -------
        numpy.ndarray
            (N, K, W, W) float32, K = ``len(spec.classes)``; binary tasks give ``[1 - p, p]``.
        """
        n, w = self._check_inputs(inputs, x, y)
        if mc_samples < 0:
            raise InputError(f"mc_samples must be >= 0, got {mc_samples}")
        if lanes is not None and (
            not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes < 1
        ):
            raise InputError(f"lanes={lanes!r}: use a whole number of threads >= 1, or None")
        outputs = self.net.num_outputs
        if prior is not None and (
            not self.net.location_prior or np.shape(prior) != (n, w, w, outputs)
        ):
            raise InputError(
                f"prior has shape {np.shape(prior)}; it needs {(n, w, w, outputs)} (the location "
                "prior's logits at each window's pixels, from location_prior()), and a model with "
                f"a location prior (this one has {'one' if self.net.location_prior else 'none'})"
            )
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
        autocast = _autocast(dev)

        def run(start: int, stop: int) -> None:
            images = {
                m: torch.from_numpy(self.prepare(m, inputs[m][start:stop])).to(dev)
                for m, _ in self.spec.modalities
            }
            b = stop - start
            loc = pri = None
            if prior is not None:
                pri = torch.from_numpy(
                    np.ascontiguousarray(prior[start:stop], np.float32).reshape(b, w * w, -1)
                ).to(dev)
            elif self.net.location_prior:
                gx = np.broadcast_to(x[start:stop, None, :] - self.origin[0], (b, w, w))
                gy = np.broadcast_to(y[start:stop, :, None] - self.origin[1], (b, w, w))
                loc = torch.from_numpy(np.stack([gx, gy], -1).reshape(b, w * w, 2)).to(dev)
            chunk = max(1, max_points // b)
            prob = torch.zeros((b, w * w, k), dtype=torch.float32, device=dev)
            for _ in range(passes):
                with autocast:
                    feats = self.net.encode(images)
                    if dense:
                        logits = self.net.dense_logits(feats, loc, images, prior=pri).float()
                        prob += _probabilities(logits, k)
                        continue
                    for q0 in range(0, w * w, chunk):
                        q1 = min(q0 + chunk, w * w)
                        q = query[q0:q1].expand(b, -1, -1)
                        lq = loc[:, q0:q1] if loc is not None else None
                        pq = pri[:, q0:q1] if pri is not None else None
                        logits = self.net.decode(feats, q, lq, images, prior=pq).logits.float()
                        prob[:, q0:q1] += _probabilities(logits, k)
            prob /= passes
            out[start:stop] = (
                prob.view(b, w, w, k).permute(0, 3, 1, 2).cpu().numpy().astype(np.float32)
            )

        # on a CPU with several torch threads, windows run side by side, one thread each: small
        # per-pixel ops split over threads wait on each other (tiny, 16 windows, 2 cores: 0.72 s
        # as one call on 2 threads, 0.47 s as 2 calls on 1 thread each)
        if lanes is None:
            lanes = torch.get_num_threads() if dev.type == "cpu" and mc_samples == 0 else 1
        lanes = int(lanes) if dev.type == "cpu" else 1
        count = -(-n // batch_size)  # batches, as many for each lane
        step = -(-n // (-(-count // lanes) * lanes))
        batches = [(s0, min(s0 + step, n)) for s0 in range(0, n, step)]
        # eval mode; with MC-dropout the dropout layers on (drop path and norms still in eval)
        with _modes(self.net, dropout=mc_samples > 0):
            if lanes > 1 and len(batches) > 1:
                _side_by_side(run, batches, lanes)
            else:
                for start, stop in batches:
                    run(start, stop)
        return out

    @torch.no_grad()
    def location_prior(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        device: str | torch.device | None = None,
        max_points: int = 65536,
    ) -> np.ndarray | None:
        """The location prior's logits on a grid, for :meth:`predict_windows`'s ``prior``.

        ``x`` (columns) and ``y`` (rows) are 1-D pixel-centre coordinates (CRS ``spec.crs``);
        returns (len(y), len(x), outputs) float32, or ``None`` for a model without a location
        prior. The prior depends on the coordinates only, so a grid covering many overlapping
        windows costs one pass per pixel instead of one per window.
        """
        if not self.net.location_prior:
            return None
        gx = np.asarray(x, np.float64).ravel() - self.origin[0]
        gy = np.asarray(y, np.float64).ravel() - self.origin[1]
        if device is not None:
            self.to(device)
        dev = self.device
        out = np.empty((gy.size, gx.size, self.net.num_outputs), np.float32)
        rows = max(1, max_points // max(gx.size, 1))
        tx = torch.from_numpy(gx).to(dev)
        with _modes(self.net.location, self.net.location_head):
            for r0 in range(0, gy.size, rows):
                ty = torch.from_numpy(gy[r0 : r0 + rows]).to(dev)
                xy = torch.stack(torch.broadcast_tensors(tx[None, :], ty[:, None]), dim=-1)
                with _autocast(dev):
                    logits = self.net.location_logits(xy).float()
                out[r0 : r0 + rows] = logits.cpu().numpy()
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


@contextlib.contextmanager
def _modes(*roots: nn.Module, dropout: bool = False) -> Iterator[None]:
    """Every module under ``roots`` in eval mode (its dropout layers in training mode with
    ``dropout``, for MC-dropout), each module's own mode restored after. Nothing is switched
    when every module already is as wanted (the usual case: a loaded model is in eval mode)."""
    mods = [m for root in roots for m in root.modules()]
    before = [m.training for m in mods]
    want = [dropout and isinstance(m, nn.Dropout) for m in mods]
    if before == want:
        yield
        return
    for m, w in zip(mods, want):
        m.training = w
    try:
        yield
    finally:
        for m, b in zip(mods, before):
            m.training = b


def _side_by_side(run: Any, batches: list[tuple[int, int]], lanes: int) -> None:
    """``run(start, stop)`` for every batch, in ``lanes`` threads of one torch thread each."""
    from concurrent.futures import ThreadPoolExecutor

    def lane(todo: list[tuple[int, int]]) -> None:
        torch.set_num_threads(1)  # this thread's own setting (OpenMP's is per thread)
        with torch.no_grad():  # grad mode is per thread too
            for start, stop in todo:
                run(start, stop)

    todo = [batches[i::lanes] for i in range(lanes)]
    with ThreadPoolExecutor(lanes, thread_name_prefix="miso-window") as pool:
        for done in [pool.submit(lane, t) for t in todo if t]:
            done.result()  # re-raises a lane's error here


def _probabilities(logits: Tensor, k: int) -> Tensor:
    """Class probabilities (..., K) from logits; one logit of a binary task gives [1 - p, p]."""
    if k == 2 and logits.shape[-1] == 1:
        p1 = torch.sigmoid(logits)
        return torch.cat([1 - p1, p1], dim=-1)
    return torch.softmax(logits, dim=-1)


def _autocast(device: torch.device) -> Any:
    """bf16 (else fp16) autocast on CUDA; a no-op context on CPU (CPU bf16 is ~400x slower)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()
