"""Swin v2 encoder: torchvision swin_v2_b key/shape layout, Satlas-style loading, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import miso_xr.model
from miso_xr.exceptions import CheckpointError
from miso_xr.model import MisoConfig, SwinV2Encoder, load_swin_v2_state_dict

LAYOUT = json.loads((Path(miso_xr.model.__file__).parent / "swin_v2_b_layout.json").read_text())
PREFIX = "backbone.backbone."


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _base_encoder(in_channels):
    cfg = MisoConfig.named("base")
    # built on the meta device and given uninitialised storage: drawing 88 M random initial
    # values takes seconds and these tests only load and compare tensors
    with torch.device("meta"):
        enc = SwinV2Encoder(
            in_channels,
            embed_dim=cfg.embed_dim,
            depths=cfg.depths,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            cpb_hidden=cfg.cpb_hidden,
        )
    return enc.to_empty(device="cpu")


def _satlas_state_dict(seed=0):
    """A random state dict with torchvision swin_v2_b's exact keys and shapes, wrapped as
    SatlasPretrain wraps it, plus keys of Satlas' FPN and heads that are not the backbone."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in LAYOUT["parameters"].items():
        sd[PREFIX + key] = torch.randn(*shape, generator=g) * 0.02
    for key, shape in LAYOUT["buffers"].items():
        sd[PREFIX + key] = torch.zeros(*shape)
    sd["backbone.fpn.fpn.inner_blocks.0.0.weight"] = torch.zeros(128, 128, 1, 1)
    sd["heads.0.layers.0.0.weight"] = torch.zeros(4, 128, 3, 3)
    return sd


@pytest.fixture(scope="module")
def satlas():
    return _satlas_state_dict()


def test_layout_manifest_is_torchvision_swin_v2_b():
    params = LAYOUT["parameters"]
    # torchvision's Swin_V2_B_Weights.meta["num_params"]
    assert sum(math.prod(s) for s in params.values()) == 87_930_848
    assert params["features.0.0.weight"] == [128, 3, 4, 4]
    assert params["features.5.17.attn.qkv.weight"] == [3 * 512, 512]
    assert params["features.6.reduction.weight"] == [1024, 2048]


def test_base_encoder_has_exactly_the_torchvision_backbone_keys_and_shapes():
    enc = _base_encoder(3)
    ours = {k: list(v.shape) for k, v in enc.state_dict().items()}
    theirs = {k: v for k, v in LAYOUT["parameters"].items() if not k.startswith(("head.", "norm."))}
    assert ours == theirs
    # the position buffers exist under torchvision's names with its shapes (recomputed, not saved)
    buffers = dict(enc.named_buffers())
    for key, shape in LAYOUT["buffers"].items():
        assert list(buffers[key].shape) == shape


def test_load_satlas_prefixed_state_dict_into_base_encoder(satlas):
    enc = _base_encoder(3)
    report = load_swin_v2_state_dict(enc, satlas)
    assert report.prefix == PREFIX
    assert len(report.loaded) == len(LAYOUT["parameters"]) - 4
    assert sorted(report.dropped) == sorted(
        PREFIX + k for k in ("head.weight", "head.bias", "norm.weight", "norm.bias")
    )
    assert len(report.recomputed) == len(LAYOUT["buffers"])
    assert sorted(report.ignored) == [
        "backbone.fpn.fpn.inner_blocks.0.0.weight",
        "heads.0.layers.0.0.weight",
    ]
    assert report.reinitialised == [] and report.missing == [] and report.unexpected == []
    state = enc.state_dict()
    for key in (
        "features.0.0.weight",
        "features.5.17.attn.cpb_mlp.2.weight",
        "features.7.1.mlp.3.bias",
        "features.4.norm.weight",
    ):
        assert torch.equal(state[key], satlas[PREFIX + key])


def test_nine_band_encoder_reinitialises_the_patch_conv(satlas):
    enc = _base_encoder(9)
    with torch.no_grad():
        enc.features[0][0].weight.normal_(std=0.02)  # a "fresh" initialisation
    fresh = enc.features[0][0].weight.detach().clone()
    report = load_swin_v2_state_dict(enc, satlas)
    assert report.reinitialised == [PREFIX + "features.0.0.weight"]
    assert torch.equal(enc.features[0][0].weight, fresh)  # kept the fresh init
    assert torch.equal(enc.features[0][0].bias, satlas[PREFIX + "features.0.0.bias"])

    enc = _base_encoder(9)
    load_swin_v2_state_dict(enc, satlas, input_conv="mean")
    rgb = satlas[PREFIX + "features.0.0.weight"]
    want = rgb.mean(dim=1, keepdim=True) * 3 / 9
    assert torch.allclose(enc.features[0][0].weight, want.expand(-1, 9, -1, -1))


