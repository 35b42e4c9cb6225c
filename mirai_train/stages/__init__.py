"""Training stages, by the recipe's `stage:` key (the papers' pipeline, in order):

teacher             toy only: bidirectional flow-matching teacher on sprites (wan: pretrained Wan)
ode_init            Self-Forcing warm start: regress the causal student on teacher ODE trajectories
ar_teacher_forcing  Causal-Forcing stage 1: AR diffusion with clean context (teacher forcing)
causal_ode          Causal-Forcing stage 2: ODE regression on the AR teacher's causal trajectories
dmd                 Self-Forcing DMD on the student's own rollout, optionally with the foresight loss
"""

from __future__ import annotations

from collections.abc import Callable

from mirai_train.stages.dmd import DMDStage
from mirai_train.stages.flow_matching import FlowMatchingStage
from mirai_train.stages.ode import ODEStage
from mirai_train.trainer import Context, Stage

STAGES: dict[str, Callable[[Context], Stage]] = {
    "teacher": FlowMatchingStage,
    "ode_init": ODEStage,
    "ar_teacher_forcing": FlowMatchingStage,
    "causal_ode": ODEStage,
    "dmd": DMDStage,
}
