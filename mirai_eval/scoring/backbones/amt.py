"""AMT-S, the frame interpolator of VBench's motion smoothness, written for batches of frame pairs.

AMT (All-pairs Multi-field Transforms) predicts the frame at time t between two frames: a
bidirectional all-pairs correlation of 1/8-resolution features guides a coarse-to-fine decoder
(1/16 -> full resolution) that refines two flows and a feature map per level, and the last level
emits several flow fields whose warps are blended by a small convolution. Parameter names follow
the official `amt-s.pth` (its `state_dict` entry), so that file loads unchanged. Every operation
is per sample, so a batch of pairs gives each pair's result as if it ran alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AmtConfig:
    """AMT-S's sizes (`cfgs/AMT-S.yaml` and the network's defaults)."""

    channels: tuple[int, int, int, int] = (20, 32, 44, 56)  # pyramid features at 1/2 .. 1/16
    skip_channels: int = 20  # side channels of the decoders' residual blocks
    correlation_dim: int = 84  # the correlation encoder's output
    corr_radius: int = 3
    corr_levels: int = 4
    num_flows: int = 3
    hidden_dim: int = 76
    flow_dim: int = 20
    corr_dim: int = 64
    fc_dim: int = 68

    @property
    def min_padded_side(self) -> int:
        """Below this the coarsest correlation level (1/8 pooled corr_levels - 1 times) is 1 px
        wide, and AMT's pixel-to-grid mapping divides by zero: every prediction is NaN."""
        return 16 * 2 ** (self.corr_levels - 1)


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by a scale factor (AMT resizes by factor, which fixes the sampling positions)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: sample `image` at pixel + flow (bilinear, border padding)."""
    b, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, -1, h, -1)
    ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, -1, -1, w)
    base = torch.cat([xs, ys], 1).to(image)
    shift = torch.cat([flow[:, :1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    grid = (base + shift).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _sample_pixels(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of `image` at pixel positions `points` [..., (x, y)], zero outside."""
    h, w = image.shape[-2:]
    x, y = points.split(1, dim=-1)
    grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
    return F.grid_sample(image, grid, align_corners=True)


def conv_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.PReLU(cout))


def _conv_pair(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(mid, cout, 3, padding=1)
    )


