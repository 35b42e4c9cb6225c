"""The Video-Mirai foresight loss (arXiv 2606.03971; the authors' release, y0urOy/Video-Mirai).

After a rollout, the frozen foresight encoder (the bidirectional real-score teacher) reads the
whole clean rollout, future blocks included. Its tokens at one layer, averaged over a look-ahead
window of blocks, are the target for block i; the predictor maps the student's mid-depth tokens
of block i into that space, and the loss is 1 - cos per token. The encoder is never trained and
the targets carry no gradient, so the only thing the loss can change is the student (and the
predictor): its hidden state must come to anticipate what comes next.

Layer numbers: the official keys (`foresight_student_layer: 15`, `foresight_teacher_layer: 20`)
are 0-based block indices, and the hidden state is taken at the *output* of that block, so
index 15 of 30 is "after 16 blocks". `CausalWanTransformer`'s `tap_layer`/`exit_layer` count
blocks (1-based); `official_layer_to_tap` converts, and every function here takes the official
index. The paper's depth fraction alpha is index / num_layers (15 of 30 and 20 of 40: 0.5).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mirai_train.models.causal_wan import CausalWanTransformer
from mirai_train.models.predictor import ForesightPredictor


def official_layer_to_tap(index: int) -> int:
    """0-based block index of the official configs -> `tap_layer`/`exit_layer` (blocks run)."""
    if index < 0:
        raise ValueError(f"layer index must be >= 0, got {index}")
    return index + 1


def layer_fraction(index: int, num_layers: int) -> float:
    """The paper's depth fraction alpha of an official layer index (15 of 30 -> 0.5)."""
    if not 0 <= index < num_layers:
        raise ValueError(f"layer index {index} is outside 0..{num_layers - 1}")
    return index / num_layers


def layer_at_fraction(alpha: float, num_layers: int) -> int:
    """The official layer index at depth fraction alpha (0.5 of 30 -> 15), for models of any depth."""
    index = round(alpha * num_layers)
    if not 0 <= index < num_layers:
        raise ValueError(
            f"alpha {alpha} of {num_layers} layers gives index {index}, outside 0..{num_layers - 1}"
        )
    return index


@torch.no_grad()
def teacher_targets(
    encoder: CausalWanTransformer,
    clean_latents: Tensor,
    text: Tensor,
    *,
    teacher_layer: int,
    block_frames: int,
) -> Tensor:
    """Encoder tokens of the clean rollout [B, C, F, H, W], per block: [B, n_blocks, tokens_per_block, D].

    The encoder runs bidirectionally (every block sees the future) on the rollout at timestep 0
    for all frames, with the text condition, under no_grad (nothing flows back into the rollout),
    and stops after official block index `teacher_layer`: the rest of the teacher never runs.
    """
    batch, _, frames, height, width = clean_latents.shape
    if frames % block_frames:
        raise ValueError(f"{frames} latent frames is not a multiple of the block size {block_frames}")
    timestep = torch.zeros(batch, device=clean_latents.device, dtype=clean_latents.dtype)
    exit_layer = official_layer_to_tap(teacher_layer)
    out = encoder(clean_latents, timestep, text, causal=False, exit_layer=exit_layer)
    assert out.tap is not None
    per_block = block_frames * encoder.tokens_per_frame(height, width)
    return out.tap.reshape(batch, frames // block_frames, per_block, -1)  # tokens are frame-major


def supervised_blocks(n_blocks: int, deltas: Sequence[int]) -> int:
    """How many leading blocks have a target under window `deltas`: the rest see past the rollout.

    Block i has a target when i + min(deltas) < n_blocks, so these are blocks 0..n - min - 1; with
    a window without 0 (e.g. {1}) the last block gets none and contributes no loss, as in the release.
    """
    _check_window(deltas)
    count = n_blocks - min(deltas)
    if count < 1:
        raise ValueError(f"no block of {n_blocks} has a target in window {sorted(deltas)}")
    return count


def fuse_window(targets: Tensor, deltas: Sequence[int]) -> Tensor:
    """Window fusion: target of block i = token-wise mean of targets[:, i + d] over d in `deltas`.

    targets [B, n_blocks, N, D] -> [B, supervised_blocks(n_blocks, deltas), N, D]. Deltas past the
    last block are skipped, so the last blocks average fewer targets ({0, 1}: the last block uses
    its own tokens only); blocks with no target at all are left out (see `supervised_blocks`).
    """
    n_blocks = targets.shape[1]
    fused = []
    for i in range(supervised_blocks(n_blocks, deltas)):
        window = [targets[:, i + d] for d in deltas if i + d < n_blocks]
        fused.append(torch.stack(window).mean(dim=0))
    return torch.stack(fused, dim=1)


def _check_window(deltas: Sequence[int]) -> None:
    if not deltas or len(set(deltas)) != len(deltas) or min(deltas) < 0:
        raise ValueError(f"window must be non-empty, unique, non-negative block offsets; got {list(deltas)}")


def foresight_loss(predicted: Tensor, targets: Tensor) -> Tensor:
    """1 - cos(predicted, stopgrad(target)) per token, mean over tokens, then over blocks and batch.

    predicted, targets [B, n_blocks, N, D]. The release minimises -cos; the two differ by the
    constant 1, so gradients are identical and this one reads 0 at a perfect match, 1 at
    orthogonal. The cosine is taken in float32.
    """
    if predicted.shape != targets.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and targets {tuple(targets.shape)} differ")
    cos = F.cosine_similarity(predicted.float(), targets.detach().float(), dim=-1)  # [B, n_blocks, N]
    return (1 - cos).mean(dim=-1).mean()


class PairReplay:
    """(student hidden, fused target) pairs of the last generator step, for predictor-only updates.

    The generator is updated only every few steps (dfake_gen_update_ratio); on the critic-only
    steps in between, the release keeps training the predictor on the pairs of the last generator
    step, so it keeps up with the student. Pairs are stored detached, on the CPU by default; call
    `clear()` at the start of every generator step.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._pairs: list[tuple[Tensor, Tensor]] = []

    def clear(self) -> None:
        self._pairs.clear()

    def add(self, hidden: Tensor, target: Tensor) -> None:
        """hidden [B, n_blocks, N, dim] (student tokens) and target [B, n_blocks, N, teacher_dim]."""
        self._pairs.append((hidden.detach().to(self.device), target.detach().to(self.device)))

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self._pairs)

    def backward(self, predictor: ForesightPredictor, weight: float) -> float:
        """Accumulate weight * mean over pairs of the foresight loss into the predictor's gradients.

        One pair at a time is moved to the predictor's device and backpropagated, so only one
        pair's activations are alive. Returns the weighted loss for logging; the caller steps the
        predictor's optimiser. With no pairs it does nothing and returns 0.
        """
        if not self._pairs:
            return 0.0
        device = next(predictor.parameters()).device
        total = 0.0
        for hidden, target in self._pairs:
            loss = weight * foresight_loss(predictor(hidden.to(device)), target.to(device)) / len(self._pairs)
            loss.backward()
            total += float(loss.detach())
        return total
