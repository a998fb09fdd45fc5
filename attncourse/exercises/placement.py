"""The capstone's last step: a learner's block, once it keeps the contract, trained and placed beside the course's
blocks (module 09, ``09.design_block``).

:func:`place_block` grades the block on the contract (``09.design_block``); at full points it trains the block and the
plain baseline on the capstone's task at a profile's budget, with the same seed, and returns the row that
:func:`attncourse.viz.plot_pareto` draws as a star. How well the block does is reported, never graded.
"""
from __future__ import annotations

from ..blocks import get_block_spec

__all__ = ["place_block"]


def _registered_name(block) -> str:
    """The registry name of ``block`` (a name, or a class registered under one; an unregistered class is registered
    as ``learner_block``, ``learner_block_2``, …)."""
    from ..blocks import BLOCKS, register_block

    if isinstance(block, str):
        get_block_spec(block)
        return block.lower()
    for key, spec in BLOCKS.items():
        if spec.factory is block:
            return key
    n, key = 1, "learner_block"
    while key in BLOCKS:
        n += 1
        key = f"learner_block_{n}"
    register_block(key, family="learner")(block)
    return key


def place_block(block, profile=None, *, device=None, seed: int = 0, task=None, progress: bool | None = None):
    """Train a learner's block beside the plain baseline on the capstone's task, both at ``profile``'s budget with
    the same seed, and return the row that places it on :func:`~attncourse.viz.plot_pareto`.

    ``block``: a block class ``Block(channels)`` or a registered name. It must first keep the block contract
    (exercise ``09.design_block`` at full points); otherwise nothing is trained and ``None`` is returned with a
    message. Returns ``{"arm", "delta", "ci_low", "ci_high", "params", "flops", "note", "accuracy",
    "baseline_accuracy", "histories", "n_train"}``: Δ is one seed at this budget against a baseline trained alike — a
    demonstration beside the recorded blocks, not their interval (``ci_low = ci_high = delta``).
    """
    from ..config import Profile, get_profile, pick_device
    from ..cost import count_flops, count_params
    from ..data import make_task
    from ..exercises.checking import grade
    from ..experiments import get_experiment
    from ..experiments.core import BackboneArm
    from ..train import fit

    got, total, results = grade("09.design_block", block)
    if got < total:
        failed = sum(not r.passed for r in results)
        print(f"place_block: the block keeps {got:g} of {total:g} points of the contract ({failed} of {len(results)} "
              f"cases fail; check('09.design_block', …) says which): nothing trained. Give it full points first.")
        return None
    name = _registered_name(block)
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    device = pick_device(device)
    capstone = get_experiment("capstone_blocks")  # its task, baseline arm and recipe, as the recorded blocks had
    task = task if task is not None else make_task(capstone.task, profile, **capstone.task_kwargs)
    epochs = max(1, round(profile.epochs * capstone.epochs_scale))
    histories, nets = {}, {}
    for arm, build in (("baseline", capstone.arms["baseline"]), (name, BackboneArm(name))):
        nets[arm] = build(task)
        histories[arm] = fit(nets[arm], task, epochs=epochs, batch_size=profile.batch_size, seed=seed,
                             device=device, desc=arm, progress=progress, **capstone.fit_kwargs)
    x = task.float_images(task.x_test[:1])
    delta = histories[name].final_test_acc - histories["baseline"].final_test_acc
    return {"arm": name, "delta": delta, "ci_low": delta, "ci_high": delta,
            "params": count_params(nets[name]), "flops": count_flops(nets[name].cpu().eval(), x),
            "accuracy": histories[name].final_test_acc, "baseline_accuracy": histories["baseline"].final_test_acc,
            "note": f"your block: {profile.name} budget, seed {seed}, Δ against a baseline trained alike",
            "histories": histories, "n_train": len(task.x_train)}

