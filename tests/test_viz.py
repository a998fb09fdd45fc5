import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attncourse import viz  # noqa: E402
from attncourse.cost import compare_costs  # noqa: E402
from attncourse.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_show_images_handles_uint8_gray_rgb_and_labels():
    fig = viz.show_images(torch.randint(0, 255, (5, 1, 12, 20), dtype=torch.uint8), labels=list("abcde"), ncols=3)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == list("abcde") and len(fig.axes) == 6  # 2 rows × 3 columns, one left empty
    fig = viz.show_images(torch.rand(2, 3, 8, 8))
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8, 3)
    with pytest.raises(ValueError, match="expected images"):
        viz.show_images(torch.rand(8))


def test_overlay_attention_resizes_maps_and_checks_counts():
    fig = viz.overlay_attention(torch.rand(3, 1, 16, 16), torch.rand(3, 4, 4), titles=["a", "b", "c"])
    layers = fig.axes[0].get_images()
    assert len(layers) == 2 and layers[1].get_array().shape == (16, 16)
    with pytest.raises(ValueError, match="maps must be"):
        viz.overlay_attention(torch.rand(3, 1, 16, 16), torch.rand(2, 4, 4))


def test_history_results_and_cost_plots():
    h = History(epoch=[1, 2], train_loss=[1.0, 0.5], test_acc=[0.4, 0.6])
    fig = viz.plot_history({"baseline": h, "as dict": h.as_dict()}, metrics=("train_loss", "test_acc"))
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 2
    res = {"experiment": "demo", "profile": "cpu", "seeds": [0, 1], "device": "cpu", "epochs": 2, "git_commit": "abc",
           "arms": {"baseline": {"mean_test_acc": 0.5, "std_test_acc": 0.1, "params": 10, "flops": 2e6,
                                 "runs": [{"final_test_acc": 0.4}, {"final_test_acc": 0.6}]}}}
    fig = viz.plot_results(res)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["baseline"]
    near = {**res, "arms": {"a": {"runs": [{"final_test_acc": v} for v in (0.89, 0.90, 0.91, 0.90, 0.90)]}}}
    half = 2.7764 * 0.7071 / 5 ** 0.5                       # t(0.975, 4) · sd / √n, in points
    lo, hi = viz.plot_results(near).axes[0].get_ylim()
    assert 80 < lo < 90 - half and 90 + half < hi < 100      # near the data (not from 0), whole whisker shown
    table = viz.results_table(res)
    assert "50.0 ± 10.0" in table._repr_html_() and "profile cpu" in repr(table)
    assert "test acc (%)" in table._repr_html_() and "test accuracy (%)" in repr(table)
    seg = viz.results_table({**res, "metric": "miou"})        # a segmentation result is not called accuracy
    assert "test mIoU (%)" in seg._repr_html_() and "accuracy" not in seg._repr_html_() + repr(seg)
    costs = compare_costs({"a": torch.nn.Conv2d(1, 2, 3), "b": torch.nn.Conv2d(1, 4, 3)}, (1, 1, 8, 8), latency=False)
    assert len(viz.plot_cost(costs).axes) == 2  # params and FLOPs (no latency measured)
    assert viz.plot_channel_weights(torch.rand(3, 16), labels=[0, 1, 2]).axes


def _recorded(arms: dict, metric="accuracy"):
    return {"experiment": "toy", "profile": "full", "device": "cpu", "metric": metric,
            "arms": {a: {"runs": [{"history": {"train_acc": c, "test_acc": c}} for c in curves]}
                     for a, curves in arms.items()}}


def test_plot_recorded_curves_draws_every_seed_and_the_mean():
    res = _recorded({"base": [[0.1, 0.5, 0.6], [0.3, 0.7, 0.8]], "block": [[0.2, 0.9, 1.0]]}, metric="miou")
    fig = viz.plot_recorded_curves(res, metrics=("test_acc",))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 1 + 1 + 1  # base: 2 seeds + mean; block: 1 seed + mean
    means = [line for line in ax.lines if line.get_linewidth() == 2]
    assert [list(m.get_ydata()) for m in means] == [pytest.approx([0.2, 0.6, 0.7]), pytest.approx([0.2, 0.9, 1.0])]
    assert ax.get_ylabel() == "test mIoU" and "base (2 seeds)" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="plot_recorded_curves.*no arm"):
        viz.plot_recorded_curves(res, ["nope"])