class _Bottleneck(nn.Module):
    """Bottleneck residual block with parameter-free instance normalisation."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        mid = cout // 4
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.InstanceNorm2d(cout)) if stride != 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(F.instance_norm(self.conv1(x)))
        y = F.relu(F.instance_norm(self.conv2(y)))
        y = F.relu(F.instance_norm(self.conv3(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class _CorrelationEncoder(nn.Module):
    """1/8-resolution features whose dot products form the all-pairs correlation."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3)
        self.layer1 = nn.Sequential(_Bottleneck(32, 32, 1), _Bottleneck(32, 32, 1))
        self.layer2 = nn.Sequential(_Bottleneck(32, 64, 2), _Bottleneck(64, 64, 1))
        self.layer3 = nn.Sequential(_Bottleneck(64, 96, 2), _Bottleneck(96, 96, 1))
        self.conv2 = nn.Conv2d(96, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.instance_norm(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class _Pyramid(nn.Module):
    """Context features at 1/2, 1/4, 1/8 and 1/16 resolution."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = len(channels)
        for level, (cin, cout) in enumerate(zip((3, *channels[:-1]), channels, strict=True), 1):
            self.add_module(
                f"pyramid{level}", nn.Sequential(conv_prelu(cin, cout, 3, 2), conv_prelu(cout, cout))
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level in range(1, self.levels + 1):
            x = getattr(self, f"pyramid{level}")(x)
            features.append(x)
        return features


class _SideResBlock(nn.Module):
    """Residual block whose last `side` channels get an extra convolution after each main one."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv1 = conv_prelu(channels, channels)
        self.conv2 = conv_prelu(side, side)
        self.conv3 = conv_prelu(channels, channels)
        self.conv4 = conv_prelu(side, side)
        self.conv5 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu = nn.PReLU(channels)

    def _with_side(self, x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        main, side = x.split([x.shape[1] - self.side, self.side], dim=1)
        return torch.cat([main, conv(side)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self._with_side(self.conv1(x), self.conv2))
        out = self.conv5(self._with_side(out, self.conv4))
        return self.prelu(x + out)


class _Decoder(nn.Module):
    """One coarse-to-fine step: convolution, side-channel residual block, 2x transposed convolution."""

    def __init__(self, cin: int, mid: int, cout: int, side: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(
            conv_prelu(cin, mid), _SideResBlock(mid, side), nn.ConvTranspose2d(mid, cout, 4, 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convblock(x)


class _UpdateBlock(nn.Module):
    """Residual update of the features and both flows from correlation look-ups, run at 1/8 resolution."""

    def __init__(self, config: AmtConfig, feature_dim: int, scale: int) -> None:
        super().__init__()
        self.scale = scale  # the features' resolution relative to 1/8
        planes = 2 * config.corr_levels * (2 * config.corr_radius + 1) ** 2
        self.convc1 = nn.Conv2d(planes, config.corr_dim, 1)
        self.convf1 = nn.Conv2d(4, 2 * config.flow_dim, 7, padding=3)
        self.convf2 = nn.Conv2d(2 * config.flow_dim, config.flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(config.corr_dim + config.flow_dim, config.fc_dim, 3, padding=1)
        self.gru = _conv_pair(config.fc_dim + 4 + feature_dim, config.hidden_dim, config.hidden_dim)
        self.feat_head = _conv_pair(config.hidden_dim, config.hidden_dim, feature_dim)
        self.flow_head = _conv_pair(config.hidden_dim, config.hidden_dim, 4)

    def forward(
        self, features: torch.Tensor, flows: torch.Tensor, corr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scale != 1:
            features = resize(features, 1 / self.scale)
        motion = F.leaky_relu(self.convc1(corr), 0.1)
        flow_code = F.leaky_relu(self.convf2(F.leaky_relu(self.convf1(flows), 0.1)), 0.1)
        motion = F.leaky_relu(self.conv(torch.cat([motion, flow_code], 1)), 0.1)
        hidden = self.gru(torch.cat([motion, flows, features], 1))
        delta_features, delta_flows = self.feat_head(hidden), self.flow_head(hidden)
        if self.scale != 1:
            delta_features = resize(delta_features, self.scale)
            delta_flows = self.scale * resize(delta_flows, self.scale)
        return delta_features, delta_flows


class _Correlation:
    """All-pairs correlation of two feature maps in both directions, with its average-pooled levels."""

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor, levels: int, radius: int) -> None:
        b, c, h, w = fmap0.shape
        corr = torch.matmul(fmap0.flatten(2).transpose(1, 2), fmap1.flatten(2)) / math.sqrt(c)
        self.radius = radius
        self.forward_levels = [corr.reshape(b * h * w, 1, h, w)]
        self.backward_levels = [corr.transpose(1, 2).reshape(b * h * w, 1, h, w)]
        for _ in range(levels - 1):
            self.forward_levels.append(F.avg_pool2d(self.forward_levels[-1], 2, stride=2))
            self.backward_levels.append(F.avg_pool2d(self.backward_levels[-1], 2, stride=2))

    def _lookup(self, levels: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        b, _, h, w = coords.shape
        offsets = torch.arange(-self.radius, self.radius + 1, dtype=coords.dtype, device=coords.device)
        # The window's first axis steps x and its second y; the channel order depends on it.
        dx, dy = torch.meshgrid(offsets, offsets, indexing="ij")
        window = torch.stack([dx, dy], dim=-1)[None]
        centres = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        sampled = [
            _sample_pixels(corr, centres / 2**level + window).view(b, h, w, -1)
            for level, corr in enumerate(levels)
        ]
        return torch.cat(sampled, dim=-1).permute(0, 3, 1, 2)

    def __call__(self, coords0: torch.Tensor, coords1: torch.Tensor) -> torch.Tensor:
        """Correlations around `coords0` in frame 1's map and around `coords1` in frame 0's map."""
        return torch.cat(
            [self._lookup(self.forward_levels, coords0), self._lookup(self.backward_levels, coords1)], 1
        )


class AmtS(nn.Module):
    """AMT-S: forward(img0, img1) -> the frame halfway between them (or at `time`)."""

    def __init__(self, config: AmtConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AmtConfig()
        c, side, n = config.channels, config.skip_channels, config.num_flows
        self.feat_encoder = _CorrelationEncoder(config.correlation_dim)
        self.encoder = _Pyramid(c)
        self.decoder4 = _Decoder(2 * c[3] + 1, 2 * c[3], c[2] + 4, side)
        self.decoder3 = _Decoder(3 * c[2] + 4, 3 * c[2], c[1] + 4, side)
        self.decoder2 = _Decoder(3 * c[1] + 4, 3 * c[1], c[0] + 4, side)
        self.decoder1 = _Decoder(3 * c[0] + 4, 3 * c[0], 8 * n, side)
        self.update4 = _UpdateBlock(config, c[2], 1)
        self.update3 = _UpdateBlock(config, c[1], 2)
        self.update2 = _UpdateBlock(config, c[0], 4)
        self.comb_block = nn.Sequential(
            nn.Conv2d(3 * n, 6 * n, 3, 1, 1), nn.PReLU(6 * n), nn.Conv2d(6 * n, 3, 3, 1, 1)
        )

    def _refine(
        self,
        update: _UpdateBlock,
        corr: _Correlation,
        coords: torch.Tensor,
        flows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        time: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Look both flows up in the correlation (scaled from t to the full interval) and update."""
        flow0, flow1, features = flows
        small0, small1 = flow0, flow1
        if update.scale != 1:
            small0 = (1 / update.scale) * resize(flow0, 1 / update.scale)
            small1 = (1 / update.scale) * resize(flow1, 1 / update.scale)
        looked_up = corr(coords + small1 * (1.0 / time), coords + small0 * (1.0 / (1.0 - time)))
        delta_features, delta_flows = update(features, torch.cat([small0, small1], 1), looked_up)
        return flow0 + delta_flows[:, :2], flow1 + delta_flows[:, 2:4], features + delta_features

    @staticmethod
    def _upsample(
        decoder: _Decoder, inputs: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = decoder(inputs)
        flow0 = out[:, :2] + 2.0 * resize(flow0, 2.0)
        flow1 = out[:, 2:4] + 2.0 * resize(flow1, 2.0)
        return flow0, flow1, out[:, 4:]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, time: float = 0.5) -> torch.Tensor:
        """img0, img1 [B, 3, H, W] in [0, 1], H and W multiples of 16 -> the frame at `time`, in [0, 1]."""
        config, n = self.config, self.config.num_flows
        mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean, img1 - mean
        b, _, h, w = img0.shape
        t = torch.full((b, 1, 1, 1), time, dtype=img0.dtype, device=img0.device)
        ys, xs = torch.meshgrid(
            torch.arange(h // 8, device=img0.device), torch.arange(w // 8, device=img0.device), indexing="ij"
        )
        coords = torch.stack([xs, ys]).float()[None]
        fmap0, fmap1 = self.feat_encoder(torch.cat([img0, img1])).chunk(2)
        corr = _Correlation(fmap0, fmap1, config.corr_levels, config.corr_radius)
        pyramid = [level.chunk(2) for level in self.encoder(torch.cat([img0, img1]))]

        (f0, f1) = pyramid[3]
        out = self.decoder4(torch.cat([f0, f1, t.expand(-1, 1, *f0.shape[2:])], 1))
        flows = self._refine(self.update4, corr, coords, (out[:, :2], out[:, 2:4], out[:, 4:]), t)
        for level, decoder, update in ((2, self.decoder3, self.update3), (1, self.decoder2, self.update2)):
            f0, f1 = pyramid[level]
            flow0, flow1, features = flows
            inputs = torch.cat([features, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1)
            flows = self._refine(update, corr, coords, self._upsample(decoder, inputs, flow0, flow1), t)

        f0, f1 = pyramid[0]
        flow0, flow1, features = flows
        out = self.decoder1(torch.cat([features, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        delta0, delta1, mask, residual = out.split([2 * n, 2 * n, n, 3 * n], 1)
        flows0 = (delta0 + 2.0 * resize(flow0, 2.0).repeat(1, n, 1, 1)).reshape(b * n, 2, h, w)
        flows1 = (delta1 + 2.0 * resize(flow1, 2.0).repeat(1, n, 1, 1)).reshape(b * n, 2, h, w)
        mask = torch.sigmoid(mask).reshape(b * n, 1, h, w)
        warped0 = warp(img0.repeat_interleave(n, 0), flows0)
        warped1 = warp(img1.repeat_interleave(n, 0), flows1)
        candidates = mask * warped0 + (1 - mask) * warped1 + mean.repeat_interleave(n, 0)
        candidates = (candidates + residual.reshape(b * n, 3, h, w)).view(b, n, 3, h, w)
        blended = candidates.mean(1) + self.comb_block(candidates.view(b, 3 * n, h, w))
        return blended.clamp(0, 1)


class _Inert:
    """Stands in for a checkpoint's non-tensor training metadata; runs no code of the original class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def read_amt_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` entry of an AMT checkpoint, loaded without unpickling arbitrary objects.

    AMT's trainer also saves the epoch and optimizer state, and vbench loads the released file with
    `weights_only=False` since torch 2.6, so it may hold objects outside torch's weights-only
    allowlist: each such global becomes an inert stand-in instead of running its code.
    """
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    with torch.serialization.safe_globals([(_Inert, name) for name in unsafe]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_amt(path: str | Path | None, config: AmtConfig | None = None) -> AmtS:
    """AMT-S with the weights of an official `amt-s.pth` (random if path is None)."""
    model = AmtS(config)
    if path is not None:
        model.load_state_dict(read_amt_state(path))
    return model.eval()