def test_shape_mismatch_names_the_key_and_both_shapes(satlas):
    enc = _base_encoder(3)
    bad = dict(satlas)
    bad[PREFIX + "features.3.1.mlp.0.weight"] = torch.zeros(100, 256)
    with pytest.raises(CheckpointError) as err:
        load_swin_v2_state_dict(enc, bad)
    msg = str(err.value)
    assert "features.3.1.mlp.0.weight" in msg and "(100, 256)" in msg and "(1024, 256)" in msg


def test_missing_and_foreign_state_dicts_are_refused(satlas):
    enc = _base_encoder(3)
    missing = {k: v for k, v in satlas.items() if "features.7.1.norm2" not in k}
    with pytest.raises(CheckpointError, match="missing.*features.7.1.norm2"):
        load_swin_v2_state_dict(enc, missing)
    report = load_swin_v2_state_dict(enc, missing, strict=False)
    assert report.missing == ["features.7.1.norm2.bias", "features.7.1.norm2.weight"]
    with pytest.raises(CheckpointError, match="features.0.0.weight"):
        load_swin_v2_state_dict(enc, {"encoder.conv1.weight": torch.zeros(3)})


def test_stage_shapes_and_odd_sizes():
    enc = SwinV2Encoder(
        4, embed_dim=8, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=4, cpb_hidden=8
    ).eval()
    feats = enc(torch.randn(2, 4, 64, 96))
    assert [tuple(f.shape) for f in feats] == [
        (2, 8, 16, 24),
        (2, 16, 8, 12),
        (2, 32, 4, 6),
        (2, 64, 2, 3),
    ]
    assert all(torch.isfinite(f).all() for f in feats)


def test_shifted_window_keeps_windows_apart_and_is_translation_consistent():
    # a shifted block must not let a token see across the image's wrap-around: changing the
    # last column must leave the first column unchanged (with a cyclic shift and no mask, the
    # rolled-in last column would share a window with the first)
    torch.manual_seed(0)
    enc = SwinV2Encoder(
        1, embed_dim=4, depths=(2, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4, cpb_hidden=8
    ).eval()
    block = enc.features[1][1]  # shifted block
    assert block.attn.shift == 2
    x = torch.randn(1, 8, 8, 4)
    y = x.clone()
    y[:, :, -1] += 5.0
    with torch.no_grad():
        a, b = block.attn(x), block.attn(y)
    assert torch.allclose(a[:, :, 0], b[:, :, 0], atol=1e-6)
    assert not torch.allclose(a[:, :, -1], b[:, :, -1])


def test_numeric_parity_with_torchvision_swin_v2_b():
    """Same weights, same input: each stage equals torchvision's swin_v2_b to <= 1e-4.

    PyPI's torchvision does not import beside the CPU torch wheel of the development machines
    ("operator torchvision::nms does not exist"); it does beside CUDA torch (the GPU machine).
    """
    try:
        from torchvision.models import swin_v2_b
    except Exception as err:  # noqa: BLE001 - any import failure means "not here"
        pytest.skip(f"torchvision does not import beside this torch build: {err}")
    torch.manual_seed(0)
    tv = swin_v2_b().eval()
    enc = SwinV2Encoder(3).eval()
    report = load_swin_v2_state_dict(enc, tv.state_dict())
    assert not report.reinitialised and not report.missing
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ours = enc(x)
        h = x
        theirs = []
        for i, layer in enumerate(tv.features):
            h = layer(h)
            if i % 2 == 1:  # stages 1, 3, 5, 7 (channels last in torchvision)
                theirs.append(h.permute(0, 3, 1, 2))
    assert len(ours) == len(theirs) == 4
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, i
        assert float((a - b).abs().max()) <= 1e-4, f"stage {i}: {float((a - b).abs().max())}"


def test_cached_position_bias_and_mask_follow_the_weights():
    """In eval mode without gradients the bias and mask are reused; a weight change is seen."""
    torch.manual_seed(7)
    enc = SwinV2Encoder(3, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = [f.clone() for f in enc(x)]
        again = enc(x)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        attn = enc.features[1][1].attn
        assert attn._bias_cache is not None and attn._mask_cache  # filled, and shifted
        for p in enc.parameters():
            if p.ndim == 2 and p.shape[-1] == 2:  # the first cpb_mlp layers: change them
                p.mul_(3.0)
        changed = enc(x)
    with torch.enable_grad():
        fresh = enc(x)  # computed afresh (no caches with gradients)
    assert all((a - b).abs().max() > 1e-6 for a, b in zip(first, changed))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(changed, fresh))
