"""Training stages, by the recipe's `stage:` key (the papers' pipeline, in order):

teacher             toy only: bidirectional flow-matching teacher on sprites (wan: pretrained Wan)
ode_init            Self-Forcing warm start: regress the causal student on teacher ODE trajectories
ar_teacher_forcing  Causal-Forcing stage 1: AR diffusion with clean context (teacher forcing)
causal_ode          Causal-Forcing stage 2: ODE regression on the AR teacher's teacher-forced trajectories
dmd                 Self-Forcing DMD on the student's own rollout, optionally with the foresight loss

Every stage stands on `base.py` (`Context`, `Stage`, the optimiser helpers); the trainer stands on
this registry. The arrows point one way: trainer -> stages -> base.
"""

from __future__ import annotations

from collections.abc import Callable

from mirai_train.stages.base import Context, Stage
from mirai_train.stages.dmd import DMDStage
from mirai_train.stages.flow_matching import FlowMatchingStage
from mirai_train.stages.ode import ODEStage

STAGES: dict[str, Callable[[Context], Stage]] = {
    "teacher": FlowMatchingStage,
    "ode_init": ODEStage,
    "ar_teacher_forcing": FlowMatchingStage,
    "causal_ode": ODEStage,
    "dmd": DMDStage,
}
