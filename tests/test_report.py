import json

from attncourse.report import render_results_page
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_page_is_up_to_date_with_the_results_files():
    page = (ROOT / "book" / "results.md").read_text()
    assert page == render_results_page(ROOT / "results"), "run: python -m attncourse report"


def test_results_page_names_device_profile_and_every_arm(tmp_path):
    res = {"experiment": "demo", "description": "d", "module": "02_senet", "task": "channel_cue_digits", "profile": "cpu",
           "n_train": 10, "n_test": 5, "epochs": 2, "batch_size": 4, "seeds": [0, 1], "device": "cpu (x86_64, 2 threads)",
           "torch": "2.x", "git_commit": "abc123", "arms": {
               "baseline": {"mean_test_acc": 0.5, "std_test_acc": 0.1, "params": 1000, "flops": 2e6,
                            "runs": [{"final_test_acc": 0.4}, {"final_test_acc": 0.6}]},
               "se": {"mean_test_acc": 0.75, "std_test_acc": 0.05, "params": 1100, "flops": 2.1e6,
                      "runs": [{"final_test_acc": 0.7}, {"final_test_acc": 0.8}]}}}
    (tmp_path / "demo.cpu.json").write_text(json.dumps(res))
    page = render_results_page(tmp_path)
    assert "cpu (x86_64, 2 threads)" in page and "cpu profile" in page
    assert "| baseline | 50.0 ± 10.0 | 40.0, 60.0 |" in page and "| se | 75.0 ± 5.0 | 70.0, 80.0 |" in page
    assert "No results" in render_results_page(tmp_path / "empty_nonexistent")
