"""Experiments of module 01 (Inception): multi-branch blocks vs a single-kernel stack on multi-scale digits."""
from ..blocks.inception import InceptionNet, PlainNet
from ..config import Profile
from .core import Experiment, register_experiment

#: A reduced profile for a machine without a GPU (the same sizes as module 05's): its results are
#: ``results/inception_multiscale.cpu.json`` (``load_results("inception_multiscale", "cpu")``), labelled with
#: profile and device: ``run_experiment("inception_multiscale", CPU_PROFILE, device="cpu")``.
CPU_PROFILE = Profile("cpu", n_train=1500, n_test=1000, epochs=5, batch_size=128, seeds=3)

register_experiment(Experiment(
    name="inception_multiscale",
    description=("Multi-scale digits (8–38 px on a 40×40 canvas): PlainNet (two 3×3 convs per stage) vs InceptionNet "
                 "(1×1 | 3×3 | 5×5 | pool branches) vs SE-Inception (SE on each block's concatenated output). "
                 "Same skeleton, receptive field and ~equal params/FLOPs."),
    task="multiscale_digits",
    arms={
        "plain": lambda task: PlainNet(task.in_channels, task.num_classes),
        "inception": lambda task: InceptionNet(task.in_channels, task.num_classes),
        "se_inception": lambda task: InceptionNet(task.in_channels, task.num_classes, attention="se"),
    },
    module="01_inception",
))
