"""Issue 13's single-frame study: what a toy teacher draws against its training time.

The toy chain's teacher learns from 81-frame clips (21 latent frames). On single frames (one latent
frame) a teacher trains in minutes on one core, so what holds it back (the token grid, the sprites'
size, the model's size, the training time, the decoder) can be measured there. Each run trains a
bidirectional `CausalWanTransformer` by flow matching on the codec latents of single rendered
frames, with the teacher's recipe (`configs/toy/teacher.yaml`: AdamW 1e-3, text dropout 0.1, a
quarter of the draws at pure noise) plus an EMA of the weights. Every `--eval-every` steps the EMA
samples `--samples` frames for each of `--prompts` held-out prompts (Euler, `--sample-steps` steps,
guidance `--guidance`), and `mirai_train.world.truth.measure` reads them against the scenes'
truth, relative to real frames of the same scenes (every 10th of the 81 rendered):

- shape / real: frames showing each named sprite with its colour and its shape (issue 13's teacher
  target: 0.85 of real);
- colour / real: the same with the colour only;
- off-palette: the share of pixels near no palette colour (the teacher's target: 0.05 at most);
- named shape fits: the share of named sprites' blobs that fit the named shape best, at any IoU
  (`named_shape_fits`: does the generator read the shape words at all);
- background / real: the share of pixels showing the scene's background bands and pillar where
  they stand, relative to real frames (where sprites cover some of it);
- shape from real at sigma (`--from-real`): shape / real of the samples started from the real
  frames' latents noised to sigma (SDEdit, Meng et al., ICLR 2022): the noise level at which the
  denoiser loses the shapes;
- shape and named shape fits from disc at sigma (`--from-disc`): the same from the real frames with
  every sprite drawn as a circle of its colour and size (the disc frames themselves: 0.19 and 0.18
  on big sprites): does the teacher draw the named shapes where it is shown the sprites are.

Minutes count training steps only. Each evaluation writes frame grids (real frames above samples,
and above those from each `--from-real` and `--from-disc` level), the curve so far (`curve.md`) and
the EMA weights (`ema.pt`, for `--init`) into `--out`. The model is the toy teacher's
(`teacher_generator.yaml`) with `--patch`, `--layers`, `--heads`, `--ffn`, RoPE's base
(`--rope-theta`) or its image axes in whole turns over the token grid (`--rope-cyclic`) or more
tokens (`--rope-period`), a border of tokens held at zero around the frame (`--border`), the
initialisation (`--dit-init`), a learned place embedding (`--place-embedding`), self-conditioning
(`--self-condition`), a convolution in every feed-forward (`--ffn-conv`), clean-latent output
(`--predict-clean`) and the codec's block (`--block`) overridden, and the learning rate (`--lr`);
the world is the toy default with `--radius`, `--max-objects`, where the sprites are (`--place`,
`--snap`) and how far they are then moved (`--offset`) overridden. `--refiner-steps` first trains a
`Refiner` for the codec's decoder and measures every sample through both decoders. `--clip-frames T`
trains, samples and measures short clips of T latent frames instead (the step from single frames
towards the chain's 21-frame clips). `--device cuda` trains and samples on a GPU, for the longer
runs a CPU cannot make. The runs so far and what they found: `toy_teacher_frames.md`.

    python benchmarks/toy_teacher_frames.py --out runs/frames_study/baseline
    python benchmarks/toy_teacher_frames.py --radius 0.18 0.24 --max-objects 2 --out runs/frames_study/big
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.activations import GELU
from diffusers.models.attention import FeedForward
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
from rich.console import Console
from rich.progress import Progress
from torch import Tensor, nn

from mirai_eval.fidelity import frame_grid
from mirai_eval.generate import to_frames
from mirai_train.config_files import load_model
from mirai_train.losses.flow_matching import FlowMatchingDraw, draw_flow_matching, flow_matching_loss
from mirai_train.models.causal_wan import CausalWanOutput, CausalWanTransformer
from mirai_train.models.codecs import SpritesPCACodec
from mirai_train.models.text_encoders import ToyTextEncoder
from mirai_train.sampling import FlowMatchSchedule, guided, ode_grid, ode_trajectory
from mirai_train.spec import GeneratorSpec
from mirai_train.world import SpritesConfig, heldout_prompts, render, sample_scene
from mirai_train.world.dataset import clip_seed
from mirai_train.world.fidelity import palette_labels
from mirai_train.world.render import to_tensor
from mirai_train.world.scene import Scene, Sprite
from mirai_train.world.truth import colour_blobs, fit_radii, measure, min_area, shape_fit
from mirai_train.world.vocabulary import COLOURS, SHAPES

TEACHER = Path(__file__).resolve().parents[1] / "mirai_train" / "configs" / "toy" / "teacher_generator.yaml"
TRAIN_BASE_SEED = 1  # the toy teacher's training clips (teacher.yaml: data.base_seed)


def encode(codec: SpritesPCACodec, clips: np.ndarray) -> Tensor:
    """uint8 [N, F, H, W, 3] -> latents [N, C, T, h, w]; [N, H, W, 3] is N one-frame clips (each
    frame coded alone, as a clip's frame 0)."""
    clips = clips[:, None] if clips.ndim == 4 else clips
    return codec.encode(torch.stack([to_tensor(clip) for clip in clips]))


class Refiner(nn.Module):
    """A small convolutional U-Net that corrects the PCA codec's decoded frames (a residual).

    Trained on the decodes of real latents with Gaussian noise of up to `REFINER_NOISE` added, it
    asks whether a decoder that knows the world's sprites turns a generator's imprecise latents
    into clean ones (as Wan's learned VAE decoder does for Wan), with the PCA encoder kept.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, width, 3, padding=1)
        self.down1 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        self.down2 = nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1)
        self.mid = nn.ModuleList(nn.Conv2d(2 * width, 2 * width, 3, padding=1) for _ in range(3))
        self.up2 = nn.ConvTranspose2d(2 * width, 2 * width, 4, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(4 * width, width, 4, stride=2, padding=1)
        self.out1 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.out2 = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, pixels: Tensor) -> Tensor:
        """[N, 3, H, W] -> the same, corrected."""
        h0 = F.silu(self.inp(pixels))
        h1 = F.silu(self.down1(h0))
        h = h2 = F.silu(self.down2(h1))
        for conv in self.mid:
            h = F.silu(conv(h))
        h = F.silu(self.up2(h + h2))
        h = F.silu(self.up1(torch.cat([h, h1], dim=1)))
        return pixels + self.out2(F.silu(self.out1(torch.cat([h, h0], dim=1))))


REFINER_NOISE = 0.6  # the largest noise added to the latents the refiner is trained on


def decode(codec: SpritesPCACodec, latents: Tensor, refiner: Refiner | None = None) -> np.ndarray:
    """Latents [N, C, T, h, w] -> uint8 frames [N * F, H, W, 3], clip after clip, through the refiner
    (one-frame clips only) when given."""
    if latents.shape[2] > 1:
        return np.concatenate([to_frames(clip).numpy() for clip in codec.decode(latents)])
    pixels = codec.decode(latents)[:, :, 0]
    if refiner is not None:
        with torch.no_grad():
            pixels = refiner(pixels)
    return to_frames(pixels.transpose(0, 1)).numpy()  # frames stand in for a video's time


def train_refiner(
    codec: SpritesPCACodec, frames: np.ndarray, latents: Tensor, steps: int, progress: Progress
) -> Refiner:
    """L1 to the real frame from the decode of its latent plus noise of a uniform scale in [0, 0.6]."""
    with torch.random.fork_rng():  # the teacher's initial weights stay those of a run without refiner
        torch.manual_seed(0)
        refiner = Refiner()
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, 2 * (1 - step / steps) + 0.02)
    )
    generator = torch.Generator().manual_seed(0)
    task = progress.add_task("refiner", total=steps)
    for _ in range(steps):
        index = torch.randint(0, len(frames), (32,), generator=generator)
        sigma = REFINER_NOISE * torch.rand(32, 1, 1, 1, 1, generator=generator)
        noisy = latents[index] + sigma * torch.randn(latents[index].shape, generator=generator)
        with torch.no_grad():
            pixels = codec.decode(noisy)[:, :, 0]
        target = torch.stack([to_tensor(frames[i][None])[:, 0] for i in index.tolist()])
        loss = (refiner(pixels) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.update(task, advance=1, description=f"refiner (L1 {loss.item():.3f})")
    return refiner.eval()


def mean_fidelity(videos: list[np.ndarray], scenes: list[Scene], world: SpritesConfig) -> dict[str, float]:
    """Each of `truth.measure`'s measures, averaged over the videos, and `named_shape_fits`."""
    measured = [measure(v, s, world).as_dict() for v, s in zip(videos, scenes, strict=True)]
    means = {key: float(np.mean([m[key] for m in measured])) for key in measured[0]}
    return means | {"named_shape": named_shape_fits(videos, scenes, world)}


def named_shape_fits(videos: list[np.ndarray], scenes: list[Scene], world: SpritesConfig) -> float:
    """Of the frames' largest blobs of a named sprite's colour, the share whose best-fitting shape
    template is the one the prompt names, whatever the fit's IoU: it tells a generator that draws
    the wrong shapes or ignores the shape words (chance is about 1/6) from one that draws the right
    shapes roughly."""
    smallest, radii = min_area(world), fit_radii(world)
    hits = total = 0
    for video, scene in zip(videos, scenes, strict=True):
        labels = palette_labels(video)
        for sprite in scene.objects:
            largest: dict[int, tuple[np.ndarray, float]] = {}
            for t, mask, area, _ in colour_blobs(labels, COLOURS.index(sprite.colour), smallest):
                if area > largest.get(t, (mask, 0.0))[1]:
                    largest[t] = (mask, area)
            for mask, _ in largest.values():
                hits += int(shape_fit(mask, radii).argmax() == SHAPES.index(sprite.shape))
                total += 1
    return hits / total if total else float("nan")


def as_discs(scene: Scene) -> Scene:
    """The scene with every sprite a circle of its colour and size (its prompt still names the shape)."""
    circles = tuple(dataclasses.replace(sprite, shape="circle") for sprite in scene.objects)
    return dataclasses.replace(scene, objects=circles)


def place(
    scene: Scene, where: str, block: int, lattice: int, margin: float, offset: tuple[float, float]
) -> Scene:
    """The scene with its sprites placed as `--place` says. "world": as sampled. "centre": its first
    sprite alone, still at the frame's centre, no pillar: can the model put a sprite where its prompt
    cannot say? "grid": every sprite still, its centre on a corner of a `block`-pixel grid; on the
    codec's block grid each latent position sees the same piece of a shape wherever the sprite is,
    on a finer one (`--snap`) a sprite lies at one of (codec block / snap)^2 footings. "lattice": every
    sprite still, its centre moved to the nearest of `lattice` x `lattice` places spread evenly
    between `margin` pixels from each side (sprites sharing a place overlap: use one a frame): how
    does learning the shapes scale with the number of places a sprite can be at? `offset` (pixels,
    across and down) then moves every still sprite: does a drawing learnt at one place serve
    another?"""
    placed = _placed(scene, where, block, lattice, margin)
    if where == "world" or offset == (0.0, 0.0):
        return placed

    def moved(sprite: Sprite) -> Sprite:
        return dataclasses.replace(sprite, start=(sprite.start[0] + offset[0], sprite.start[1] + offset[1]))

    return dataclasses.replace(placed, objects=tuple(moved(sprite) for sprite in placed.objects))


def _placed(scene: Scene, where: str, block: int, lattice: int, margin: float) -> Scene:
    if where == "lattice":

        def snap(c: float, side: int) -> float:
            if lattice == 1:
                return side / 2
            step = (side - 2 * margin) / (lattice - 1)
            return margin + step * min(max(round((c - margin) / step), 0), lattice - 1)

        def on_lattice(sprite: Sprite) -> Sprite:
            (x, y), still = sprite.start, (0.0, 0.0)
            return dataclasses.replace(
                sprite, start=(snap(x, scene.width), snap(y, scene.height)), velocity=still
            )

        return dataclasses.replace(scene, objects=tuple(on_lattice(sprite) for sprite in scene.objects))
    if where == "centre":
        sprite = dataclasses.replace(
            scene.objects[0], start=(scene.width / 2, scene.height / 2), velocity=(0.0, 0.0)
        )
        return dataclasses.replace(scene, objects=(sprite,), pillar=None)
    if where == "grid":

        def on_grid(sprite: Sprite) -> Sprite:
            x, y = (float(block * round(c / block)) for c in sprite.start)
            return dataclasses.replace(sprite, start=(x, y), velocity=(0.0, 0.0))

        sprites = tuple(on_grid(sprite) for sprite in scene.objects)
        return dataclasses.replace(scene, objects=sprites)
    return scene


def cyclic_rope(rope: WanRotaryPosEmbed, periods: tuple[int, int]) -> None:
    """Turn RoPE's image axes into whole turns: frequency k turns 2 pi k / P a token on an axis, so a
    query and key interact only through their offset modulo P. Where P is the axis's number of
    tokens (`--rope-cyclic`), every token sees the same offsets, the frame has no edge, and the
    model (per-token maps around attention that depends on offsets alone) commutes with whole-token
    cyclic shifts: it cannot tell where in the frame a token is, only where it lies relative to the
    others, so any drawing it learns serves every place alike. Where P is larger (`--rope-period`),
    the frequencies are as fine but no offset within the frame aliases another: the frame keeps its
    edges, and nothing wraps across them."""
    sizes = [rope.t_dim, rope.h_dim, rope.w_dim]
    for period, index in zip(periods, (1, 2), strict=True):
        turns = torch.arange(1, sizes[index] // 2 + 1, dtype=torch.float64).repeat_interleave(2)
        angles = 2 * torch.pi * torch.arange(rope.max_seq_len, dtype=torch.float64)[:, None] * turns / period
        start = sum(sizes[:index])
        for table, f in ((rope.freqs_cos, torch.cos), (rope.freqs_sin, torch.sin)):
            cast(Tensor, table)[:, start : start + sizes[index]] = f(angles).to(cast(Tensor, table).dtype)


@torch.no_grad()
def shift_error(model: CausalWanTransformer, latent: tuple[int, ...], text_dim: int) -> float:
    """The largest difference between the flow of a shifted input and the shifted flow (a cyclic
    shift by 3 and 5 tokens, on random latents and text): about 1e-6 where the model commutes."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, *latent), generator=generator)
    timestep, text = torch.full((2,), 500.0), torch.randn((2, 8, text_dim), generator=generator)
    shift, dims = (3 * model.patch[1], 5 * model.patch[2]), (3, 4)
    flow_of_shifted = model(torch.roll(x, shift, dims), timestep, text, causal=False).sample
    shifted_flow = torch.roll(model(x, timestep, text, causal=False).sample, shift, dims)
    return float((flow_of_shifted - shifted_flow).abs().max())


ADALN_ZERO = ("condition_embedder.time_proj.", "scale_shift_table", ".attn2.to_out.", "proj_out.")


def dit_init(model: CausalWanTransformer) -> None:
    """DiT's initialisation (Peebles and Xie, ICCV 2023, section 3.2): Xavier-uniform linear layers
    and patch embedding with zero biases, the timestep MLP drawn at std 0.02, and adaLN-Zero: every
    block's modulation and gates (Wan's per-block table plus the shared timestep projection), the
    cross-attention's output (ungated in Wan's block) and the output layer start at zero, so each
    block starts as the identity. The toy's default is PyTorch's initialisation, as Wan's weights
    are only ever loaded at the wan scale."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv3d):  # the patch embedding is a linear map of a patch
                nn.init.xavier_uniform_(module.weight.flatten(1))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for name, parameter in model.named_parameters():
            if name.startswith("condition_embedder.time_embedder.") and name.endswith("weight"):
                nn.init.normal_(parameter, std=0.02)
            if any(part in name for part in ADALN_ZERO):
                nn.init.zeros_(parameter)


