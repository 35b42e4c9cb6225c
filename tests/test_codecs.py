from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan

from mirai_train.models.codecs import PixelCodec, VideoCodec, WanVAECodec, build_codec
from mirai_train.spec import CodecSpec

TINY_VAE = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae")
    AutoencoderKLWan(**TINY_VAE).save_pretrained(path)
    return path


def _video(frames: int, height: int = 16, width: int = 16, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, frames, height, width) * 2 - 1


@pytest.mark.parametrize(("spatial", "temporal", "frames"), [(8, 4, 9), (2, 4, 1), (4, 2, 7), (2, 3, 10)])
def test_pixel_codec_round_trip_is_exact(spatial: int, temporal: int, frames: int) -> None:
    codec = PixelCodec(spatial_factor=spatial, temporal_factor=temporal)
    video = _video(frames)
    latent = codec.encode(video)
    assert latent.shape == (
        2,
        3 * temporal * spatial**2,
        codec.latent_frames(frames),
        16 // spatial,
        16 // spatial,
    )
    torch.testing.assert_close(codec.decode(latent), video, rtol=0, atol=1e-7)


def test_pixel_codec_is_local_in_time() -> None:
    """Latent frame i depends only on its own pixel frames (frame 0 alone, then groups of 4)."""
    codec = PixelCodec(spatial_factor=2, temporal_factor=4)
    video = _video(9)
    changed = video.clone()
    changed[:, :, 5:] = 0.0
    a, b = codec.encode(video), codec.encode(changed)
    assert torch.equal(a[:, :, :2], b[:, :, :2])
    assert not torch.equal(a[:, :, 2], b[:, :, 2])
    still = codec.encode(video[:, :, :1])
    assert torch.equal(still, codec.encode(video[:, :, :1].expand(-1, -1, 5, -1, -1))[:, :, :1])


def test_frame_count_rule() -> None:
    codec = PixelCodec(spatial_factor=2, temporal_factor=4)
    assert [codec.latent_frames(n) for n in (1, 5, 81)] == [1, 2, 21]
    assert [codec.pixel_frames(k) for k in (1, 2, 21)] == [1, 5, 81]
    with pytest.raises(ValueError, match=r"1 \+ 4k \(e\.g\. 77\)"):
        codec.latent_frames(80)
    with pytest.raises(ValueError, match="frame count"):
        codec.encode(_video(8))
    with pytest.raises(ValueError, match="spatial_factor 2"):
        codec.encode(_video(5, height=15))


def test_wan_vae_codec_from_saved_tiny_config(tiny_vae_dir: Path) -> None:
    codec = build_codec(CodecSpec(kind="wan_vae", path=str(tiny_vae_dir)))
    assert isinstance(codec, WanVAECodec) and isinstance(codec, VideoCodec)
    assert (codec.temporal_factor, codec.spatial_factor, codec.latent_channels) == (4, 8, 16)
    video = _video(5, batch=1)
    with torch.no_grad():
        latent = codec.encode(video)
        assert latent.shape == (1, 16, 2, 2, 2)
        # Normalisation is Wan's: (posterior mean - latents_mean) / latents_std per channel.
        raw = codec.vae.encode(video).latent_dist.mean
        mean = torch.tensor(codec.vae.config["latents_mean"]).view(1, 16, 1, 1, 1)
        std = torch.tensor(codec.vae.config["latents_std"]).view(1, 16, 1, 1, 1)
        torch.testing.assert_close(latent, (raw - mean) / std)
        decoded = codec.decode(latent)
        torch.testing.assert_close(decoded, codec.vae.decode(raw).sample)
    assert decoded.shape == video.shape


def test_build_codec_checks_the_spec(tiny_vae_dir: Path, tmp_path: Path) -> None:
    assert isinstance(build_codec(CodecSpec(kind="pixel", spatial_factor=2, latent_channels=48)), PixelCodec)
    with pytest.raises(ValueError, match=r"codec\.latent_channels is 16 .* set codec\.latent_channels: 48"):
        build_codec(CodecSpec(kind="pixel", spatial_factor=2))
    with pytest.raises(ValueError, match=r"codec\.path is missing.*config\.json"):
        build_codec(CodecSpec(kind="wan_vae"))
    with pytest.raises(FileNotFoundError, match=rf"codec\.path: .*{tmp_path}/config\.json"):
        build_codec(CodecSpec(kind="wan_vae", path=str(tmp_path)))
    with pytest.raises(ValueError, match=r"codec\.spatial_factor is 4 but the wan_vae codec has 8"):
        build_codec(CodecSpec(kind="wan_vae", path=str(tiny_vae_dir), spatial_factor=4))


def test_sprites_pca_codec_keeps_sprites_and_their_spectrum() -> None:
    """16 components of 8x8x4 patches, one scale for all: Wan's latent shape, unit mean variance,
    the components' natural spread kept (coarse first), sprites kept to a few levels."""
    from mirai_train.models.codecs import SpritesPCACodec, _sprites_pca
    from mirai_train.world import SpritesConfig, render, sample_scene, to_tensor

    codec = build_codec(CodecSpec(kind="sprites_pca", latent_channels=16))
    assert isinstance(codec, SpritesPCACodec)
    config = SpritesConfig()
    video = torch.stack([to_tensor(render(sample_scene(seed, config), 21)) for seed in (11, 12, 13)])
    latent = codec.encode(video)
    assert latent.shape == (3, 16, 6, 8, 8)
    assert 0.6 < float(latent.std()) < 1.6  # unit mean variance on the fit clips: about that here too
    spread = latent.transpose(0, 1).flatten(1).std(dim=1)
    assert float(spread[:3].min()) > 3 * float(spread[-3:].max())  # not whitened: coarse components dominate
    error = (codec.decode(latent) - video).abs().mean() * 127.5
    assert float(error) < 10.0  # mean error in 0..255 levels; noise decodes to ~60
    noise = codec.decode(torch.randn_like(latent))
    assert float((noise - video).abs().mean() * 127.5) > 30.0
    # The fit is a pure function of its arguments (no cache involved) and picks a sign per component.
    mean, basis, scale = _sprites_pca.__wrapped__(8, 4, 16)
    torch.testing.assert_close(mean, codec.mean, rtol=0, atol=0)
    torch.testing.assert_close(basis, codec.encoder * scale.pow(2).mean().sqrt(), rtol=0, atol=1e-6)
    assert bool((basis.gather(1, basis.abs().argmax(1, keepdim=True)) > 0).all())
    assert bool((scale[:-1] >= scale[1:]).all())
    with pytest.raises(ValueError, match="exceeds the 768 values"):
        _sprites_pca.__wrapped__(8, 4, 769)
