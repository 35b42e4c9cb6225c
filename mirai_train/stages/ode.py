"""ODE regression: the causal student learns to jump from the teacher's trajectory to its end.

`ode_init` (Self-Forcing's warm start) takes trajectories of the bidirectional teacher. A step
gives every block of a clip a random one of the student's denoising steps; the student,
block-causally, predicts x0 from the noisy clip, and the loss is the MSE to the trajectory's end.

`causal_ode` (Causal-Forcing stage 2) takes them from the AR teacher of stage 1, teacher-forced on
the ground-truth clean latents of a training clip: every frame is denoised at once, each block
seeing the clean frames of the blocks before it (get_causal_ode_data_*.py, `clean_x`). A step
gives the whole clip one of the student's steps, and the student sees the same clean context
(model/ode_regression.py's `uniform_timestep` and `clean_x`).

Each trajectory is kept at the student's own denoising steps plus the teacher's end (and, for
`causal_ode`, the clean clip). The pool is sampled once per rank (rank r holds global indices r,
r + n, ...) and kept in host memory, saved in the run directory, and reused when the run resumes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from rich.progress import track
from torch import nn

from mirai_train.sampling import FlowMatchSchedule, denoising_steps, ode_grid, ode_trajectory
from mirai_train.stages.base import Context, adamw, optimizer_step
from mirai_train.stages.common import frozen, require_same, trained_model

TRAJECTORY_NOISE = 999  # a generator purpose of its own: trajectory i's noise, whatever the step


class ODEStage:
    generator_name = "generator"

    def __init__(self, ctx: Context) -> None:
        recipe, self.ctx = ctx.recipe, ctx
        assert recipe.ode is not None and recipe.teacher is not None  # the recipe validator requires them
        self.model = ctx.parallel(trained_model(ctx).train())
        self.modules: dict[str, nn.Module] = {"generator": self.model}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generator": adamw(self.model.parameters(), recipe.optim.lr, recipe)
        }
        sampler = recipe.generator.sampler
        self.schedule = FlowMatchSchedule(sampler.timestep_shift, sampler.num_train_timesteps)
        self.steps = denoising_steps(sampler)
        self.indices = list(range(ctx.rank, recipe.ode.num_trajectories, ctx.world_size))
        if not self.indices:
            raise ValueError(
                f"ode.num_trajectories={recipe.ode.num_trajectories} leaves rank {ctx.rank} none"
            )
        self.teacher_forced = recipe.stage == "causal_ode"
        path = ctx.out / f"trajectories-rank{ctx.rank}.pt"
        if path.exists():
            pool = torch.load(path)  # in host memory: a pool of real size outgrows a GPU's
        else:
            pool = self._sample_pool()
            torch.save(pool, path)
        kept = len(self.steps) + (2 if self.teacher_forced else 1)
        if pool["states"].shape[1] != kept:
            raise ValueError(
                f"{path}: holds {pool['states'].shape[1]} states a trajectory, where {recipe.stage} keeps "
                f"{kept}; it was sampled by other code or another sampler: delete it to sample the pool again"
            )
        self.prompts: list[str] = pool["prompts"]
        # [n, states, C, F, H, W] in float16: the student's steps, the teacher's end, [the clean clip]
        self.states: torch.Tensor = pool["states"]

    def _sample_pool(self) -> dict[str, object]:
        """Teacher trajectories of this rank's clips: the student's steps, the teacher's end and, when
        teacher-forced, the clean clip it was forced on."""
        ctx, recipe = self.ctx, self.ctx.recipe
        assert recipe.ode is not None and recipe.teacher is not None
        teacher_spec, teacher = ctx.load(recipe.teacher, role="teacher")
        require_same(teacher_spec, recipe.generator, recipe.teacher)
        teacher = frozen(teacher)  # whole on every rank: ranks sample their own pools, not in lockstep
        grid = ode_grid(self.schedule, recipe.ode.teacher_steps, self.steps)
        encoder, data = ctx.data.text_encoder, ctx.data
        negative = encoder.encode([recipe.ode.negative_prompt]).to(ctx.device)
        video, codec = recipe.generator.video, data.codec
        frames = codec.latent_frames(recipe.data.num_frames)
        shape = (
            1,
            codec.latent_channels,
            frames,
            video.height // codec.spatial_factor,
            video.width // codec.spatial_factor,
        )
        prompts, states = [], []
        for index in track(
            self.indices, description=f"{recipe.stage}: teacher trajectories", disable=ctx.rank != 0
        ):
            prompt = data.prompt(index)
            noise = torch.randn(shape, generator=ctx.generator(index, TRAJECTORY_NOISE), device=ctx.device)
            text = encoder.encode([prompt]).to(ctx.device)
            clean = data.clean_latents([index]) if self.teacher_forced else None
            trajectory = ode_trajectory(
                teacher, text, noise, grid, self.steps, causal=self.teacher_forced, clean_context=clean,
                guidance_scale=recipe.ode.guidance_scale, negative_text=negative, schedule=self.schedule,
            )  # fmt: skip
            if clean is not None:
                trajectory = torch.cat([trajectory, clean[:, None]], dim=1)
            prompts.append(prompt)
            states.append(trajectory[0].half().cpu())
        return {"prompts": prompts, "states": torch.stack(states)}

    def step(self, step: int) -> dict[str, float]:
        recipe = self.ctx.recipe
        accumulation, batch_size = recipe.optim.gradient_accumulation_steps, recipe.optim.batch_size
        block = self.model.num_frame_per_block
        steps = torch.tensor(self.steps, device=self.ctx.device)
        total = 0.0
        for micro in range(accumulation):
            first = (step * accumulation + micro) * batch_size
            pick = [(first + j) % len(self.indices) for j in range(batch_size)]
            states = self.states[pick].to(self.ctx.device).float()  # [B, states, C, F, H, W]
            target = states[:, len(self.steps)]  # the teacher's end
            batch, _, frames = target.shape[:3]
            generator = self.ctx.micro_generator(step, micro)
            blocks = 1 if self.teacher_forced else frames // block  # one step for the clip, or a block
            level = torch.randint(
                0, len(self.steps), (batch, blocks), generator=generator, device=self.ctx.device
            )
            level = level.repeat_interleave(frames // blocks, dim=1)  # [B, F]
            noisy = states[
                torch.arange(batch)[:, None], level, :, torch.arange(frames)[None, :]
            ]  # [B, F, C, H, W]
            noisy = noisy.permute(0, 2, 1, 3, 4)
            timestep = steps[level]
            text = self.ctx.data.text_encoder.encode([self.prompts[i] for i in pick]).to(self.ctx.device)
            context = states[:, -1] if self.teacher_forced else None
            flow = self.model(noisy, timestep, text, clean_context=context).sample
            assert flow is not None
            loss = F.mse_loss(self.schedule.flow_to_x0(flow, noisy, timestep).float(), target) / accumulation
            loss.backward()
            total += float(loss.detach())
        norm = optimizer_step(self.model, self.optimizers["generator"], recipe.optim.grad_clip)
        return {"loss": total, "grad_norm": norm, "generator_updated": 1.0}
