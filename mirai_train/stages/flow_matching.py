"""Flow-matching stages: the toy bidirectional teacher and Causal-Forcing's AR teacher forcing.

`teacher`: every frame sees every frame, one noise level per clip (the wan scale starts from
pretrained Wan instead). `ar_teacher_forcing` (Causal-Forcing stage 1): every block has its own
noise level and sees the clean earlier blocks, in one forward (`clean_context`); each frame's loss
is weighted by its timestep, as Causal-Forcing's.
"""

from __future__ import annotations

import torch
from torch import nn

from mirai_train.losses import draw_flow_matching, flow_matching_loss, timestep_weights
from mirai_train.recipe import TeacherForcingSpec
from mirai_train.sampling import FlowMatchSchedule
from mirai_train.stages.base import Context, adamw, optimizer_step
from mirai_train.stages.common import trained_model


class FlowMatchingStage:
    generator_name = "generator"

    def __init__(self, ctx: Context) -> None:
        recipe = ctx.recipe
        self.ctx = ctx
        self.teacher_forcing = recipe.stage == "ar_teacher_forcing"
        section = recipe.teacher_forcing if self.teacher_forcing else recipe.pretrain
        assert section is not None  # the recipe validator requires it
        self.text_dropout = section.text_dropout  # empty prompts, so classifier-free guidance works later
        self.terminal_share = section.terminal_share
        self.weighted = isinstance(section, TeacherForcingSpec) and section.timestep_weighting
        self.model = ctx.parallel(trained_model(ctx).train())
        self.modules: dict[str, nn.Module] = {"generator": self.model}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generator": adamw(self.model.parameters(), recipe.optim.lr, recipe)
        }
        self.schedule = FlowMatchSchedule(recipe.generator.sampler.timestep_shift)
        self.empty = ctx.data.text_encoder.encode([""]).to(ctx.device)

    def step(self, step: int) -> dict[str, float]:
        accumulation = self.ctx.recipe.optim.gradient_accumulation_steps
        block_frames = self.model.num_frame_per_block if self.teacher_forcing else None
        total = 0.0
        for micro in range(accumulation):
            batch = self.ctx.data.batch(step, micro)
            if batch.latents is None:
                raise ValueError("flow-matching stages train on videos: set data.kind: sprites or latents")
            generator = self.ctx.micro_generator(step, micro)
            drop = (
                torch.rand(len(batch.prompts), generator=generator, device=self.ctx.device)
                < self.text_dropout
            )
            text = torch.where(drop[:, None, None], self.empty, batch.text)
            draw = draw_flow_matching(
                batch.latents, self.schedule, block_frames=block_frames, generator=generator,
                terminal_share=self.terminal_share,
            )  # fmt: skip
            if self.teacher_forcing:
                flow = self.model(draw.noisy, draw.timestep, text, clean_context=batch.latents).sample
            else:
                flow = self.model(draw.noisy, draw.timestep, text, causal=False).sample
            assert flow is not None
            weight = None
            if self.weighted:  # draw.timestep is [B, F] under teacher forcing
                weight = timestep_weights(draw.timestep, self.schedule)
            loss = flow_matching_loss(flow, batch.latents, draw.noise, weight) / accumulation
            loss.backward()
            total += float(loss.detach())
        norm = optimizer_step(self.model, self.optimizers["generator"], self.ctx.recipe.optim.grad_clip)
        return {"loss": total, "grad_norm": norm, "generator_updated": 1.0}
