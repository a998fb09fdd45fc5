"""Helpers the block tests share: a block with random (non-initial) weights and BN statistics, and a seeded input."""
import torch
from torch import nn


def randomize(block: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter drawn N(0, 0.5²) and every BatchNorm's running statistics random, so an equivalence test
    cannot pass on the blocks' identity-like initial state."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return block


def seeded_input(*shape, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
