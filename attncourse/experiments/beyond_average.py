"""Experiments of module 03 (beyond the average: SRM, GSoP, Gather-Excite) on ``second_order_cue_digits``.

* ``beyond_average_second_order`` — the marked channel differs only in its texture strength (a standard
  deviation); every input channel's mean is 0.5 by construction. Arms: the baseline, SE (mean squeeze), SRM (mean
  and std), GSoP (covariance), GE-θ⁻ with a global extent (a parameter-free mean gather) and GE-θ at extent 4
  (depthwise strided convs: a learned local gather).
* ``beyond_average_control`` — the same task with the cue in the marked channel's mean (``cue="mean"``), where SE
  can read the cue directly: if SE loses to SRM only on the second-order task, SE is not simply weaker.
* ``beyond_average_long`` — the diagnostic run: ``beyond_average_second_order``'s baseline, SE, SRM and GSoP trained
  three times as long (45 epochs at the full profile), everything else the same. At 15 epochs every arm stays near
  chance for about half the schedule and then rises, at a time that differs from seed to seed, while the one-cycle
  learning rate is already falling; the final accuracy then measures *when* a run found the marked channel as much
  as *whether* it can. Three times the schedule separates the two: do the arms still differ when each has had time
  to converge?

Every arm is :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage, the block on the
residual branch of every basic block). SE uses ``r = 4`` as in module 02 (+2.8k parameters on a 78k network);
SRM has no bottleneck (2C weights and a BN per block, +0.4k); GSoP uses ``d = C/4`` (d = 4/8/16, +8.4k: at
``d = C/8`` stage 1 would keep a 2×2 covariance); GE-θ at extent 4 costs two depthwise 3×3 convs per block (+2.5k);
the global GE-θ⁻ has no parameters.
"""
from __future__ import annotations

from ..data import second_order_cue_digits as _task_family  # noqa: F401 — registers the task these experiments train on
from .core import BackboneArm, Experiment, register_experiment

SE_REDUCTION = 4
GSOP_REDUCTION = 4

#: arm name → (registered block, keyword arguments)
SECOND_ORDER_ARMS = {
    "baseline": ("none", {}),
    "se": ("se", {"reduction": SE_REDUCTION}),
    "srm": ("srm", {}),
    "gsop": ("gsop", {"reduction": GSOP_REDUCTION}),
    "ge_global": ("ge_global", {}),       # GE-θ⁻, global extent: a parameter-free mean gather
    "ge_local": ("ge_theta_e4", {}),      # GE-θ, extent 4: two depthwise 3×3 stride-2 convs
}
CONTROL_ARMS = {arm: SECOND_ORDER_ARMS[arm] for arm in ("baseline", "se", "srm")}
LONG_ARMS = {arm: SECOND_ORDER_ARMS[arm] for arm in ("baseline", "se", "srm", "gsop")}
LONG_EPOCHS_SCALE = 3.0

register_experiment(Experiment(
    name="beyond_average_second_order",
    description=("Second-order cue digits (4 channels, one digit each; the marked channel carries a texture twice as "
                 "strong, every channel's mean is 0.5 by construction): AttnResNet baseline vs SE (r=4), SRM, GSoP "
                 "(d=C/4), GE-θ⁻ global and GE-θ at extent 4."),
    task="second_order_cue_digits",
    task_kwargs={"cue": "std"},
    arms={arm: BackboneArm(block, kw) for arm, (block, kw) in SECOND_ORDER_ARMS.items()},
    module="03_beyond_average",
))

register_experiment(Experiment(
    name="beyond_average_control",
    description=("The control: the same digits with the cue in the marked channel's mean (+0.06, all textures "
                 "equal): AttnResNet baseline vs SE (r=4) and SRM."),
    task="second_order_cue_digits",
    task_kwargs={"cue": "mean"},
    arms={arm: BackboneArm(block, kw) for arm, (block, kw) in CONTROL_ARMS.items()},
    module="03_beyond_average",
))

register_experiment(Experiment(
    name="beyond_average_long",
    description=("The diagnostic run: beyond_average_second_order's baseline, SE (r=4), SRM and GSoP (d=C/4) trained "
                 "three times as long (the same task, data and recipe): do the arms differ in whether they find the "
                 "marked channel, or only in when?"),
    task="second_order_cue_digits",
    task_kwargs={"cue": "std"},
    arms={arm: BackboneArm(block, kw) for arm, (block, kw) in LONG_ARMS.items()},
    epochs_scale=LONG_EPOCHS_SCALE,
    module="03_beyond_average",
))
