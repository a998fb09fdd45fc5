"""Experiments of module 04 (Non-local, GCNet, CCNet) on the long-range pairs task.

``nonlocal_pairs``: two digits at opposite ends of a 24×96 canvas, label "same class?". The baseline's
receptive field (25 px) never covers both digits, and "same?" cannot be read linearly from the globally
pooled sum of their features, so a local CNN with a linear classifier should stay near chance; a block that
relates distant positions *inside* the network can do better — and the ``baseline_mlp`` control measures how much
a non-linear read-out of the pooled features recovers without any attention.

Every arm is :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage):

* ``baseline`` — no attention;
* ``nonlocal`` — :class:`~attncourse.blocks.nonlocal_.NonLocal2d` (embedded Gaussian, d = C/2) after
  stages 2 and 3 (maps 12×48 and 6×24), as the paper adds whole blocks between residual blocks;
* ``gc`` — :class:`~attncourse.blocks.nonlocal_.GlobalContext` on the residual branch of every basic
  block, with reduction r = 4 (``GC_REDUCTION``): the paper's r = 16 would leave 1, 2 and 4 units
  for widths 16/32/64;
* ``cc`` — :class:`~attncourse.blocks.nonlocal_.CrissCrossAttention` (R = 2) after stages 2 and 3;
* ``baseline_mlp`` — the control: no attention, but an MLP head (``MLP_HIDDEN`` hidden units) on the pooled
  features instead of a linear one. If it matches the non-local arm, the baseline lost for its linear read-out
  of the pooled vector, not for lack of non-local interaction inside the network.

Record it with ``python -m attncourse run-all --only nonlocal_pairs --profile full`` (resumable; on a 2-core
CPU as well as on a GPU).
"""
from __future__ import annotations

from ..models import AttnResNet
from .core import BackboneArm, Experiment, NetArm, register_experiment

GC_REDUCTION = 4
MLP_HIDDEN = 64

#: arm name → (registered block, its keyword arguments)
ARMS = {
    "baseline": ("none", {}),
    "nonlocal": ("nonlocal", {}),
    "gc": ("gc", {"reduction": GC_REDUCTION}),
    "cc": ("cc", {}),
}


def nonlocal_net(task, attention: str = "nonlocal", **attention_kwargs) -> AttnResNet:
    """The backbone of this module's experiments: ``AttnResNet`` with ``attention`` placed as its paper places it."""
    return BackboneArm(attention, attention_kwargs)(task)


register_experiment(Experiment(
    name="nonlocal_pairs",
    description=("Long-range pairs (two digits at opposite ends of a 24×96 canvas; label: same class?): AttnResNet "
                 "baseline vs + Non-local (embedded Gaussian, after stages 2 and 3) vs + GCNet (every residual block, "
                 f"r={GC_REDUCTION}) vs + CCNet (criss-cross, R=2, after stages 2 and 3), and a control: the baseline with "
                 f"an MLP head ({MLP_HIDDEN} hidden units) on the pooled features."),
    task="long_range_pairs",
    arms={**{arm: BackboneArm(block, kw) for arm, (block, kw) in ARMS.items()},
          "baseline_mlp": NetArm(AttnResNet, {"head_hidden": MLP_HIDDEN})},
    module="04_nonlocal",
))
