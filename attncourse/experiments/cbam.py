"""Experiments of module 05 (CBAM, BAM, scSE) on the cluttered-digits task.

* ``cbam_order`` — the CBAM paper's order ablation (Sec. 4.1, Table 3): channel→spatial (the paper's
  block), spatial→channel, and both in parallel, against the baseline. Two more arms, the channel
  module alone and the spatial module alone, say which half does the work on this task.
* ``mixed_compare`` — CBAM against BAM, scSE (sum and max) and SE on the same task and recipe.

Every arm is :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage) with
``attention_kwargs={"reduction": 4}`` (``MIXED_REDUCTION``). The papers use r = 16 (CBAM, BAM) and
r = 2 (scSE) on 64–2048 channels; here r = 16 would leave hidden layers of 1, 2 and 4 units, and a
single unit at stage 1 makes all 16 channel weights (and BAM's whole spatial gate, which reduces by
the same r) a function of one number. r = 4 gives 4/8/16 units, and using one r for every arm keeps
the channel branches the same size, so the arms differ by their spatial design. BAM goes where its
paper puts it, at the bottlenecks between stages (after stages 1 and 2; after stage 3 comes the global
pool, which is no boundary), not inside residual blocks.
"""
from __future__ import annotations

from ..blocks import BLOCKS
from ..config import Profile
from ..models import AttnResNet
from .core import Experiment, register_experiment

MIXED_REDUCTION = 4

#: A reduced profile for a machine without a GPU: 2,000 training images, 6 epochs, 3 seeds. The results it
#: writes are ``results/<name>.cpu.json`` (``load_results(name, "cpu")``), labelled with profile and device:
#: ``run_experiment("cbam_order", CPU_PROFILE, arms=[...], device="cpu")``.
CPU_PROFILE = Profile("cpu", n_train=2000, n_test=1000, epochs=6, batch_size=128, seeds=3)
BAM_STAGES = (1, 2)  # the stage boundaries of a three-stage AttnResNet

#: cbam_order: arm name → registered block
ORDER_ARMS = {
    "baseline": "none",
    "channel_spatial": "cbam",              # the paper's CBAM: channel → spatial
    "spatial_channel": "cbam_spatial_first",  # spatial → channel
    "parallel": "cbam_parallel",            # y = x · Mc(x) · Ms(x)
    "channel_only": "channel_attention",
    "spatial_only": "spatial_attention",
}

#: mixed_compare: arm name → registered block ("se" only when the channel family registered it)
COMPARE_ARMS = {"baseline": "none", **({"se": "se"} if "se" in BLOCKS else {}), "cbam": "cbam", "bam": "bam",
                "scse": "scse", "scse_max": "scse_max"}


def mixed_net(task, attention: str, reduction: int = MIXED_REDUCTION) -> AttnResNet:
    """The backbone of this module's experiments: ``AttnResNet`` with ``attention`` placed as its paper places it."""
    stages = BAM_STAGES if attention == "bam" else None
    return AttnResNet(task.in_channels, task.num_classes, attention=attention,
                      attention_kwargs={"reduction": reduction}, attention_stages=stages)


def _builder(attention: str):
    def build(task):
        return mixed_net(task, attention)

    build.__name__ = f"mixed_net_{attention}"
    return build


register_experiment(Experiment(
    name="cbam_order",
    description=("Cluttered digits: the CBAM order ablation — channel→spatial (the paper's block), spatial→channel, "
                 "parallel (x·Mc(x)·Ms(x)) — plus the channel and spatial modules alone, vs the AttnResNet baseline; "
                 f"r={MIXED_REDUCTION}, 7×7 spatial kernel."),
    task="cluttered_digits",
    arms={arm: _builder(block) for arm, block in ORDER_ARMS.items()},
    module="05_cbam",
))

register_experiment(Experiment(
    name="mixed_compare",
    description=("Cluttered digits: channel+spatial blocks compared — CBAM, BAM (at the stage boundaries), scSE "
                 f"(sum and max) — with SE and the baseline; r={MIXED_REDUCTION} for every block."),
    task="cluttered_digits",
    arms={arm: _builder(block) for arm, block in COMPARE_ARMS.items()},
    module="05_cbam",
))
