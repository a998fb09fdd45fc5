"""Module 06 exercises: the reference solutions earn full marks and equal the package's PAM / CAM; known-wrong
variants (mutants) earn less, with a hint that names the mistake."""
import pytest
import torch
from torch.testing import assert_close

from attncourse.blocks.dual import ChannelSelfAttention, PositionAttention
from attncourse.exercises import QUESTIONS, grade, list_exercises
from attncourse.exercises import m06_danet as ex
from attncourse.models.segmentation import SegNet
from exercise_helpers import assert_scores_less

KEYS = ["06.pam_attention", "06.cam_attention", "06.parallel_fusion"]


def test_module_registers_at_least_three_exercises_and_the_questions():
    assert set(KEYS) <= set(list_exercises("06."))
    assert {"06.predict_pam_size", "06.predict_max_trick", "06.predict_fcn_miou", "06.interpret_parallel"} <= set(QUESTIONS)


@pytest.mark.parametrize("key", KEYS)
def test_reference_solutions_earn_full_marks(key):
    earned, total, results = grade(key, {"06.pam_attention": ex.pam_attention, "06.cam_attention": ex.cam_attention,
                                         "06.parallel_fusion": ex.parallel_fusion}[key])
    assert earned == total, [r.hint for r in results if not r.passed]


def test_reference_solutions_match_the_package():
    torch.manual_seed(0)
    pam = PositionAttention(16)
    x = torch.randn(2, 16, 3, 5)
    assert_close(ex.pam_attention(pam.query(x).flatten(2), pam.key(x).flatten(2)), pam.attention_maps(x)["position"])
    assert_close(ex.cam_attention(x.flatten(2)), ChannelSelfAttention(16).attention_maps(x)["channel"])
    model = SegNet(1, 11, "danet").eval()
    feats = model.backbone(torch.rand(2, 1, 48, 48))
    p, c = model.head.branches
    assert_close(ex.parallel_fusion(feats, p, c), model.head.fused(feats))


def _energy(t, p):
    return t.transpose(1, 2) @ p


@pytest.mark.parametrize("mutant,hint", [
    (lambda q, k: (_energy(q, k) / q.shape[1] ** 0.5).softmax(-1), "no scale"),
    (lambda q, k: _energy(q, k).softmax(1), "wrong axis"),
    (lambda q, k: _energy(q, k), "softmax is missing"),
    (lambda q, k: (q @ k.transpose(1, 2)).softmax(-1), "over channels"),
    (lambda q, k: _energy(q, k).exp() / _energy(q, k).exp().sum(-1, keepdim=True), None),  # overflows on large energies
    (lambda q, k: _energy(q, k).softmax(-1).detach(), "autograd"),
])
def test_pam_mutants(mutant, hint):
    assert_scores_less("06.pam_attention", mutant, hint)


def _e(a):
    return a @ a.transpose(1, 2)


@pytest.mark.parametrize("mutant,hint", [
    (lambda a: _e(a).softmax(-1), "the paper's equation"),
    (lambda a: (_e(a) - _e(a).amax(-1, keepdim=True)).softmax(-1), None),
    (lambda a: (_e(a).amax(-1, keepdim=True) - _e(a)).softmax(1), "wrong axis"),
    (lambda a: (a.transpose(1, 2) @ a).softmax(-1), "position × position"),
    (lambda a: torch.exp(-_e(a)) / torch.exp(-_e(a)).sum(-1, keepdim=True), None),  # no max trick: nan on large inputs
])
def test_cam_mutants(mutant, hint):
    assert_scores_less("06.cam_attention", mutant, hint)


def test_cam_accepts_softmax_of_minus_e_and_a_global_max():
    """Mathematically equal forms earn full marks: the max is only a shift."""
    assert grade("06.cam_attention", lambda a: torch.softmax(-_e(a), -1))[0] == 3
    assert grade("06.cam_attention", lambda a: (_e(a).amax((1, 2), keepdim=True) - _e(a)).softmax(-1))[0] == 3


@pytest.mark.parametrize("mutant,hint", [
    (lambda x, p, c: c(p(x)), "in series"),
    (lambda x, p, c: (p(x) + c(x)) / 2, "averaged"),
    (lambda x, p, c: p(x) * c(x), "multiplied"),
    (lambda x, p, c: p(x) + c(x) + x, "residuals live inside"),
    (lambda x, p, c: p(x), "only the PAM"),
])
def test_fusion_mutants(mutant, hint):
    assert_scores_less("06.parallel_fusion", mutant, hint)


def test_fixed_answer_questions():
    from attncourse.exercises.core import _grade_question

    assert _grade_question(QUESTIONS["06.predict_pam_size"], 20736)[0] == 1
    assert _grade_question(QUESTIONS["06.predict_max_trick"], "a")[0] == 1
    assert _grade_question(QUESTIONS["06.predict_max_trick"], "b")[0] == 0


# The fairness suite (tests/test_exercises_fairness.py) reads these: correct answers in different styles, and the
# common mistakes with a fragment of the hint that must name each.
CORRECT = {
    "06.pam_attention": {
        "reference": ex.pam_attention,
        "einsum": lambda q, k: torch.einsum("bdi,bdj->bij", q, k).softmax(-1),
        "matmul + exp / sum with the max": lambda q, k: (lambda e: (e - e.amax(-1, keepdim=True)).exp()
                                                       / (e - e.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True))(
                                                           q.transpose(1, 2) @ k),
    },
    "06.cam_attention": {
        "reference": ex.cam_attention,
        "softmax of -E": lambda a: torch.softmax(-_e(a), -1),
        "global max": lambda a: (_e(a).amax((1, 2), keepdim=True) - _e(a)).softmax(-1),
        "einsum": lambda a: (lambda e: (e.amax(-1, keepdim=True) - e).softmax(-1))(torch.einsum("bcn,bdn->bcd", a, a)),
    },
    "06.parallel_fusion": {
        "reference": ex.parallel_fusion,
        "sum of a list": lambda x, p, c: sum([p(x), c(x)]),
        "torch.stack": lambda x, p, c: torch.stack([p(x), c(x)]).sum(0),
    },
}
MISTAKES = {
    "06.pam_attention": [(lambda q, k: (_energy(q, k) / q.shape[1] ** 0.5).softmax(-1), "no scale"),
                         (lambda q, k: _energy(q, k).softmax(1), "wrong axis"),
                         (lambda q, k: _energy(q, k), "softmax is missing"),
                         (lambda q, k: (q @ k.transpose(1, 2)).softmax(-1), "over channels")],
    "06.cam_attention": [(lambda a: _e(a).softmax(-1), "the paper's equation"),
                         (lambda a: (_e(a).amax(-1, keepdim=True) - _e(a)).softmax(1), "wrong axis"),
                         (lambda a: (a.transpose(1, 2) @ a).softmax(-1), "position × position")],
    "06.parallel_fusion": [(lambda x, p, c: c(p(x)), "in series"), (lambda x, p, c: (p(x) + c(x)) / 2, "averaged"),
                           (lambda x, p, c: p(x) * c(x), "multiplied"), (lambda x, p, c: p(x), "only the PAM")],
}
