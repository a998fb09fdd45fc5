"""Each module's summary states what it found, computed from the results (`ac.module_summary`, `ac.glue`).

On synthetic results: a clear gain, a clear loss and an inconclusive effect each get their own words (flip the
data and the sentence flips), the budget caveat appears exactly when `convergence` calls for it, a module with
nothing recorded says so in one sentence. On the registry: every headline names arms its experiment has. On the
shipped results: every module's summary runs, has one to four sentences, and its words follow each label. On the
notebooks: every summary section glues its own module's summary.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import attncourse as ac
from attncourse.experiments import summaries
from attncourse.experiments.core import effects, get_experiment
from attncourse.experiments.summaries import HEADLINES, Headline, module_findings, module_summary

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z])")
RAW_ROLE = re.compile(r"\{[a-z]+(:[a-z]*)?\}`")      # {glue:md}`…`, {cite}`…`, {doc}`…`: raw text in Colab


def _sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def _history(train_final: float, climbing: bool, epochs: int = 8) -> dict:
    """A one-cycle-like history: the learning rate peaks then decays; the test accuracy is flat unless
    ``climbing`` (then +2 points per epoch where the learning rate is still useful)."""
    lr = [0.1 * min(1.0, (i + 1) / 2) * (1 - i / epochs) for i in range(epochs)]
    test = [0.5 + (0.02 * i if climbing else 0.0) for i in range(epochs)]
    train = [train_final - 0.01 * (epochs - 1 - i) for i in range(epochs)]
    return {"lr": lr, "test_acc": test, "train_acc": train}


def _arm(values, train_final=1.0, climbing=False, params=1000):
    runs = [{"seed": s, "final_test_acc": v, "history": _history(train_final, climbing)} for s, v in enumerate(values)]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
    return {"mean_test_acc": mean, "std_test_acc": std, "params": params, "flops": 1, "runs": runs}


def _results(name: str, arms: dict, metric: str = "accuracy") -> dict:
    return {"experiment": name, "metric": metric, "n_test": 2000, "profile": "full", "device": "cpu (x86_64, 1 threads)",
            "arms": arms}


HIGH, LOW = [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]
MIXED = [0.86, 0.80, 0.83]     # around 0.81 ± 0: seeds disagree in sign against LOW
HEADLINE = Headline("fake_exp", "block", "base", "the block", "the plain net", "test digits")


@pytest.fixture
def fake(monkeypatch):
    """Register module "99" with one comparison, and serve results from a dict instead of the recorded folder."""
    store: dict[str, dict] = {}
    monkeypatch.setitem(HEADLINES, "99", ((HEADLINE,),))
    monkeypatch.setattr(summaries, "load_results", lambda name, profile="full": store.get(name))
    return store


def test_a_clear_gain_and_its_flip_a_clear_loss_get_their_own_words(fake):
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW), "block": _arm(HIGH)})
    gain = module_summary("99")
    assert "the block beats the plain net" in gain and "a clear gain" in gain
    assert "loss" not in gain and "falls behind" not in gain and "cannot tell" not in gain
    assert re.search(r"\+10\.0 points \(95 % interval \[\+\d+\.\d, \+\d+\.\d\], 3 seeds\)", gain), gain

    fake["fake_exp"] = _results("fake_exp", {"base": _arm(HIGH), "block": _arm(LOW)})   # the data flipped
    loss = module_summary("99")
    assert "the block falls behind the plain net" in loss and "a clear loss" in loss
    assert "gain" not in loss and "beats" not in loss and "cannot tell" not in loss
    assert re.search(r"−10\.0 points \(95 % interval \[−\d+\.\d, −\d+\.\d\], 3 seeds\)", loss), loss


def test_an_inconclusive_effect_claims_no_direction(fake):
    fake["fake_exp"] = _results("fake_exp", {"base": _arm([0.83, 0.83, 0.83]), "block": _arm(MIXED)})
    row = next(r for r in effects(fake["fake_exp"], baseline="base") if r["arm"] == "block")
    assert row["label"] == "inconclusive" and row["ci_low"] < 0 < row["ci_high"]     # the case is what it claims
    text = module_summary("99")
    assert "the data cannot tell a gain from a loss here" in text
    assert "clear" not in text and "beats" not in text and "falls behind" not in text


def test_one_seed_is_inconclusive_and_says_so(fake):
    fake["fake_exp"] = _results("fake_exp", {"base": _arm([0.5]), "block": _arm([0.9])})
    text = module_summary("99")
    assert "one seed" in text and "no interval" in text and "cannot tell a gain from a loss" in text
    assert "beats" not in text and "clear" not in text


def test_the_budget_caveat_appears_exactly_when_convergence_calls_for_it(fake):
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW), "block": _arm(HIGH)})
    assert "budget" not in module_summary("99")            # both converged: train 100 %, flat
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW, train_final=0.80), "block": _arm(HIGH)})
    assert ac.convergence(fake["fake_exp"], "base")["budget_limited"]
    text = module_summary("99")
    assert "the plain net was still limited by the training budget" in text and "equal-budget" in text
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW, train_final=0.80),
                                             "block": _arm(HIGH, train_final=0.97, climbing=True)})
    assert "every network named here was still limited by its training budget" in module_summary("99")


def test_a_missing_experiment_or_arm_is_said_in_one_sentence_never_invented(fake, monkeypatch):
    text = module_summary("99")                                 # nothing recorded
    assert len(_sentences(text)) == 1
    assert text.startswith("None of module 99's headline comparisons is recorded yet") and "`fake_exp`" in text
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW), "other": _arm(HIGH)})   # the arm is not in it
    assert "is recorded yet" in module_summary("99")
    second = Headline("fake_exp", "other", "base", "the other block", "the plain net", "test digits")
    monkeypatch.setitem(HEADLINES, "99", ((HEADLINE, second),))          # one of two recorded: only it is stated
    text = module_summary("99")
    assert "the other block beats the plain net" in text and "the block " not in text.replace("the other block", "")


def test_at_most_four_sentences_and_related_comparisons_share_one(fake, monkeypatch):
    other = Headline("fake_exp", "other", "base", "the other block", "the plain net", "test digits")
    groups = tuple((HEADLINE, other) for _ in range(6))
    monkeypatch.setitem(HEADLINES, "99", groups)
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW), "block": _arm(HIGH), "other": _arm(HIGH)})
    found = module_findings("99")
    assert len(found) == 4 and _sentences(" ".join(found)) == found
    assert all(s.count("beats") == 2 and "; and " in s for s in found)


def test_metric_words_follow_the_results(fake):
    fake["fake_exp"] = _results("fake_exp", {"base": _arm(LOW), "block": _arm(HIGH)}, metric="miou")
    assert "+10.0 mIoU points" in module_summary("99")


def test_unknown_module_is_refused():
    with pytest.raises(ValueError, match="module_summary"):
        module_summary("42")


# --- the registry -------------------------------------------------------------------------------------------------

def test_every_course_module_has_headlines_of_real_arms():
    assert set(HEADLINES) >= {f"{i:02d}" for i in range(9)}
    for module, groups in HEADLINES.items():
        assert 1 <= len(groups) <= 4, module
        for group in groups:
            assert len({h.experiment for h in group}) == 1 and len({h.task_words for h in group}) == 1, group
            for h in group:
                arms = get_experiment(h.experiment).arms
                assert h.arm in arms, f"{module}: {h.experiment} has no arm {h.arm!r}"
                assert h.baseline is None or h.baseline in arms, f"{module}: {h.experiment} has no arm {h.baseline!r}"
                assert h.arm_words and h.task_words and (h.baseline is None or h.baseline_words)
                assert get_experiment(h.experiment).module.startswith(module) or module == "00"


# --- the shipped results ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", sorted(HEADLINES))
def test_shipped_summaries_state_each_recorded_label_in_its_own_words(module):
    found = module_findings(module)
    text = module_summary(module)
    assert 1 <= len(found) <= 4 and _sentences(text) == found
    assert all(s.endswith(".") for s in found)
    assert not RAW_ROLE.search(text), "a MyST role would show as raw text in Colab"
    recorded = []          # the groups that have a sentence, in order, each with its recorded comparisons
    for group in HEADLINES[module][:4]:
        res = ac.load_results(group[0].experiment)
        here = [h for h in group if res is not None and h.arm in res["arms"] and (h.baseline in res["arms"] or h.baseline is None)]
        if here:
            recorded.append((res, here))
    assert len(recorded) == len(found) or (not recorded and "is recorded yet" in text)
    for sentence, (res, here) in zip(found, recorded):
        for h in here:
            if h.baseline is None:
                assert f"{h.arm_words} reaches " in sentence
                continue
            row = next(r for r in effects(res, baseline=h.baseline) if r["arm"] == h.arm)
            said = {"clear gain": f"{h.arm_words} beats {h.baseline_words}: ",
                    "clear loss": f"{h.arm_words} falls behind {h.baseline_words}: "}
            for label, phrase in said.items():
                assert (phrase in sentence) == (row["label"] == label and row["n"] >= 2), (module, h, row["label"])
            if row["label"] == "inconclusive":
                assert f"{h.arm_words} against {h.baseline_words}: " in sentence
            assert f"{row['n']} seeds" in sentence or row["n"] < 2


# --- the notebooks ------------------------------------------------------------------------------------------------

def _summary_section(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                 and any(l.startswith("## ") and "Summary" in l for l in "".join(c["source"]).splitlines()))
    end = next((i for i in range(start + 1, len(cells)) if cells[i]["cell_type"] == "markdown"
                and ("navigation" in cells[i]["metadata"].get("tags", []) or "".join(cells[i]["source"]).startswith("## "))),
               len(cells))
    return cells[start:end]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("0*.ipynb")), ids=lambda p: p.name)
def test_every_summary_glues_its_own_modules_findings(path):
    module = path.name[:2]
    section = _summary_section(path)
    code = [c for c in section if c["cell_type"] == "code"]
    glued = [c for c in code if f'ac.glue("summary_{module}", ac.module_summary("{module}"))' in "".join(c["source"])]
    assert len(glued) == 1, f"{path.name}: the summary has no glue cell of its own module's findings"
    assert "remove-input" in glued[0]["metadata"].get("tags", [])
    assert section.index(glued[0]) == 1, f"{path.name}: the findings go right under the summary's bullets"
    assert not any("ac.findings" in "".join(c["source"]) for c in code), f"{path.name}: the summary lists every arm"
    prose = "".join("".join(c["source"]) for c in section if c["cell_type"] == "markdown")
    assert "printed by the cell below" not in prose and "{glue" not in prose


def test_glue_uses_myst_nb_when_there_and_displays_markdown_without_it(monkeypatch, capsys):
    import IPython.display

    try:
        import myst_nb
    except ImportError:
        myst_nb = None
    import IPython

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)            # a plain script: the text is printed
    ac.glue("summary_xx", "plain text")
    assert shown == [] and capsys.readouterr().out == "plain text\n"
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())        # a notebook kernel from here on
    monkeypatch.setitem(sys.modules, "myst_nb", None)                   # Colab: no myst-nb
    ac.glue("summary_xx", "**found**: +1.0 points")
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Markdown) and shown[0].data == "**found**: +1.0 points"

    if myst_nb is None:
        pytest.skip("myst-nb (the site's build tool) is not installed")
    monkeypatch.setitem(sys.modules, "myst_nb", myst_nb)
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: calls.append((name, obj, display)))
    ac.glue("summary_xx", "text")
    assert len(calls) == 1 and calls[0][0] == "summary_xx" and calls[0][2] is True
    assert isinstance(calls[0][1], IPython.display.Markdown) and calls[0][1].data == "text"
    assert len(shown) == 1                                                # myst-nb's glue displays it itself
