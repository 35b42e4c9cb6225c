"""Video codecs: pixels [B, 3, T, H, W] in [-1, 1] <-> latents [B, C, T', h, w].

Both codecs follow Wan's causal temporal rule: frame 0 is coded alone and every further
`temporal_factor` frames make one latent frame, so 1 + 4k frames <-> 1 + k latent frames. The
generator, the sampler and the video writer only see this interface, so the toy scale (`PixelCodec`,
no weights) and the wan scale (`WanVAECodec`) run the same code.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from torch import Tensor

from mirai_train.spec import CodecSpec


@runtime_checkable
class VideoCodec(Protocol):
    temporal_factor: int
    spatial_factor: int
    latent_channels: int

    def encode(self, video: Tensor) -> Tensor: ...

    def decode(self, latent: Tensor) -> Tensor: ...

    def latent_frames(self, num_frames: int) -> int: ...

    def pixel_frames(self, num_latent_frames: int) -> int: ...


class CausalFrameRule:
    """The 1 + k * temporal_factor frame-count rule shared by every codec."""

    temporal_factor: int
    spatial_factor: int

    def latent_frames(self, num_frames: int) -> int:
        if num_frames < 1 or (num_frames - 1) % self.temporal_factor:
            raise ValueError(
                f"a video of {num_frames} frames cannot be encoded: the frame count must be 1 + "
                f"{self.temporal_factor}k (e.g. {self.pixel_frames(1 + max(num_frames - 1, 0) // self.temporal_factor)})"
            )
        return 1 + (num_frames - 1) // self.temporal_factor

    def pixel_frames(self, num_latent_frames: int) -> int:
        if num_latent_frames < 1:
            raise ValueError(f"num_latent_frames must be >= 1, got {num_latent_frames}")
        return 1 + (num_latent_frames - 1) * self.temporal_factor

    def _check_video(self, video: Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected a video [B, 3, T, H, W], got shape {tuple(video.shape)}")
        self.latent_frames(video.shape[2])
        height, width = video.shape[3:]
        if height % self.spatial_factor or width % self.spatial_factor:
            raise ValueError(
                f"video size {height}x{width} is not a multiple of the codec's spatial_factor {self.spatial_factor}"
            )


class PixelCodec(CausalFrameRule):
    """Weightless toy codec: space-to-depth by `spatial_factor`, time-to-depth by `temporal_factor`.

    Frame 0 has no group of its own to fill the `temporal_factor` slots, so it is repeated into all
    of them (a still video then has constant latents); decoding averages the slots, which inverts
    encoding exactly and turns a generated latent's disagreeing slots into their mean.
    """

    def __init__(self, spatial_factor: int, temporal_factor: int) -> None:
        self.spatial_factor = spatial_factor
        self.temporal_factor = temporal_factor
        self.latent_channels = 3 * temporal_factor * spatial_factor**2

    def encode(self, video: Tensor) -> Tensor:
        self._check_video(video)
        tf, s = self.temporal_factor, self.spatial_factor
        frames = torch.cat([video[:, :, :1].expand(-1, -1, tf, -1, -1), video[:, :, 1:]], dim=2)
        b, c, t, h, w = frames.shape
        x = frames.reshape(b, c, t // tf, tf, h // s, s, w // s, s)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # b, c, tf, s, s, t', h', w'
        return x.reshape(b, self.latent_channels, t // tf, h // s, w // s)

    def decode(self, latent: Tensor) -> Tensor:
        tf, s = self.temporal_factor, self.spatial_factor
        if latent.ndim != 5 or latent.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected a latent [B, {self.latent_channels}, T', h, w], got shape {tuple(latent.shape)}"
            )
        b, _, t, h, w = latent.shape
        x = latent.reshape(b, 3, tf, s, s, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        frames = x.reshape(b, 3, t * tf, h * s, w * s)
        first = frames[:, :, :tf].mean(dim=2, keepdim=True)
        return torch.cat([first, frames[:, :, tf:]], dim=2)


class SpritesPCACodec(CausalFrameRule):
    """Toy stand-in for Wan's VAE: the pixel codec's patches projected on their top principal
    components, fitted on sprites clips, and divided by one number so the latents have unit mean
    variance (Wan's latents are normalised too).

    The pixel codec hands the DiT 768 numbers per latent position, mostly copies of one flat colour;
    the toy's 24 components keep 97% of the variance (a mean error of about 4/255 per pixel) in
    Wan's latent layout (8x8 space, 4x time; Wan has 16 channels), which a DiT can learn on a CPU.
    Issue 13 measured the ceiling that matters: the named sprites show in 0.98 of the frames of the
    reconstructions where they show in the real clips (16 channels: 0.95).

    One scale for all components, not one each: the components keep their natural spread (the
    first, close to a patch's mean colour, has 25x the standard deviation of the 24th), as the
    spatial frequencies of images and of image latents do. Noise then drowns detail first and
    layout last, so a diffusion model settles a scene's colours and bands at high noise, from the
    prompt, and its sprites' edges late ("diffusion is spectral autoregression": Rissanen et al.,
    ICLR 2023; Dieleman, 2024). Whitened components (unit variance each) flatten that spectrum: on
    them the toy teacher explained 8% of a clip's latent variance from its prompt at pure noise,
    on these 38% (same steps), and drew noise either way before the other fixes of issue 13.

    The fit is deterministic (fixed clips, a float64 eigensolver, a sign convention) and takes under
    a second, so every process that builds the codec gets the same basis without a weight file.
    """

    FIT_CLIPS = 16
    FIT_BASE_SEED = 8

    def __init__(self, spatial_factor: int, temporal_factor: int, latent_channels: int) -> None:
        self.pixels = PixelCodec(spatial_factor, temporal_factor)
        self.spatial_factor, self.temporal_factor = spatial_factor, temporal_factor
        self.latent_channels = latent_channels
        self.mean, basis, scale = _sprites_pca(spatial_factor, temporal_factor, latent_channels)
        self.scale = scale.pow(2).mean().sqrt()  # unit mean variance over the components
        self.encoder = basis / self.scale  # [k, D]
        self.decoder = basis * self.scale

    def encode(self, video: Tensor) -> Tensor:
        patches = self.pixels.encode(video)
        centred = patches - self.mean.to(patches)[None, :, None, None, None]
        return torch.einsum("kd,bdthw->bkthw", self.encoder.to(patches), centred)

    def decode(self, latent: Tensor) -> Tensor:
        if latent.ndim != 5 or latent.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected a latent [B, {self.latent_channels}, T', h, w], got shape {tuple(latent.shape)}"
            )
        patches = torch.einsum("kd,bkthw->bdthw", self.decoder.to(latent), latent)
        return self.pixels.decode(patches + self.mean.to(latent)[None, :, None, None, None])


@functools.cache
def _sprites_pca(spatial_factor: int, temporal_factor: int, channels: int) -> tuple[Tensor, Tensor, Tensor]:
    """(mean [D], basis [k, D], per-component std [k]) of pixel-codec patches of sprites clips."""
    from mirai_train.world import SpritesConfig, render, sample_scene
    from mirai_train.world.dataset import clip_seed
    from mirai_train.world.render import to_tensor

    pixels = PixelCodec(spatial_factor, temporal_factor)
    config = SpritesConfig()
    clips = [
        to_tensor(
            render(sample_scene(clip_seed(SpritesPCACodec.FIT_BASE_SEED, i), config), config.num_frames)
        )
        for i in range(SpritesPCACodec.FIT_CLIPS)
    ]
    patches = pixels.encode(torch.stack(clips))
    rows = patches.permute(0, 2, 3, 4, 1).reshape(-1, patches.shape[1])
    if channels > rows.shape[1]:
        raise ValueError(f"codec.latent_channels {channels} exceeds the {rows.shape[1]} values of a patch")
    mean = rows.double().mean(dim=0)
    centred = rows - mean.float()
    variance, vectors = torch.linalg.eigh((centred.T @ centred).double() / len(rows))
    variance, basis = variance.flip(0)[:channels], vectors.flip(1)[:, :channels].T
    signs = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))  # largest entry > 0
    return mean.float(), (basis * signs).float(), variance.clamp_min(1e-12).sqrt().float()


class WanVAECodec(CausalFrameRule):
    """diffusers' `AutoencoderKLWan` with Wan's latent normalisation (latents_mean / latents_std).

    Encoding takes the posterior mean, as Wan and Self-Forcing do, so it is deterministic.
    """

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        self.temporal_factor = int(config["scale_factor_temporal"])
        self.spatial_factor = int(config["scale_factor_spatial"])
        self.latent_channels = int(config["z_dim"])
        shape = (1, self.latent_channels, 1, 1, 1)
        self._mean = torch.tensor(config["latents_mean"], dtype=torch.float32).view(shape)
        self._std = torch.tensor(config["latents_std"], dtype=torch.float32).view(shape)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> WanVAECodec:
        """Load from a diffusers `AutoencoderKLWan` directory, or a Wan pipeline directory with `vae/`."""
        root = Path(path)
        folder = root / "vae" if (root / "vae" / "config.json").is_file() else root
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"codec.path: no AutoencoderKLWan found at {root}: expected {root}/config.json and its weights "
                f"(a diffusers AutoencoderKLWan directory) or {root}/vae/config.json (a diffusers Wan pipeline)"
            )
        vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype).to(device)
        return cls(vae)

    def encode(self, video: Tensor) -> Tensor:
        self._check_video(video)
        posterior = self.vae.encode(video.to(self.vae.dtype)).latent_dist
        mean, std = self._mean.to(video.device), self._std.to(video.device)
        return ((posterior.mean.float() - mean) / std).to(video.dtype)

    def decode(self, latent: Tensor) -> Tensor:
        if latent.ndim != 5 or latent.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected a latent [B, {self.latent_channels}, T', h, w], got shape {tuple(latent.shape)}"
            )
        mean, std = self._mean.to(latent.device), self._std.to(latent.device)
        z = latent.float() * std + mean
        return self.vae.decode(z.to(self.vae.dtype)).sample.to(latent.dtype)


def build_codec(
    spec: CodecSpec, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> VideoCodec:
    """The codec a `GeneratorSpec.codec` names, checked against the spec's factors and channels."""
    codec: PixelCodec | SpritesPCACodec | WanVAECodec
    if spec.kind == "pixel":
        codec = PixelCodec(spec.spatial_factor, spec.temporal_factor)
    elif spec.kind == "sprites_pca":
        codec = SpritesPCACodec(spec.spatial_factor, spec.temporal_factor, spec.latent_channels)
    else:
        if spec.path is None:
            raise ValueError(
                "codec.path is missing: codec.kind 'wan_vae' loads AutoencoderKLWan from a local directory; "
                "set codec.path to a directory holding config.json and diffusion_pytorch_model.safetensors "
                "(or to a diffusers Wan pipeline directory with a vae/ folder)"
            )
        codec = WanVAECodec.from_pretrained(spec.path, device=device, dtype=dtype)
    for field in ("spatial_factor", "temporal_factor", "latent_channels"):
        expected, actual = getattr(spec, field), getattr(codec, field)
        if expected != actual:
            raise ValueError(
                f"codec.{field} is {expected} but the {spec.kind} codec has {actual}; set codec.{field}: {actual}"
            )
    return codec