class MixFFN(nn.Module):
    """A block's feed-forward with a depthwise convolution over each frame's token grid after its
    first layer (Mix-FFN: Xie et al., "SegFormer", NeurIPS 2021, section 3.1). RoPE tells a token
    its offset to another only through attention; the convolution tells every token what lies next
    to it: is that what drawing a shape around a sprite at any place takes? It starts as the
    identity (zero kernel beside a skip), so the block starts as Wan's."""

    def __init__(self, ffn: FeedForward, grid: tuple[int, int], kernel: int) -> None:
        super().__init__()
        first = ffn.net[0]
        assert isinstance(first, GELU), "Wan's feed-forward starts with a tanh GELU layer"
        self.first, self.rest, self.grid = first, nn.Sequential(*ffn.net[1:]), grid
        width = first.proj.out_features
        self.conv = nn.Conv2d(width, width, kernel, padding=kernel // 2, groups=width)
        for parameter in self.conv.parameters():
            nn.init.zeros_(parameter)

    def forward(self, h: Tensor) -> Tensor:
        x = self.first.proj(h)  # [B, F*H*W, ffn]
        batch, tokens, width = x.shape
        frames = x.unflatten(1, (-1, *self.grid)).flatten(0, 1).permute(0, 3, 1, 2)  # [B*F, ffn, H, W]
        x = x + self.conv(frames).permute(0, 2, 3, 1).reshape(batch, tokens, width)
        return self.rest(self.first.gelu(x))


class PlacedPatchEmbedding(nn.Conv3d):
    """The patch embedding plus a learned embedding of each token's place in the frame (ViT's learned
    positions: Dosovitskiy et al., ICLR 2021), zero at the start. A place-blind model
    (`--rope-cyclic`) wraps sprites across the frame's edges and cannot keep to what the frame fixes
    (its edges, the background's bands); this lets it learn where those are: does it then also tie
    its drawings to places again?"""

    def __init__(self, conv: nn.Conv3d, grid: tuple[int, int]) -> None:
        patch = cast(tuple[int, int, int], conv.kernel_size)
        super().__init__(conv.in_channels, conv.out_channels, patch, stride=patch)
        self.load_state_dict(conv.state_dict())
        self.place = nn.Parameter(torch.zeros(conv.out_channels, 1, *grid))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.place


class SelfConditioned(nn.Module):
    """Self-conditioning (Chen, Zhang and Hinton, "Analog Bits", ICLR 2023, section 3.1): the model
    also sees its own previous estimate of the clean latents, stacked on the noisy ones along the
    channels (zeros when it has none), so at mid noise it can keep to the places and shapes it has
    already started to draw instead of predicting their average again."""

    def __init__(self, model: CausalWanTransformer, schedule: FlowMatchSchedule) -> None:
        super().__init__()
        self.model, self.schedule = model, schedule

    def flow(self, noisy: Tensor, estimate: Tensor, timestep: Tensor, text: Tensor) -> Tensor:
        out = self.model(torch.cat([noisy, estimate], dim=1), timestep, text, causal=False).sample
        assert out is not None
        return out

    def loss(self, draw: FlowMatchingDraw, x0: Tensor, text: Tensor, generator: torch.Generator) -> Tensor:
        """Half the steps first estimate x0 without gradient and train on that estimate."""
        estimate = torch.zeros_like(draw.noisy)
        if torch.rand((), generator=generator, device=x0.device) < 0.5:
            with torch.no_grad():
                flow = self.flow(draw.noisy, estimate, draw.timestep, text)
                estimate = self.schedule.flow_to_x0(flow, draw.noisy, draw.timestep)
        return flow_matching_loss(self.flow(draw.noisy, estimate, draw.timestep, text), x0, draw.noise)

    @torch.no_grad()
    def sample(self, text: Tensor, null: Tensor, start: Tensor, grid: list[float], guidance: float) -> Tensor:
        """Euler over `grid` from `start` with guidance, each step seeing the previous step's x0."""
        x, estimate = start, torch.zeros_like(start)
        for t, t_next in itertools.pairwise(grid):
            timestep = torch.full((len(x),), t)
            flow = guided(
                self.flow(x, estimate, timestep, text), self.flow(x, estimate, timestep, null), guidance
            )
            estimate = self.schedule.flow_to_x0(flow, x, timestep)
            x = x + (t_next - t) / self.schedule.num_train_timesteps * flow
        return x


class CleanPrediction(nn.Module):
    """x-prediction (Li and He, "Back to Basics: Let Denoising Generative Models Denoise", 2025):
    the network outputs the clean latents, and its flow is (x_t - x0) / sigma, with sigma clipped
    at 0.05 as theirs; the loss stays the flow's. A clean frame lies on a far smaller set than noise
    does: is drawing the shapes easier when the network only ever outputs clean frames?"""

    def __init__(self, model: CausalWanTransformer, schedule: FlowMatchSchedule) -> None:
        super().__init__()
        self.model, self.schedule = model, schedule

    @property
    def num_frame_per_block(self) -> int:
        return self.model.num_frame_per_block

    def forward(self, x: Tensor, timestep: Tensor, text: Tensor, **kwargs: object) -> CausalWanOutput:
        clean = self.model(x, timestep, text, **kwargs).sample
        assert clean is not None
        sigma = self.schedule.sigma(timestep).clamp(min=0.05).view(-1, 1, 1, 1, 1).to(x.dtype)
        return CausalWanOutput(sample=(x - clean) / sigma, tap=None)


class Bordered(nn.Module):
    """The frame inside a border of `border` tokens held at zero latents at every noise level, and
    the flow read inside it. With RoPE in whole turns over the bordered grid (`--rope-cyclic`), the
    model is still blind to place (it commutes with cyclic shifts of the bordered grid), but the
    frame now has edges it can see: does a place-blind teacher keep its drawing, stop wrapping
    sprites across the frame's edges and keep the pillar where it stands?"""

    def __init__(self, model: nn.Module, border: int, patch: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.down, self.across = border * patch[0], border * patch[1]  # latent positions

    @property
    def num_frame_per_block(self) -> int:
        return cast(int, self.model.num_frame_per_block)

    def forward(self, x: Tensor, timestep: Tensor, text: Tensor, **kwargs: object) -> CausalWanOutput:
        padded = F.pad(x, (self.across, self.across, self.down, self.down))
        flow = self.model(padded, timestep, text, **kwargs).sample
        assert flow is not None
        inside = flow[..., self.down : self.down + x.shape[-2], self.across : self.across + x.shape[-1]]
        return CausalWanOutput(sample=inside, tap=None)


def relative(measured: dict[str, float], real: dict[str, float]) -> dict[str, float]:
    """Named-sprite and colour visibility relative to the real frames', the off-palette share, the
    share of blobs fitting the named shape best, and the background (bands and pillar) relative to
    the real frames'."""
    return {
        "shape / real": measured["visible"] / real["visible"],
        "colour / real": measured["colour_visible"] / real["colour_visible"],
        "off-palette": measured["off_palette"],
        "named shape fits": measured["named_shape"],
        "background / real": measured["background"] / real["background"],
    }


def fmt(measured: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.2f}" for key, value in measured.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for curve.md and the frame grids")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW's learning rate (the teacher's, 1e-3)")
    parser.add_argument("--patch", type=int, nargs=3, default=[1, 1, 1], help="the teacher's patch (t h w)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4, help="attention heads of 32 channels: the width / 32")
    parser.add_argument("--ffn", type=int, default=256, help="the feed-forward layers' width")
    parser.add_argument("--block", type=int, default=8, help="the PCA codec's pixels per latent position")
    parser.add_argument(
        "--rope-theta", type=float, default=10000.0, help="RoPE's base (Wan's 10000); see `main`"
    )
    parser.add_argument("--dit-init", action="store_true", help="DiT's initialisation; see `dit_init`")
    parser.add_argument(
        "--rope-cyclic",
        action="store_true",
        help="RoPE in whole turns over the token grid; see `cyclic_rope`",
    )
    parser.add_argument(
        "--border",
        type=int,
        default=0,
        help="tokens of border held at zero around the frame, with --rope-cyclic; see `Bordered`",
    )
    parser.add_argument(
        "--place-embedding",
        action="store_true",
        help="a learned embedding of each token's place; see `PlacedPatchEmbedding`",
    )
    parser.add_argument(
        "--rope-period",
        type=int,
        default=0,
        help="RoPE in whole turns over this many tokens, more than the grid's side (0: Wan's); see `cyclic_rope`",
    )
    parser.add_argument(
        "--ffn-conv",
        type=int,
        default=0,
        help="a depthwise KxK convolution in every feed-forward; see `MixFFN`",
    )
    parser.add_argument(
        "--self-condition", action="store_true", help="self-conditioning; see `SelfConditioned`"
    )
    parser.add_argument(
        "--place",
        choices=("world", "centre", "grid", "lattice"),
        default="world",
        help="where sprites are; see `place`",
    )
    parser.add_argument("--lattice", type=int, default=2, help="places a side for --place lattice")
    parser.add_argument(
        "--snap",
        type=int,
        default=0,
        help="pixels of --place grid's grid (0: the codec's block); see `place`",
    )
    parser.add_argument(
        "--offset",
        type=float,
        nargs=2,
        default=[0.0, 0.0],
        help="pixels (across, down) to move every still sprite by after --place; see `place`",
    )
    parser.add_argument(
        "--radius", type=float, nargs=2, default=None, help="sprite radii, fractions of the frame"
    )
    parser.add_argument("--max-objects", type=int, default=None)
    parser.add_argument("--frames", type=int, default=12000, help="training frames (one per scene)")
    parser.add_argument(
        "--clip-frames",
        type=int,
        default=1,
        help="latent frames a training sample has: 1, single frames; T > 1, clips of the codec's "
        "1 + 4 (T - 1) rendered frames (then --frames counts clips), sampled and measured as clips",
    )
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8, help="samples per held-out prompt")
    parser.add_argument("--sample-steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument(
        "--from-real",
        type=float,
        nargs="*",
        default=[],
        help="noise levels (sigma) to also sample from the held-out real frames' noised latents",
    )
    parser.add_argument(
        "--from-disc",
        type=float,
        nargs="*",
        default=[],
        help="the same from the real frames with every sprite drawn as a circle; see `as_discs`",
    )
    parser.add_argument(
        "--predict-clean", action="store_true", help="the network outputs x0; see `CleanPrediction`"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the teacher trains and samples (cuda: a GPU's longer runs); frames are measured on the CPU",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from these weights (an earlier run's ema.pt), measured first",
    )
    parser.add_argument(
        "--refiner-steps", type=int, default=0, help="train a decoder refiner first (0: none); see `Refiner`"
    )
    args = parser.parse_args()
    if args.init is not None and not args.init.is_file():
        parser.error(f"--init: no file {args.init}; pass an earlier run's <out>/ema.pt")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    console = Console()

    overrides: dict[str, float] = {}
    if args.radius is not None:
        low, high = args.radius  # roaming sprites must still leave the frame whole: widen the margin
        overrides |= {
            "min_radius": low,
            "max_radius": high,
            "roam_margin": max(SpritesConfig().roam_margin, 2 * high),
        }
    if args.max_objects is not None:
        overrides["max_objects"] = args.max_objects
    world = SpritesConfig.model_validate(overrides)
    tokens = (world.height // args.block // args.patch[1], world.width // args.block // args.patch[2])
    if args.rope_period and args.rope_period <= max(tokens):
        parser.error(
            f"--rope-period: more than the token grid's side, {max(tokens)}; that side is --rope-cyclic"
        )
    if args.snap and (args.place != "grid" or args.block % args.snap):
        parser.error(f"--snap: with --place grid, a divisor of --block ({args.block}); got {args.snap}")
    if args.lattice < 1:
        parser.error(f"--lattice: at least 1 place a side, got {args.lattice}")
    offset = (args.offset[0], args.offset[1])
    if args.place == "world" and offset != (0.0, 0.0):
        parser.error("--offset moves still sprites: give it with --place centre, grid or lattice")
    device = torch.device(args.device)
    if args.clip_frames < 1 or (args.clip_frames > 1 and args.refiner_steps):
        parser.error("--clip-frames: at least 1, and 1 with --refiner-steps")
    if args.refiner_steps and device.type != "cpu":
        parser.error("--refiner-steps: the refiner trains on the CPU; leave --device out with it")
    if args.border and (not args.rope_cyclic or args.self_condition or args.place_embedding or args.ffn_conv):
        parser.error(
            "--border: with --rope-cyclic, and not with --self-condition, --place-embedding or --ffn-conv"
        )
    if args.predict_clean and args.self_condition:
        parser.error("--predict-clean and --self-condition: give one")
    if args.rope_period and args.rope_cyclic:
        parser.error("--rope-period and --rope-cyclic both set RoPE's image frequencies: give one")
    for flag, levels in (("--from-real", args.from_real), ("--from-disc", args.from_disc)):
        if not all(0 < sigma <= 1 for sigma in levels):
            parser.error(f"{flag}: noise levels must lie in (0, 1], got {levels}")
    spec = load_model(TEACHER, GeneratorSpec)
    transformer = spec.transformer.model_copy(
        update={
            "patch_size": tuple(args.patch),
            "num_layers": args.layers,
            "num_attention_heads": args.heads,
            "ffn_dim": args.ffn,
            "in_channels": spec.transformer.in_channels * (2 if args.self_condition else 1),
        }
    )
    codec = SpritesPCACodec(args.block, spec.codec.temporal_factor, spec.codec.latent_channels)
    text = ToyTextEncoder(spec.text_encoder.dim, spec.text_encoder.max_length, spec.text_encoder.seed)
    schedule = FlowMatchSchedule(shift=spec.sampler.timestep_shift)

    heldout = heldout_prompts(args.prompts, world)
    clip = codec.pixel_frames(args.clip_frames)  # rendered frames a sample decodes to

    def placed(seed: int) -> Scene:
        """The scene of `seed`, its sprites where `--place` says (a lattice spans the places the
        world draws for its largest sprites' centres)."""
        margin = world.max_radius * min(world.height, world.width)
        grid = args.snap or args.block
        return place(sample_scene(seed, world), args.place, grid, args.lattice, margin, offset)

    def held_out_frames(scene: Scene) -> np.ndarray:
        """The frames samples are measured against: every 10th of the clip, the first `--samples`;
        with clips, the first `--samples` clips of the scene's video, one after the other."""
        if args.clip_frames > 1:
            return render(scene, args.samples * clip)
        return render(scene, world.num_frames)[::10][: args.samples]

    def as_clips(frames: np.ndarray) -> np.ndarray:
        """A prompt's reference frames as the `--samples` clips (or frames) they are made of."""
        return frames.reshape(args.samples, clip, *frames.shape[1:]) if args.clip_frames > 1 else frames

    scenes = [placed(item.seed) for item in heldout]
    real = [held_out_frames(scene) for scene in scenes]
    if (args.from_real or args.from_disc) and args.clip_frames == 1 and args.samples > len(real[0]):
        parser.error(
            f"--from-real and --from-disc start one sample from each real frame: --samples must be at"
            f" most {len(real[0])}"
        )
    real_fidelity = mean_fidelity(real, scenes, world)  # the reference every measure is relative to
    starts: dict[str, Tensor] = {}  # the latents --from-real and --from-disc noise and sample from
    if args.from_real:
        starts["real"] = torch.cat([encode(codec, as_clips(frames)) for frames in real])
    if args.from_disc:
        starts["disc"] = torch.cat([encode(codec, as_clips(held_out_frames(as_discs(s)))) for s in scenes])
    train_scenes = [placed(clip_seed(TRAIN_BASE_SEED, i)) for i in range(args.frames)]
    frames = np.stack([render(s, clip) if args.clip_frames > 1 else render(s, 1)[0] for s in train_scenes])
    latents = torch.cat([encode(codec, frames[i : i + 500]) for i in range(0, args.frames, 500)])
    prompts = text.encode([scene.prompt for scene in train_scenes])
    null = text.encode([""])

    decoders: dict[str, Refiner | None] = {"": None}
    if args.refiner_steps:
        with Progress(console=console) as progress:
            decoders[" refined"] = train_refiner(codec, frames, latents, args.refiner_steps, progress)
        for sigma in (0.0, 0.2, 0.3, 0.5):
            noise = torch.Generator().manual_seed(1)
            noisy = [
                (z := encode(codec, clip)) + sigma * torch.randn(z.shape, generator=noise) for clip in real
            ]
            for name, through in decoders.items():
                measured = relative(
                    mean_fidelity([decode(codec, z, through) for z in noisy], scenes, world), real_fidelity
                )
                console.print(f"real latents + noise {sigma}, decoded{name or ' (PCA)'}: " + fmt(measured))

    model = CausalWanTransformer(**transformer.model_dump())
    # Wan's RoPE base, 10000, leaves a 32-channel head 5 frequencies per image axis, of which 2 turn
    # by more than 0.1 radian per step of an 8-position grid; a smaller base spreads them over it.
    model.rope = WanRotaryPosEmbed(
        transformer.attention_head_dim, model.patch, transformer.rope_max_seq_len, args.rope_theta
    )
    if args.dit_init:
        dit_init(model)
    if args.rope_period:
        cyclic_rope(model.rope, (args.rope_period, args.rope_period))
    if args.rope_cyclic:
        bordered = (tokens[0] + 2 * args.border, tokens[1] + 2 * args.border)
        cyclic_rope(model.rope, bordered)
        shape = (*latents.shape[1:3], bordered[0] * args.patch[1], bordered[1] * args.patch[2])
        error = shift_error(model, shape, spec.text_encoder.dim)
        console.print(
            f"cyclic RoPE: the flow of a shifted input differs from the shifted flow by {error:.1e}"
        )
    if args.ffn_conv:
        for block in model.blocks:
            block.ffn = MixFFN(block.ffn, tokens, args.ffn_conv)
    if args.place_embedding:
        model.patch_embedding = PlacedPatchEmbedding(model.patch_embedding, tokens)
    if args.init is not None:
        state = torch.load(args.init, weights_only=True)
        if args.place_embedding:  # weights trained without one start it at zero
            state.setdefault("patch_embedding.place", model.patch_embedding.place.detach().clone())
        model.load_state_dict(state)
    model.to(device)
    latents, prompts, null = latents.to(device), prompts.to(device), null.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    conditioned = SelfConditioned(model, schedule) if args.self_condition else None

    def flow_model(network: nn.Module) -> CausalWanTransformer:
        """The network as the loss and the sampler call it: bordered, then x-prediction."""
        if args.border:
            network = Bordered(network, args.border, (args.patch[1], args.patch[2]))
        if args.predict_clean:
            network = CleanPrediction(cast(CausalWanTransformer, network), schedule)
        return cast(CausalWanTransformer, network)

    flow_of, ema_flow = flow_model(model), flow_model(ema)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    generator = torch.Generator(device).manual_seed(0)
    curve: list[dict[str, float]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    console.print(
        f"{args.frames} frames, latents {tuple(latents.shape[1:])}, {sum(p.numel() for p in model.parameters())} "
        f"parameters, patch {args.patch}, {args.layers} layers; real frames' shape visibility "
        f"{real_fidelity['visible']:.3f}, named shape fits {real_fidelity['named_shape']:.2f}"
    )

    def sample(cond: Tensor, start: Tensor, grid: list[float]) -> Tensor:
        """The EMA's samples from `start` (noise, or noised latents at the grid's first timestep)."""
        negative = null.expand_as(cond)
        if args.self_condition:
            return SelfConditioned(ema, schedule).sample(cond, negative, start, grid, args.guidance)
        return ode_trajectory(
            ema_flow, cond, start, grid, [], causal=False, guidance_scale=args.guidance, negative_text=negative,
            schedule=schedule,
        )[:, -1]  # fmt: skip

    per_prompt = args.samples * clip  # decoded frames a prompt's samples give

    @torch.no_grad()
    def evaluate(step: int, minutes: float) -> None:
        cond = text.encode([scene.prompt for scene in scenes]).repeat_interleave(args.samples, 0).to(device)
        noise = torch.randn((len(cond), *latents.shape[1:]), generator=torch.Generator().manual_seed(123))
        noise = noise.to(device)
        sampled = sample(cond, noise, ode_grid(schedule, args.sample_steps, [])).cpu()
        row = {"step": step, "minutes": minutes}
        for name, through in decoders.items():
            pixels = decode(codec, sampled, through)
            videos = [pixels[i * per_prompt : (i + 1) * per_prompt] for i in range(len(scenes))]
            measured = relative(mean_fidelity(videos, scenes, world), real_fidelity)
            row |= {key + name: value for key, value in measured.items()}
            frame_grid(real, videos, args.out / f"grid{name.replace(' ', '_')}_{step:06d}.png")
        # SDEdit (Meng et al., ICLR 2022): at which noise level the shapes are lost (real); whether
        # the named shapes are drawn where the sprites are shown to be (disc)
        for name, levels in (("real", args.from_real), ("disc", args.from_disc)):
            for sigma in levels:
                start = sigma * schedule.num_train_timesteps
                grid = [start, *(t for t in ode_grid(schedule, args.sample_steps, []) if t < start)]
                noisy = (1 - sigma) * starts[name].to(device) + sigma * noise
                pixels = decode(codec, sample(cond, noisy, grid).cpu())
                videos = [pixels[i * per_prompt : (i + 1) * per_prompt] for i in range(len(scenes))]
                measured = relative(mean_fidelity(videos, scenes, world), real_fidelity)
                frame_grid(real, videos, args.out / f"grid_from_{name}_{sigma:g}_{step:06d}.png")
                row[f"shape from {name} at {sigma:g}"] = measured["shape / real"]
                if name == "disc":
                    row[f"fits from disc at {sigma:g}"] = measured["named shape fits"]
        curve.append(row)
        torch.save(ema.state_dict(), args.out / "ema.pt")
        header = "| " + " | ".join(curve[0]) + " |"
        lines = [header, "|" + "---:|" * len(curve[0])]
        lines += [
            "| " + " | ".join(f"{v:.2f}" if k != "step" else f"{v:.0f}" for k, v in entry.items()) + " |"
            for entry in curve
        ]
        (args.out / "curve.md").write_text("\n".join(lines) + "\n")
        console.print(lines[0], lines[-1], sep="\n")

    if args.init is not None:  # the curve starts where the weights do (`--steps 0` only measures them)
        evaluate(0, 0.0)
    training = 0.0  # seconds of training steps, evaluations left out
    with Progress(console=console) as progress:
        task = progress.add_task("training", total=args.steps)
        for step in range(1, args.steps + 1):
            started = time.perf_counter()
            index = torch.randint(0, args.frames, (args.batch,), generator=generator, device=device)
            x0, cond = latents[index], prompts[index].clone()
            cond[torch.rand(args.batch, generator=generator, device=device) < 0.1] = null
            draw = draw_flow_matching(x0, schedule, generator=generator, terminal_share=0.25)
            if conditioned is not None:
                loss = conditioned.loss(draw, x0, cond, generator)
            else:
                flow = flow_of(draw.noisy, draw.timestep, cond, causal=False).sample
                assert flow is not None
                loss = flow_matching_loss(flow, x0, draw.noise)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                for averaged, live in zip(ema.parameters(), model.parameters(), strict=True):
                    averaged.lerp_(live, 1 - args.ema)
            training += time.perf_counter() - started
            progress.update(task, advance=1, description=f"training (loss {loss.item():.3f})")
            if step % args.eval_every == 0 or step == args.steps:
                evaluate(step, training / 60)


if __name__ == "__main__":
    main()
