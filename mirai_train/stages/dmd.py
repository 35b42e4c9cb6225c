"""Self-Forcing DMD, with the Video-Mirai foresight loss as an option.

Every step trains the critic (the fake score: flow matching on the generator's own rollouts);
every `dfake_gen_update_ratio`-th step also trains the generator: it rolls out the whole clip
with the inference cache (gradients only at one exit step, drawn uniformly for each rollout and
shared by its blocks and by all ranks), and follows the DMD gradient between the real score (the
frozen teacher, with classifier-free guidance) and the fake score at a random noise level.

With `foresight:`, the same rollout also yields the student's tokens after block
`foresight_student_layer` at each block's exit step; the frozen teacher reads the finished clean
rollout (future blocks included) and its tokens after `foresight_teacher_layer`, averaged over the
window Delta, are the targets; a predictor maps the student's tokens to them (1 - cos). The
predictor has its own optimiser and, on critic-only steps, replays the last generator step's pairs.
Encoder (the teacher) and predictor are dropped at export.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mirai_train.losses import (
    PairReplay,
    cfg,
    dmd_gradient,
    dmd_loss,
    dmd_timesteps,
    draw_flow_matching,
    flow_matching_loss,
    foresight_loss,
    fuse_window,
    official_layer_to_tap,
    teacher_targets,
)
from mirai_train.models.predictor import ForesightPredictor
from mirai_train.sampling import FlowMatchSchedule, RolloutConfig, denoising_steps, rollout
from mirai_train.stages.base import Context, adamw, optimizer_step
from mirai_train.stages.common import frozen, require_same, trained_model

# `Context.generator(step, purpose)` purposes of the exit-step draws: the generator update's rollout
# of micro-batch m draws with EXIT_DRAWS + m, the critic's with EXIT_DRAWS + CRITIC_ROLLOUTS + m
# (micro-batches per step < 100, as `Context.micro_generator` requires).
EXIT_DRAWS, CRITIC_ROLLOUTS = 1, 100


class DMDStage:
    generator_name = "generator"

    def __init__(self, ctx: Context) -> None:
        recipe, self.ctx = ctx.recipe, ctx
        assert recipe.dmd is not None and recipe.teacher is not None and recipe.init is not None
        self.dmd = recipe.dmd
        self.generator = ctx.parallel(trained_model(ctx).train())
        teacher_spec, teacher = ctx.load(recipe.teacher, role="teacher")
        require_same(teacher_spec, recipe.generator, recipe.teacher)
        # sharded too: the 14B real score is the largest model, and every rank runs it in lockstep
        self.real = ctx.parallel(frozen(teacher))
        critic_spec, critic = ctx.load(recipe.critic or recipe.init, role="critic")
        require_same(critic_spec, recipe.generator, recipe.critic or recipe.init)
        self.critic = ctx.parallel(critic.train())
        optim = recipe.optim
        self.modules: dict[str, nn.Module] = {"generator": self.generator, "critic": self.critic}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generator": adamw(self.generator.parameters(), optim.lr, recipe),
            "critic": adamw(self.critic.parameters(), optim.lr_critic, recipe),
        }
        sampler = recipe.generator.sampler
        self.schedule = FlowMatchSchedule(sampler.timestep_shift, sampler.num_train_timesteps)
        self.num_steps = len(denoising_steps(sampler))
        codec, video = ctx.data.codec, recipe.generator.video
        self.rollout_config = RolloutConfig(
            num_frames=codec.latent_frames(recipe.data.num_frames),
            latent_channels=codec.latent_channels,
            latent_height=video.height // codec.spatial_factor,
            latent_width=video.width // codec.spatial_factor,
            sampler=sampler.model_copy(update={"guidance_scale": 1.0}),  # the generator is guidance-free
        )
        self.negative = ctx.data.text_encoder.encode([self.dmd.negative_prompt]).to(ctx.device)
        self.foresight = recipe.foresight
        self.replay = PairReplay()
        if self.foresight is not None:
            with torch.random.fork_rng():  # the projection's init is part of the recipe, not of global state
                torch.manual_seed(optim.seed)
                self.predictor = ForesightPredictor(
                    dim=self.generator.hidden_dim,
                    teacher_dim=self.real.hidden_dim,
                    num_heads=self.generator.num_heads,
                    depth=self.foresight.predictor_depth,
                ).to(ctx.device)
            self.predictor = ctx.parallel(self.predictor)
            self.modules["predictor"] = self.predictor
            self.optimizers["predictor"] = adamw(self.predictor.parameters(), optim.lr_foresight, recipe)
            self.student_tap = official_layer_to_tap(self.foresight.foresight_student_layer)

    def _exit_step(self, step: int, rollout_index: int) -> int:
        """The gradient-truncation exit step of one rollout, drawn afresh for each (the release draws
        it in every `_run_generator` call) and shared by its blocks and by every rank (drawn from the
        step's common generator, as the release broadcasts rank 0's draw)."""
        if self.dmd.last_step_only:
            return self.num_steps - 1
        generator = self.ctx.generator(step, EXIT_DRAWS + rollout_index)
        return int(torch.randint(0, self.num_steps, (1,), generator=generator).item())

    def _real_x0(self, noisy: Tensor, timestep: Tensor, text: Tensor) -> Tensor:
        negative = self.negative.expand(len(text), -1, -1)
        cond = self.real(noisy, timestep, text, causal=False).sample
        uncond = self.real(noisy, timestep, negative, causal=False).sample
        assert cond is not None and uncond is not None
        return self.schedule.flow_to_x0(cfg(cond, uncond, self.dmd.guidance_scale), noisy, timestep)

    def _fake_x0(self, noisy: Tensor, timestep: Tensor, text: Tensor) -> Tensor:
        flow = self.critic(noisy, timestep, text, causal=False).sample
        assert flow is not None
        return self.schedule.flow_to_x0(flow, noisy, timestep)

    def _dmd_timestep(self, batch: int, generator: torch.Generator) -> Tensor:
        return dmd_timesteps(
            batch, schedule=self.schedule, min_step=self.dmd.min_step, max_step=self.dmd.max_step,
            generator=generator, device=self.ctx.device,
        )  # fmt: skip

    def _generator_step(self, step: int) -> dict[str, float]:
        optim, foresight = self.ctx.recipe.optim, self.foresight
        accumulation = optim.gradient_accumulation_steps
        self.replay.clear()
        logs = {"dmd_loss": 0.0, "foresight_loss": 0.0}
        for micro in range(accumulation):
            batch = self.ctx.data.batch(step, micro, with_video=False)
            generator = self.ctx.micro_generator(step, micro)
            exit_step = self._exit_step(step, micro)
            logs["exit_step"] = logs.get("exit_step", 0.0) + exit_step / accumulation
            out = rollout(
                self.generator, batch.text, self.rollout_config, generator=generator, exit_step=exit_step,
                tap_layer=self.student_tap if foresight is not None else None,
            )  # fmt: skip
            x0 = out.latents
            timestep = self._dmd_timestep(len(x0), generator)
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            noisy = self.schedule.add_noise(x0.detach(), noise, timestep)
            with torch.no_grad():
                grad = dmd_gradient(
                    x0, self._real_x0(noisy, timestep, batch.text), self._fake_x0(noisy, timestep, batch.text)
                )
            loss = dmd_loss(x0, grad)
            logs["dmd_loss"] += float(loss.detach()) / accumulation
            if foresight is not None:
                targets = teacher_targets(
                    self.real, x0.detach(), batch.text, teacher_layer=foresight.foresight_teacher_layer,
                    block_frames=self.generator.num_frame_per_block,
                )  # fmt: skip
                fused = fuse_window(targets, foresight.foresight_deltas)
                hidden = torch.stack(out.taps, dim=1)[:, : fused.shape[1]]  # [B, blocks, N, D]
                f_loss = foresight_loss(self.predictor(hidden), fused)
                loss = loss + foresight.foresight_weight * f_loss
                logs["foresight_loss"] += float(f_loss.detach()) / accumulation
                if foresight.replay:
                    self.replay.add(hidden, fused)
            (loss / accumulation).backward()
        logs["generator_grad_norm"] = optimizer_step(
            self.generator, self.optimizers["generator"], optim.grad_clip
        )
        if foresight is not None:
            logs["predictor_grad_norm"] = optimizer_step(
                self.predictor, self.optimizers["predictor"], optim.grad_clip
            )
        return logs

    def _critic_step(self, step: int) -> dict[str, float]:
        optim = self.ctx.recipe.optim
        accumulation = optim.gradient_accumulation_steps
        total = 0.0
        for micro in range(accumulation):
            batch = self.ctx.data.batch(step, micro, with_video=False)
            generator = self.ctx.micro_generator(step, micro, stream=1)
            exit_step = self._exit_step(step, CRITIC_ROLLOUTS + micro)
            with torch.no_grad():
                x0 = rollout(
                    self.generator, batch.text, self.rollout_config, generator=generator, exit_step=exit_step
                ).latents
            timestep = self._dmd_timestep(len(x0), generator)
            draw = draw_flow_matching(x0, self.schedule, timestep=timestep, generator=generator)
            flow = self.critic(draw.noisy, draw.timestep, batch.text, causal=False).sample
            assert flow is not None
            loss = flow_matching_loss(flow, x0, draw.noise) / accumulation
            loss.backward()
            total += float(loss.detach())
        norm = optimizer_step(self.critic, self.optimizers["critic"], optim.grad_clip)
        return {"critic_loss": total, "critic_grad_norm": norm}

    def step(self, step: int) -> dict[str, float]:
        logs: dict[str, float] = {"generator_updated": 0.0}
        if step % self.dmd.dfake_gen_update_ratio == 0:
            logs |= self._generator_step(step)  # logs the mean exit step of its rollouts
            logs["generator_updated"] = 1.0
        elif self.foresight is not None and len(self.replay):
            logs["replay_loss"] = self.replay.backward(self.predictor, self.foresight.foresight_weight)
            optimizer_step(self.predictor, self.optimizers["predictor"], self.ctx.recipe.optim.grad_clip)
        return logs | self._critic_step(step)

    def extra_state(self) -> dict[str, Any]:
        return {"replay": list(self.replay)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.replay.clear()
        for hidden, target in state.get("replay", []):
            self.replay.add(hidden, target)
