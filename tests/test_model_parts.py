"""LIIF, the Space2Vec location encoder and the losses, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miso_xr.exceptions import InputError
from miso_xr.model import (
    LIIF,
    LocationEncoder,
    MisoConfig,
    MisoOutput,
    MultiScaleLIIF,
    info_nce,
    miso_loss,
    pixel_centres,
    supervised_loss,
)
from miso_xr.model.location import GridCellEncoding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------- LIIF
def _cell_centres(h, w, b=2):
    return pixel_centres(h, w).expand(b, -1, -1)


def test_liif_at_cell_centres_is_a_linear_map_of_the_features():
    torch.manual_seed(0)
    liif = LIIF(5, 7, hidden=(), norm=False)  # decoder = one affine map
    feat = torch.randn(2, 5, 3, 4)
    out = liif(feat, _cell_centres(3, 4), cell=(0.25, 0.25))
    weight = liif.feature.weight[:, :, 0, 0]  # (7, 5)
    const = liif.feature.bias + liif.cell.weight @ torch.tensor([0.25, 0.25])
    want = feat.flatten(2).transpose(1, 2) @ weight.T + const  # row-major cells
    assert torch.allclose(out, want, atol=1e-5)


def _mlp(liif, pre):
    """The reference's 3-layer MLP by hand, from the first layer's pre-activation."""
    (second,) = liif.layers
    return F.relu(F.relu(pre) @ second.weight.T + second.bias)


def test_liif_has_the_reference_capacity():
    liif = LIIF(5, 7, hidden=(16, 32))
    linears = [liif.feature, *liif.layers, liif.out]
    assert len(linears) == 3  # 3 linear layers, as the MISO reference's decoder
    assert [m.out_channels if hasattr(m, "out_channels") else m.out_features for m in linears] == [
        16,
        32,
        7,
    ]
    assert isinstance(liif.norm, torch.nn.LayerNorm)


def test_liif_at_cell_centres_with_mlp_reads_only_that_cell():
    torch.manual_seed(1)
    liif = LIIF(5, 7, hidden=(16, 12), norm=False)
    feat = torch.randn(1, 5, 4, 4)
    out = liif(feat, _cell_centres(4, 4, b=1))
    cells = feat.flatten(2).transpose(1, 2)
    want = liif.out(_mlp(liif, cells @ liif.feature.weight[:, :, 0, 0].T + liif.feature.bias))
    assert torch.allclose(out, want, atol=1e-5)


def test_liif_blends_neighbours_by_area_and_is_continuous():
    torch.manual_seed(2)
    liif = LIIF(3, 4, hidden=(8, 8), norm=False)
    feat = torch.randn(1, 3, 2, 2)
    # midway between the two top cells (centres x = -0.5 and 0.5, y = -0.5)
    out = liif(feat, torch.tensor([[[0.0, -0.5]]]))
    w1 = liif.feature.weight[:, :, 0, 0]

    def hidden(cell, dx):
        pre = feat[0, :, 0, cell] @ w1.T + liif.feature.bias + liif.offset.weight[:, 0] * dx
        return _mlp(liif, pre)

    want = liif.out(0.5 * hidden(0, 0.5) + 0.5 * hidden(1, -0.5))
    assert torch.allclose(out[0, 0], want, atol=1e-5)
    # continuous across a cell border, unlike nearest-cell sampling
    q = torch.tensor([[[-1e-4, 0.2], [1e-4, 0.2]]])
    a, b = liif(feat, q)[0]
    assert (a - b).abs().max() < 1e-3
    assert (a - liif(feat, torch.tensor([[[0.9, 0.2]]]))[0, 0]).abs().max() > 1e-2


def test_liif_cell_size_is_an_input():
    torch.manual_seed(3)
    liif = LIIF(3, 4, hidden=(8, 8))
    feat = torch.randn(1, 3, 2, 2)
    q = torch.tensor([[[0.1, -0.3], [0.2, 0.4]]])
    one = liif(feat, q, cell=(0.25, 0.25))
    # per query: the second query's footprint changes only its own embedding
    per_query = liif(feat, q, cell=torch.tensor([[[0.25, 0.25], [1.0, 0.5]]]))
    assert torch.allclose(per_query[0, 0], one[0, 0], atol=1e-6)
    assert (per_query[0, 1] - one[0, 1]).abs().max() > 1e-3


def test_multiscale_liif_default_cell_is_one_image_pixel():
    torch.manual_seed(4)
    m = MultiScaleLIIF((3, 5), 6, hidden=(8, 8), strides=(4, 8))
    feats = [torch.randn(1, 3, 4, 4), torch.randn(1, 5, 2, 2)]  # a 16 px image
    q = torch.tensor([[[0.1, -0.3]]])
    default = m(feats, q)
    assert torch.allclose(default, m(feats, q, cell=torch.tensor([2 / 16, 2 / 16])), atol=1e-6)
    assert (default - m(feats, q, cell=torch.tensor([4 / 16, 4 / 16]))).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("cells", "pixels", "activation"),
    [
        ((1, 1), (3, 3), "relu"),
        ((3, 2), (9, 6), "gelu"),
        ((2, 5), (64, 160), "relu"),
        ((4, 3), (4, 3), "relu"),
        ((1, 4), (8, 20), "relu"),  # one cell on an axis: only one neighbour exists there
        ((2, 2), (14, 6), "gelu"),  # odd strides: the middle phase sits on the cell centre
    ],
)
def test_liif_dense_equals_the_query_path(cells, pixels, activation):
    torch.manual_seed(5)
    liif = LIIF(5, 7, hidden=(6, 8, 4), activation=activation)  # 8 and 4 wide: packed
    feat = torch.randn(2, 5, *cells)
    (h, w), (hi, wi) = cells, pixels
    q = pixel_centres(hi, wi).expand(2, -1, -1)
    want = liif(feat, q, cell=(w / wi, h / hi))
    got = liif.dense(feat, hi, wi, cell=(w / wi, h / hi), max_points=50)  # several chunks
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5
    with torch.no_grad():  # without gradients narrow layers run packed (block-diagonal)
        packed = liif.dense(feat, hi, wi, cell=(w / wi, h / hi))
    assert (packed - want).abs().max() <= 1e-5


def test_liif_dense_needs_whole_cells():
    with pytest.raises(ValueError, match="whole cells"):
        LIIF(2, 3, hidden=(4, 4)).dense(torch.zeros(1, 2, 3, 3), 10, 9)


@pytest.mark.parametrize("name", ["micro", "tiny", pytest.param("base", marks=pytest.mark.slow)])
def test_dense_decoding_equals_queries_at_every_stage(name):
    """Every stage of each configuration: the dense path matches the query path to 1e-4."""
    cfg = MisoConfig.named(name)
    torch.manual_seed(6)
    strides = [cfg.patch_size * 2**i for i in range(len(cfg.depths))]
    m = MultiScaleLIIF(
        cfg.stage_dims,
        cfg.width,
        hidden=cfg.liif_widths,
        strides=strides,
        activation=cfg.liif_activation,
    ).eval()
    side = cfg.reduction  # the smallest image: one cell on the coarsest stage
    feats = [torch.randn(1, c, side // s, side // s) for c, s in zip(cfg.stage_dims, strides)]
    # query a sample of pixel centres (corners, edges, interior) instead of all, to stay cheap
    rng = np.random.default_rng(0)
    idx = np.unique(np.r_[0, side - 1, side * side - 1, rng.integers(0, side * side, 64)])
    q = pixel_centres(side, side)[idx][None]
    cell = torch.tensor([2 / side, 2 / side])
    with torch.no_grad():
        dense = m.dense(feats)
        for i, (liif, f) in enumerate(zip(m.stages, feats)):
            scale = torch.tensor([f.shape[-1] / 2, f.shape[-2] / 2])
            one = liif.dense(f, side, side, cell=tuple((cell * scale).tolist()))[0, idx]
            assert (one - liif(f, q, cell=cell * scale)[0]).abs().max() <= 1e-4, f"stage {i}"
        assert (dense[0, idx] - m(feats, q)[0]).abs().max() <= 1e-4


# ------------------------------------------------------------------------------------ location
def _alaska_points(n=32, seed=0):
    rng = np.random.default_rng(seed)
    xy = np.stack([rng.uniform(-2.2e6, 1.5e6, n), rng.uniform(4e5, 2.4e6, n)], -1)
    return torch.from_numpy(xy)


def test_gridcell_features_separate_10_m_and_100_km_and_not_1_mm():
    enc = GridCellEncoding(min_wavelength=20.0, max_wavelength=4e6, scales=32)
    p = _alaska_points()
    f = enc(p)
    assert f.shape == (32, 6 * 32) and f.dtype == torch.float32
    d_mm = (enc(p + torch.tensor([1e-3, 0.0], dtype=torch.float64)) - f).norm(dim=-1)
    d_10m = (enc(p + torch.tensor([10.0, 0.0], dtype=torch.float64)) - f).norm(dim=-1)
    d_100km = (enc(p + torch.tensor([0.0, 1e5], dtype=torch.float64)) - f).norm(dim=-1)
    assert d_mm.max() < 0.01  # float64 phases: no float32 noise at 2e6 m
    assert d_10m.min() > 1.0
    assert d_100km.min() > 1.0


def test_location_encoder_distinguishes_10_m_and_100_km():
    torch.manual_seed(0)
    loc = LocationEncoder(64, min_wavelength=20.0, max_wavelength=4e6, scales=32).eval()
    p = _alaska_points()
    e = loc(p)
    near = loc(p + torch.tensor([10.0, 0.0], dtype=torch.float64))
    far = loc(p + torch.tensor([1e5, 0.0], dtype=torch.float64))
    same = loc(p.clone())
    scale = e.norm(dim=-1)
    assert torch.equal(e, same)
    assert ((near - e).norm(dim=-1) / scale).min() > 0.05
    assert ((far - e).norm(dim=-1) / scale).min() > 0.05


# -------------------------------------------------------------------------------------- losses
def test_info_nce_matches_a_hand_computed_case():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # normalised: (1, 0) and (0.7071, 0.7071)
    s = 1 / math.sqrt(2)
    # cosine similarities [[1, s], [0, s]] over temperature 0.1
    l00, l01, l10, l11 = 10.0, 10 * s, 0.0, 10 * s
    a_to_b = (
        (-l00 + math.log(math.exp(l00) + math.exp(l01)))
        + (-l11 + math.log(math.exp(l10) + math.exp(l11)))
    ) / 2
    b_to_a = (
        (-l00 + math.log(math.exp(l00) + math.exp(l10)))
        + (-l11 + math.log(math.exp(l01) + math.exp(l11)))
    ) / 2
    want = a_to_b + b_to_a  # the reference sums the two directions
    assert float(info_nce(a, b, temperature=0.1)) == pytest.approx(want, rel=1e-6)
    # swapping the pairing makes it worse; it is symmetric in its arguments
    assert float(info_nce(a, b.flip(0))) > want
    assert float(info_nce(b, a)) == pytest.approx(want, rel=1e-6)
    with pytest.raises(InputError, match="same shape"):
        info_nce(a, b[:1])


def test_info_nce_takes_negatives_from_other_crops_at_the_same_slot_only():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 8, generator=g)  # 3 crops, 4 query slots
    b = torch.randn(3, 4, 8, generator=g)
    per_slot = [float(info_nce(a[:, q], b[:, q])) for q in range(4)]
    assert float(info_nce(a, b)) == pytest.approx(sum(per_slot) / 4, rel=1e-5)
    # points of the same crop are never negatives: changing another slot changes nothing here
    b2 = b.clone()
    b2[:, 1:] = torch.randn(3, 3, 8, generator=g)
    assert float(info_nce(a[:, :1], b2[:, :1])) == pytest.approx(per_slot[0], rel=1e-6)
    # one crop: no negatives, no loss
    assert float(info_nce(a[:1], b[:1])) == 0.0


def test_supervised_loss_uses_labelled_points_only():
    logits = torch.tensor([[[2.0], [-1.0], [5.0]]])
    labels = torch.tensor([[1, 0, -1]])
    want = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert float(supervised_loss(logits, labels, binary=True)) == pytest.approx(want, rel=1e-6)
    k3 = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 9.0]]])
    want3 = -math.log(math.exp(1.0) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert float(supervised_loss(k3, torch.tensor([[0, -1]]), binary=False)) == pytest.approx(
        want3, rel=1e-6
    )
    none = supervised_loss(logits.requires_grad_(), torch.full((1, 3), -1), binary=True)
    assert float(none.detach()) == 0.0 and none.requires_grad
    with pytest.raises(InputError, match="class indices 0..1"):
        supervised_loss(logits, torch.tensor([[2, 0, -1]]), binary=True)
    with pytest.raises(InputError, match="leading shape"):
        supervised_loss(logits, torch.tensor([[1, 0]]), binary=True)


def test_miso_loss_parts_follow_the_branches_present():
    g = torch.Generator().manual_seed(0)
    emb = {
        k: torch.randn(2, 3, 8, generator=g)
        for k in ("optical", "covariates", "visual", "location")
    }
    logits = torch.randn(2, 3, 1, generator=g)
    labels = torch.tensor([[1, -1, -1], [0, -1, -1]])
    total, parts = miso_loss(MisoOutput(logits, emb), labels, binary=True, contrastive_weight=2.0)
    assert float(parts["satellite_covariate"]) == pytest.approx(
        float(info_nce(emb["optical"], emb["covariates"])), rel=1e-6
    )
    # the *fused* visual embedding pairs with location (not the optical one)
    assert float(parts["visual_location"]) == pytest.approx(
        float(info_nce(emb["visual"], emb["location"])), rel=1e-6
    )
    assert float(total) == pytest.approx(
        float(parts["supervised"] + 2 * (parts["satellite_covariate"] + parts["visual_location"])),
        rel=1e-6,
    )
    _, only = miso_loss(MisoOutput(logits, {"covariates": emb["covariates"]}), labels, binary=True)
    assert set(only) == {"supervised"}
    # a covariates-only model with location still has a contrastive term
    cov_loc = {
        "covariates": emb["covariates"],
        "visual": emb["visual"],
        "location": emb["location"],
    }
    _, cl = miso_loss(MisoOutput(logits, cov_loc), labels, binary=True)
    assert set(cl) == {"supervised", "visual_location"}
    _, sar = miso_loss(
        MisoOutput(logits, {"sar": emb["optical"], "covariates": emb["covariates"]}),
        labels,
        binary=True,
    )
    assert set(sar) == {"supervised", "satellite_covariate"}


def test_packed_narrow_layers_follow_their_weights():
    from miso_xr.model.liif import narrow_linear, unpacked

    torch.manual_seed(9)
    lin = torch.nn.Linear(6, 4)
    x = torch.randn(3, 8, 6)
    with torch.no_grad():
        assert torch.allclose(narrow_linear(lin, x), lin(x), atol=1e-6)
        assert "_packed" in lin.__dict__  # the block-diagonal weight, kept
        lin.weight.mul_(-2.0)
        lin.bias.add_(1.0)
        assert torch.allclose(narrow_linear(lin, x), lin(x), atol=1e-6)  # rebuilt
        with unpacked():
            assert torch.equal(narrow_linear(lin, x), lin(x))
        assert torch.allclose(narrow_linear(lin, x[:, :7]), lin(x[:, :7]), atol=1e-6)  # 21 rows
