import pytest
import torch
from torch import nn

from attncourse.cost import CostTable, compare_costs, count_flops, count_params, measure_latency, peak_memory


@pytest.mark.parametrize("cin,cout,k,h,w", [(3, 8, 3, 10, 10), (16, 4, 1, 7, 9), (5, 6, 5, 12, 11)])
def test_conv_flops_and_params_match_closed_forms(cin, cout, k, h, w):
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    assert count_params(conv) == cin * cout * k * k + cout
    assert count_flops(conv, (1, cin, h, w)) == 2 * cin * cout * k * k * h * w
    assert count_flops(conv, (3, cin, h, w)) == 3 * 2 * cin * cout * k * k * h * w


def test_linear_flops_and_trainable_params():
    lin = nn.Linear(10, 4)
    assert count_flops(lin, torch.randn(2, 10)) == 2 * 2 * 10 * 4
    lin.bias.requires_grad_(False)
    assert count_params(lin) == 44 and count_params(lin, trainable_only=True) == 40


def test_backward_flops_are_about_twice_forward():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    fwd = count_flops(conv, x)
    assert count_flops(conv, x, backward=True) == 3 * fwd  # forward + grad input + grad weight


def test_latency_reports_median_of_repeats():
    out = measure_latency(nn.Conv2d(2, 2, 3), (1, 2, 16, 16), warmup=1, repeats=5)
    assert out["repeats"] == 5 and out["min_ms"] <= out["median_ms"] <= out["max_ms"]
    assert out["device"].startswith("cpu") and len(out["times_ms"]) == 5
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(nn.Conv2d(2, 2, 3), (1, 2, 8, 8), repeats=0)


def test_peak_memory_sees_a_large_temporary():
    small = peak_memory(lambda: torch.ones(1000).sum(), "cpu")
    big = peak_memory(lambda: (torch.ones(1024, 1024) * 2).sum(), "cpu")  # two 4 MiB tensors live at once
    assert big >= 2 * 4 * 2**20 > small


def test_cost_table_renders_deltas_against_the_baseline():
    a, b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 8, 3, padding=1)
    table = compare_costs({"base": a, "wide": b}, (1, 1, 8, 8), latency=False)
    assert isinstance(table, CostTable)
    text, html = str(table), table._repr_html_()
    assert "base" in text and "wide" in text and "+100.0%" in text  # params and FLOPs doubled (+bias: 80 vs 40)
    assert "<table>" in html and "FLOPs" in html
