"""RAFT (raft-things) optical flow through torchvision's RAFT, loading the original checkpoint.

VBench's dynamic degree runs the original RAFT code on `raft-things.pth`. torchvision's
`raft_large` is the same network under other parameter names; `convert_raft_state_dict` renames
the original keys so the very same file loads, and `RaftFlow` reproduces the original input
handling (replicate padding to a multiple of 8, centred; pixels mapped to [-1, 1]).

Both the original code and torchvision's forward predict an upsampling mask and upsample the flow
after every one of the 20 refinements, though only the last flow is used: about 14% of a
pair's time at 480x832. `RaftFlow` runs the same refinements and upsamples once, at the end, so
its flow is the last of torchvision's, bit for bit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.optical_flow import RAFT, raft_large
from torchvision.models.optical_flow.raft import make_coords_grid, upsample_flow

_RENAMES = [
    (r"^fnet\.", "feature_encoder."),
    (r"^cnet\.", "context_encoder."),
    (r"_encoder\.conv1\.", "_encoder.convnormrelu.0."),
    (r"_encoder\.norm1\.", "_encoder.convnormrelu.1."),
    (r"_encoder\.conv2\.", "_encoder.conv."),
    (r"(layer\d\.\d)\.conv([12])\.", r"\1.convnormrelu\2.0."),
    (r"(layer\d\.\d)\.norm([12])\.", r"\1.convnormrelu\2.1."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])(\d)\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
]


def convert_raft_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original RAFT (princeton-vl) keys -> torchvision keys. `norm3` duplicates `downsample.1`."""
    converted = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if re.search(r"layer\d\.\d\.norm3\.", key):
            continue
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


def load_raft(path: str | None) -> RAFT:
    """torchvision RAFT-large with the weights of an original `raft-things.pth` (random if path is None)."""
    model = raft_large(weights=None, progress=False)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(convert_raft_state_dict(state))
    return model.eval()


class RaftFlow(nn.Module):
    """Flow between frame pairs given as float pixels in [0, 255], at the padded size as VBench keeps it."""

    def __init__(self, raft: RAFT, iterations: int = 20) -> None:
        super().__init__()
        self.raft = raft
        self.iterations = iterations

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        height, width = first.shape[-2:]
        pad_h, pad_w = (-height) % 8, (-width) % 8
        padding = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]
        first = F.pad(first, padding, mode="replicate") / 127.5 - 1.0
        second = F.pad(second, padding, mode="replicate") / 127.5 - 1.0
        return self.final_flow(first, second)

    def final_flow(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """torchvision's `RAFT.forward` step for step, keeping only the last refinement's flow."""
        raft = self.raft
        features = raft.feature_encoder(torch.cat([first, second], dim=0))
        raft.corr_block.build_pyramid(*torch.chunk(features, chunks=2, dim=0))
        hidden_size = raft.update_block.hidden_state_size
        context_out = raft.context_encoder(first)
        hidden, context = torch.split(context_out, [hidden_size, context_out.shape[1] - hidden_size], dim=1)
        hidden, context = torch.tanh(hidden), F.relu(context)
        batch, _, rows, columns = hidden.shape
        coords0 = make_coords_grid(batch, rows, columns).to(first.device)
        coords1 = coords0.clone()
        for _ in range(self.iterations):
            correlation = raft.corr_block.index_pyramid(centroids_coords=coords1)
            hidden, delta = raft.update_block(hidden, context, correlation, coords1 - coords0)
            coords1 = coords1 + delta
        return upsample_flow(flow=coords1 - coords0, up_mask=raft.mask_predictor(hidden))
