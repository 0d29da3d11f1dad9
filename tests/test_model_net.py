"""MisoNet shapes for each modality configuration, determinism, bad inputs, and the config."""

from __future__ import annotations

import pytest
import torch

from miso_xr.exceptions import InputError, MissingBandError
from miso_xr.model import MisoConfig, MisoNet, count_parameters, miso_loss

# a very small configuration so every test runs in well under a second
SMALL = MisoConfig.named("micro")
BANDS = {"optical": 9, "covariates": 6, "sar": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(bands, b=2, q=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = {m: torch.randn(b, c, size, size, generator=g) for m, c in bands.items()}
    query = torch.rand(b, q, 2, generator=g) * 2 - 1
    loc = 2e6 * torch.rand(b, q, 2, generator=g, dtype=torch.float64)
    return images, query, loc


@pytest.mark.parametrize(
    "modalities",
    [("covariates",), ("optical", "covariates"), ("optical", "covariates", "sar"), ("optical",)],
)
@pytest.mark.parametrize("location", [True, False])
@pytest.mark.parametrize("num_outputs", [1, 7])
def test_output_shapes_per_modality_configuration(modalities, location, num_outputs):
    bands = {m: BANDS[m] for m in modalities}
    net = MisoNet(SMALL, bands, num_outputs, location=location)
    images, query, loc = _batch(bands, b=3, q=4)
    out = net(images, query, loc if location else None)
    assert out.logits.shape == (3, 4, num_outputs)
    expected = set(modalities) | {"visual"} | ({"location"} if location else set())
    assert set(out.embeddings) == expected
    for e in out.embeddings.values():
        assert e.shape == (3, 4, SMALL.width)
    # one encoder per image modality, nothing for absent ones
    assert set(net.encoders) == set(modalities)
    assert hasattr(net, "location") == location


def test_location_never_enters_the_prediction_unless_the_prior_is_asked_for():
    bands = {"covariates": 6}
    torch.manual_seed(0)
    net = MisoNet(SMALL, bands, 1, location=True).eval()
    images, query, loc = _batch(bands, b=2, q=4)
    a = net(images, query, loc).logits
    b = net(images, query, loc + 1e5).logits  # the same pixels, 100 km away
    c = net(images, query, None).logits
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not hasattr(net, "location_head")
    torch.manual_seed(0)
    prior = MisoNet(SMALL, bands, 1, location=True, location_prior=True).eval()
    p = prior(images, query, loc).logits
    assert not torch.allclose(p, prior(images, query, loc + 1e5).logits)
    with pytest.raises(InputError, match="location prior"):
        prior(images, query, None)
    with pytest.raises(InputError, match="needs the location encoder"):
        MisoNet(SMALL, bands, 1, location=False, location_prior=True)


def test_loss_runs_on_every_configuration_and_has_gradients():
    bands = {"optical": 9, "covariates": 6}
    net = MisoNet(SMALL, bands, 1).train()
    images, query, loc = _batch(bands, b=2, q=6)
    labels = torch.tensor([[1, -1, -1, -1, -1, -1], [0, -1, -1, -1, -1, -1]])
    total, parts = miso_loss(net(images, query, loc), labels, binary=True, contrastive_weight=0.5)
    assert set(parts) == {"supervised", "satellite_covariate", "visual_location"}
    expected = parts["supervised"] + 0.5 * (parts["satellite_covariate"] + parts["visual_location"])
    assert torch.allclose(total, expected)
    total.backward()
    assert net.encoders["optical"].features[0][0].weight.grad.abs().sum() > 0
    assert net.location.input.weight.grad.abs().sum() > 0


def _run(seed):
    torch.manual_seed(seed)
    bands = {"optical": 9, "covariates": 6}
    net = MisoNet(SMALL, bands, 3).train()  # train mode: dropout and drop path are random
    images, query, loc = _batch(bands, b=2, q=6, seed=1)
    torch.manual_seed(123)
    out = net(images, query, loc)
    labels = torch.tensor([[0, 1, 2, -1, -1, -1], [2, -1, -1, -1, -1, 1]])
    total, _ = miso_loss(out, labels, binary=False)
    total.backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def test_cpu_determinism_same_seed_same_outputs_and_gradients():
    logits_a, grads_a = _run(0)
    logits_b, grads_b = _run(0)
    assert torch.equal(logits_a, logits_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 50
    for k in grads_a:
        assert torch.equal(grads_a[k], grads_b[k]), k
    logits_c, _ = _run(1)
    assert not torch.equal(logits_a, logits_c)  # the seed matters


def test_bad_inputs_raise_one_clear_error():
    net = MisoNet(SMALL, {"optical": 9, "covariates": 6}, 1)
    images, query, loc = _batch({"optical": 9, "covariates": 6})
    with pytest.raises(MissingBandError, match="covariates"):
        net({"optical": images["optical"]}, query, loc)
    with pytest.raises(InputError, match=r"\(batch, 9, height, width\)"):
        net({**images, "optical": images["optical"][:, :4]}, query, loc)
    with pytest.raises(InputError, match="multiples of 32"):
        net({m: v[..., :24, :24] for m, v in images.items()}, query, loc)
    with pytest.raises(InputError, match="query's shape"):
        net(images, query, loc[:, :2])
    with pytest.raises(InputError, match=r"\(batch, points, 2\)"):
        net(images, query[0], loc)
    with pytest.raises(InputError, match="at least one image modality"):
        MisoNet(SMALL, {}, 1)
    with pytest.raises(InputError, match="identifier"):
        MisoNet(SMALL, {"location": 3}, 1)
    with pytest.raises(InputError, match="num_outputs"):
        MisoNet(SMALL, {"optical": 9}, 0)


def test_config_named_round_trip_and_validation():
    base = MisoConfig.named("base")
    assert (base.embed_dim, base.depths, base.num_heads, base.window_size, base.width) == (
        128,
        (2, 2, 18, 2),
        (4, 8, 16, 32),
        8,
        1024,
    )
    assert (base.crop, base.lr, base.batch_size, base.epochs, base.temperature) == (
        256,
        5e-5,
        32,
        40,
        0.1,
    )
    # the paper's 51 query points: 1 labelled + 4 fillers + 10 random + a 6x6 grid
    assert base.queries_per_crop == 1 + 4 + 10 + 6 * 6 == 51
    # location: km-scale shortest wavelength; contrastive weight 0.1 per pair
    assert base.location_min_wavelength >= 1000 and base.contrastive_weight == 0.1
    for name in ("tiny", "base"):
        cfg = MisoConfig.named(name)
        assert MisoConfig.from_dict(cfg.to_dict()) == cfg
        import json

        assert MisoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError, match="unknown MISO configuration 'huge'"):
        MisoConfig.named("huge")
    with pytest.raises(InputError, match="not divisible by num_heads"):
        MisoConfig(embed_dim=30, num_heads=(4, 8, 16, 32))
    with pytest.raises(InputError, match="unknown key"):
        MisoConfig.from_dict({**SMALL.to_dict(), "colour": "red"})
    with pytest.raises(InputError, match="crop 40 must be a multiple of 32"):
        SMALL.replace(crop=40)
    with pytest.raises(InputError, match="no field"):
        SMALL.replace(crops=64)


def test_tiny_is_small_and_base_is_swin_v2_b_sized():
    with torch.device("meta"):  # shapes only: no random initial values drawn
        tiny = MisoNet("tiny", {"optical": 9, "covariates": 6}, 1)
        base = MisoNet("base", {"optical": 9}, 1)
    assert 1e6 < count_parameters(tiny) < 1e7
    enc = count_parameters(base.encoders["optical"])
    # torchvision swin_v2_b has 87,930,848 parameters; less its norm (2,048) and head
    # (1,025,000); our patch conv reads 9 bands instead of 3 (+ 6 * 128 * 16 = 12,288)
    assert enc == 87_930_848 - 2_048 - 1_025_000 + 12_288


def test_pixel_skip_brings_the_pixel_itself_to_the_prediction():
    """One pixel changed moves the prediction at that pixel, and not two pixels away."""
    import dataclasses

    bands = {"covariates": 6}
    torch.manual_seed(0)
    net = MisoNet(dataclasses.replace(SMALL, pixel_skip=True), bands, 1, location=False).eval()
    assert hasattr(net, "pixel")
    images, _, _ = _batch(bands, b=1, q=1)
    size = images["covariates"].shape[-1]
    centre = lambda r, c: torch.tensor([[[(2 * c + 1) / size - 1, (2 * r + 1) / size - 1]]])  # noqa: E731
    with torch.no_grad():
        # only the pixel branch: what the encoders see of one pixel is blended away over patches
        for p in net.encoders.parameters():
            p.zero_()
        changed = {"covariates": images["covariates"].clone()}
        changed["covariates"][0, :, 10, 10] += 5.0
        here = net(changed, centre(10, 10)).logits - net(images, centre(10, 10)).logits
        there = net(changed, centre(10, 12)).logits - net(images, centre(10, 12)).logits
        assert here.abs().item() > 1e-3
        assert there.abs().item() == 0.0
        # the dense path reads the same pixel values as the query path
        dense = net.decode(net.encode(changed), None, None, changed).logits
        assert torch.allclose(dense[0, 10 * size + 10], net(changed, centre(10, 10)).logits[0, 0])
    with pytest.raises(InputError, match="pixel_skip"):
        net.decode(net.encode(images), centre(1, 1), None)
    # the paper's net has no pixel branch; checkpoints written before the skip load without it
    plain = MisoNet(dataclasses.replace(SMALL, pixel_skip=False), bands, 1, location=False)
    assert not hasattr(plain, "pixel")
    old = {k: v for k, v in SMALL.to_dict().items() if k != "pixel_skip"}
    assert MisoConfig.from_dict(old).pixel_skip is False


@pytest.mark.parametrize("name", ["micro", "tiny"])
@pytest.mark.parametrize(
    ("pixel_skip", "location", "prior"),
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_dense_logits_equal_the_decoded_and_queried_logits(name, pixel_skip, location, prior):
    """The inference path (per-pixel layers in blocks, no embeddings kept) gives decode's logits
    at every pixel, and the query path's at the pixel centres, whatever the block size."""
    import dataclasses

    from miso_xr.model import pixel_centres

    cfg = dataclasses.replace(MisoConfig.named(name), pixel_skip=pixel_skip)
    bands = {"optical": 9, "covariates": 6}
    torch.manual_seed(1)
    net = MisoNet(cfg, bands, 3, location=location, location_prior=location).eval()
    size = cfg.reduction
    images, _, _ = _batch(bands, b=2, size=size, seed=3)
    q = size * size
    query = pixel_centres(size, size).expand(2, -1, -1)
    loc = 1e5 * torch.randn(2, q, 2, dtype=torch.float64) if location else None
    with torch.no_grad():
        feats = net.encode(images)
        want = net.decode(feats, None, loc, images).logits
        queried = net.decode(feats, query, loc, images).logits
        pri = net.location_logits(loc) if prior else None
        for block in (None, 77, 2 * q + 5):  # blocks across the windows' boundary, or all
            got = net.dense_logits(feats, None if prior else loc, images, pri, max_points=block)
            assert got.shape == (2, q, 3)
            assert (got - want).abs().max() <= 1e-5, block
            assert (got - queried).abs().max() <= 1e-4, block
        # each input counts: a wrong location, or no images with the pixel skip, is an error
        if location:
            moved = net.dense_logits(feats, loc + 3e4, images)
            assert (moved - want).abs().max() > 1e-3
            with pytest.raises(InputError, match="location"):
                net.dense_logits(feats, loc[:, :5], images)
        if pixel_skip:
            with pytest.raises(InputError, match="pixel_skip"):
                net.dense_logits(feats, loc, None)


def test_dense_logits_stay_float32_under_autocast():
    """Under bf16 autocast (CUDA's inference) the logits are kept in float32, as decode's are."""
    bands = {"covariates": 6}
    torch.manual_seed(2)
    net = MisoNet(SMALL, bands, 3, location=True, location_prior=True).eval()
    size = SMALL.reduction
    images, _, _ = _batch(bands, b=1, size=size, seed=4)
    loc = 1e5 * torch.randn(1, size * size, 2, dtype=torch.float64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = net.encode(images)
        prior = net.location_logits(loc)
        got = net.dense_logits(feats, None, images, prior)
        want = net.decode(feats, None, None, images, prior=prior).logits
    assert got.dtype == torch.float32
    assert (got - want.float()).abs().max() <= 1e-6
