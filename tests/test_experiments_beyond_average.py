"""Module 03's experiments: registered, on the second-order task and its control, with the arms the module needs."""
from attncourse.blocks import get_block_spec
from attncourse.experiments import arm_spec, get_experiment
from attncourse.experiments.beyond_average import CONTROL_ARMS, SECOND_ORDER_ARMS


def test_the_two_experiments_are_registered_on_the_task_and_its_control():
    task = get_experiment("beyond_average_second_order")
    control = get_experiment("beyond_average_control")
    assert task.task == control.task == "second_order_cue_digits"
    assert task.task_kwargs == {"cue": "std"} and control.task_kwargs == {"cue": "mean"}
    assert task.module == control.module == "03_beyond_average"
    assert set(task.arms) == {"baseline", "se", "srm", "gsop", "ge_global", "ge_local"}
    assert {"baseline", "se", "srm"} <= set(control.arms)


def test_arms_build_the_named_blocks():
    for arm, (block, kwargs) in {**SECOND_ORDER_ARMS, **CONTROL_ARMS}.items():
        get_block_spec(block)
        assert block in arm_spec(get_experiment("beyond_average_second_order").arms.get(arm)
                                 or get_experiment("beyond_average_control").arms[arm])
    # the control shares its builders with the task: the same models, a different cue
    for arm in CONTROL_ARMS:
        assert arm_spec(get_experiment("beyond_average_control").arms[arm]) == \
            arm_spec(get_experiment("beyond_average_second_order").arms[arm])


def test_the_diagnostic_run_differs_from_the_task_only_in_its_length():
    """beyond_average_long: the same task, data, arms and recipe as beyond_average_second_order, three times the epochs."""
    from attncourse.config import get_profile
    from attncourse.experiments import Job

    task, long = get_experiment("beyond_average_second_order"), get_experiment("beyond_average_long")
    assert (long.task, long.task_kwargs, long.module, long.fit_kwargs) == \
        (task.task, task.task_kwargs, task.module, task.fit_kwargs)
    assert list(long.arms) == ["baseline", "se", "srm", "gsop"] and long.epochs_scale == 3 * task.epochs_scale
    full = get_profile("full")
    for arm in long.arms:
        assert arm_spec(long.arms[arm]) == arm_spec(task.arms[arm])
        short, longer = Job(task.name, arm, 0, full).spec(), Job(long.name, arm, 0, full).spec()
        assert longer.pop("epochs") == 3 * short.pop("epochs") and longer == short
