"""Training losses: flow matching, DMD, and the Video-Mirai foresight loss."""

from mirai_train.losses.dmd import cfg, dmd_gradient, dmd_loss, dmd_timesteps
from mirai_train.losses.flow_matching import (
    FlowMatchingDraw,
    draw_flow_matching,
    flow_matching_loss,
    timestep_weights,
)
from mirai_train.losses.foresight import (
    PairReplay,
    foresight_loss,
    fuse_window,
    layer_at_fraction,
    layer_fraction,
    official_layer_to_tap,
    supervised_blocks,
    teacher_targets,
)

__all__ = [
    "FlowMatchingDraw",
    "PairReplay",
    "cfg",
    "dmd_gradient",
    "dmd_loss",
    "dmd_timesteps",
    "draw_flow_matching",
    "flow_matching_loss",
    "foresight_loss",
    "fuse_window",
    "layer_at_fraction",
    "layer_fraction",
    "official_layer_to_tap",
    "supervised_blocks",
    "teacher_targets",
    "timestep_weights",
]
