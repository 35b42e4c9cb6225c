"""Network architectures the scoring dimensions run, with the parameter names of the official weights."""

from torch import Tensor, nn
from torch.nn import functional as F


class Mlp(nn.Module):
    """The transformer MLP of DINO's ViT and of MUSIQ (`fc1`, GELU, `fc2`: both releases' names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))
