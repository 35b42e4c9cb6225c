"""Pieces every stage uses: building or loading the trained model, checking checkpoints fit together."""

from __future__ import annotations

import torch

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.spec import GeneratorSpec
from mirai_train.stages.base import Context


def trained_model(ctx: Context) -> CausalWanTransformer:
    """The recipe's model: loaded from `init`, or randomly initialised from the recipe's seed."""
    recipe = ctx.recipe
    if recipe.init is None:
        with torch.random.fork_rng():
            torch.manual_seed(recipe.optim.seed)
            return CausalWanTransformer(**recipe.generator.transformer_kwargs()).to(ctx.device)
    spec, model = ctx.load(recipe.init, role="init")
    require_same(spec, recipe.generator, recipe.init, sections=("transformer",))
    model.num_frame_per_block = recipe.generator.transformer.num_frame_per_block  # the recipe decides
    return model.train()


def frozen(model: CausalWanTransformer) -> CausalWanTransformer:
    model.eval().requires_grad_(False)
    return model


def require_same(
    spec: GeneratorSpec,
    wanted: GeneratorSpec,
    where: str,
    sections: tuple[str, ...] = ("codec", "text_encoder"),
) -> None:
    """Checkpoints that meet in one stage must share the latent space and the text embedding."""
    for section in sections:
        have, need = getattr(spec, section), getattr(wanted, section)
        if section == "transformer":  # shapes must match; the causal block size may change
            have = have.model_copy(update={"num_frame_per_block": need.num_frame_per_block})
        if have != need:
            raise ValueError(
                f"{where}: its {section} {have} differs from the recipe's generator {section} {need}"
            )
