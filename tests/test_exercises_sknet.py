"""Module 07 exercises: the reference solutions earn full marks (in several styles), equal the package's blocks, and
known-wrong variants (mutants) earn less with a hint that names the mistake. ``FAIRNESS_07`` holds the entries in
the format of ``tests/test_exercises_fairness.py`` (to be merged there: that suite requires one per exercise)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from attncourse.exercises import QUESTIONS, check, grade, list_exercises
from attncourse.exercises import m07_sknet as ex
from exercise_helpers import assert_scores_less

KEYS = ["07.sk_fuse_select", "07.highway_gate", "07.condconv_routing"]


def test_module_registers_three_exercises_and_two_questions():
    assert set(KEYS) <= set(list_exercises("07."))
    assert {"07.predict_condconv_params", "07.predict_temperature"} <= set(QUESTIONS)


def test_reference_solutions_match_the_package_blocks():
    from attncourse.blocks.branch import CondConv2d, Highway, SelectiveKernel

    sk = SelectiveKernel(16, num_branches=3).eval()
    x = torch.randn(2, 16, 6, 5)
    u = sk.split(x)
    a = sk.attn
    reduce = lambda s: a.act(a.bn(a.fc_reduce(s[..., None, None]))).flatten(1)  # noqa: E731
    select = lambda z: a.fc_select(z[..., None, None]).flatten(1)  # noqa: E731
    assert_close(ex.sk_fuse_select(u, reduce, select), sk(x))

    hw = Highway(8)
    x = torch.randn(2, 8, 5, 4)
    assert_close(ex.highway_layer(x, hw.transform, hw.gate), hw(x))

    cc = CondConv2d(8, 6, num_experts=3)
    x = torch.randn(3, 8, 5, 5)
    kernels = ex.condconv_kernels(x, cc.routing_fn, cc.weight)
    expected = torch.cat([F.conv2d(x[i:i + 1], kernels[i], padding=1) for i in range(3)])
    assert_close(expected, cc(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- correct answers in several styles
def _sk_loop(u, reduce, select):
    n, m, c = u.shape[:3]
    s = sum(u[:, i] for i in range(m)).mean(dim=(-1, -2))
    logits = select(reduce(s)).view(n, m, c)
    e = torch.exp(logits - logits.amax(1, keepdim=True))
    a = e / e.sum(1, keepdim=True)
    return sum(a[:, i, :, None, None] * u[:, i] for i in range(m))


def _sk_einsum(u, reduce, select):
    n, m, c = u.shape[:3]
    a = F.softmax(select(reduce(F.adaptive_avg_pool2d(u.sum(1), 1).flatten(1))).reshape(n, m, c), dim=1)
    return torch.einsum("nmc,nmchw->nchw", a, u)


def _hw_lerp(x, transform, gate):
    return torch.lerp(x, F.relu(transform(x)), torch.sigmoid(gate(x)))


def _hw_carry(x, transform, gate):
    t = gate(x).sigmoid()
    carry = 1 - t
    return transform(x).clamp(min=0) * t + carry * x


def _cc_matmul(x, routing_fn, experts):
    r = torch.sigmoid(routing_fn(F.adaptive_avg_pool2d(x, 1).flatten(1)))
    return (r @ experts.flatten(1)).reshape(len(x), *experts.shape[1:])


def _cc_loop(x, routing_fn, experts):
    r = torch.sigmoid(routing_fn(x.mean(dim=(2, 3))))
    return torch.stack([sum(r[n, e] * experts[e] for e in range(len(experts))) for n in range(len(x))])


CORRECT = {
    "07.sk_fuse_select": {"reference": ex.sk_fuse_select, "loops and exp": _sk_loop, "einsum": _sk_einsum},
    "07.highway_gate": {"reference": ex.highway_layer, "torch.lerp": _hw_lerp, "carry gate": _hw_carry},
    "07.condconv_routing": {"reference": ex.condconv_kernels, "matmul": _cc_matmul, "loop": _cc_loop},
}


@pytest.mark.parametrize("key,style", [(k, s) for k, styles in CORRECT.items() for s in styles])
def test_correct_answers_earn_full_marks(key, style):
    earned, total, results = grade(key, CORRECT[key][style])
    assert earned == total, [r.hint for r in results if not r.passed]


# --------------------------------------------------------------------------- mistakes, each named
def _sk(**kw):
    def f(u, reduce, select):
        n, m, c = u.shape[:3]
        fused = u.mean(1) if kw.get("mean_fuse") else u.sum(1)
        s = fused.amax((2, 3)) if kw.get("max_pool") else fused.mean((2, 3))
        logits = select(reduce(s))
        if kw.get("layout"):
            a = torch.softmax(logits.reshape(n, c, m), dim=2).transpose(1, 2)
        elif kw.get("dim2"):
            a = torch.softmax(logits.reshape(n, m, c), dim=2)
        elif kw.get("sigmoid"):
            a = torch.sigmoid(logits.reshape(n, m, c))
        else:
            a = torch.softmax(logits.reshape(n, m, c), dim=1)
        if kw.get("weights"):
            return a
        return (a[..., None, None] * u).sum(1)
    return f


def _sk_weights_no_grad(u, reduce, select):  # the branch weights under no_grad: U still gets a gradient
    n, m, c = u.shape[:3]
    with torch.no_grad():
        a = torch.softmax(select(reduce(u.sum(1).mean((2, 3)))).reshape(n, m, c), dim=1)
    return (a[..., None, None] * u).sum(1)


def _hw_gate_no_grad(x, transform, gate):  # the gate under no_grad: x still gets a gradient
    with torch.no_grad():
        t = torch.sigmoid(gate(x))
    return torch.relu(transform(x)) * t + x * (1 - t)


def _cc_no_grad(x, routing_fn, experts):  # the notebook's derivation copied under no_grad
    with torch.no_grad():
        r = torch.sigmoid(routing_fn(x.mean((2, 3))))
        return torch.einsum("ne,eoikl->noikl", r, experts)


def _hw(kind):
    def f(x, transform, gate):
        t, h = torch.sigmoid(gate(x)), torch.relu(transform(x))
        return {"swapped": lambda: h * (1 - t) + x * t, "no_sigmoid": lambda: h * gate(x) + x * (1 - gate(x)),
                "no_relu": lambda: transform(x) * t + x * (1 - t), "no_carry": lambda: h * t,
                "residual": lambda: h + x, "carry_t": lambda: h * t + x * t}[kind]()
    return f


def _cc(kind):
    def f(x, routing_fn, experts):
        z = routing_fn(x.amax((2, 3)) if kind == "max" else x.mean((2, 3)))
        r = {"softmax": lambda: torch.softmax(z, 1), "no_sigmoid": lambda: z}.get(kind, lambda: torch.sigmoid(z))()
        if kind == "uniform":
            return experts.mean(0).expand(len(x), *experts.shape[1:])
        if kind == "weights":
            return r
        return torch.einsum("ne,eoikl->noikl", r, experts)
    return f


MISTAKES = {
    "07.sk_fuse_select": [(_sk(dim2=True), "across channels"), (_sk(sigmoid=True), "a sigmoid per branch"),
                          (_sk(mean_fuse=True), "averaged before pooling"), (_sk(max_pool=True), "max-pooled"),
                          (_sk(layout=True), "branch-major"), (_sk(weights=True), "that is the weights"),
                          (_sk_weights_no_grad, "no gradient reached these parameters: reduce.weight")],
    "07.highway_gate": [(_hw("swapped"), "swapped"), (_hw("no_sigmoid"), "needs a sigmoid"),
                        (_hw("no_relu"), "the ReLU on the transform"), (_hw("no_carry"), "carry term"),
                        (_hw("residual"), "residual sum"), (_hw("carry_t"), "x·T"),
                        (_hw_gate_no_grad, "no gradient reached these parameters: gate.weight")],
    "07.condconv_routing": [(_cc("softmax"), "independent sigmoids"), (_cc("no_sigmoid"), "need a sigmoid"),
                            (_cc("max"), "AVERAGE pooling"), (_cc("uniform"), "same weight"),
                            (_cc("weights"), "that is the routing weights"),
                            (_cc_no_grad, "not connected to the autograd graph")],
}


@pytest.mark.parametrize("key,i", [(k, i) for k, ms in MISTAKES.items() for i in range(len(ms))])
def test_mistakes_score_less_and_are_named(key, i):
    learner, hint = MISTAKES[key][i]
    _, results = assert_scores_less(key, learner, hint)
    others = [h for j, (_, h) in enumerate(MISTAKES[key]) if j != i]
    failing = " | ".join(r.hint for r in results if not r.passed)
    assert not any(h in failing for h in others), failing  # no hint names a mistake the learner did not make


def test_a_stub_scores_zero_and_check_never_raises(capsys):
    def stub(*args):
        raise NotImplementedError

    for key in KEYS:
        assert check(key, stub) == 0
    assert "not implemented" in capsys.readouterr().out


def test_detached_outputs_fail_the_gradient_case():
    earned, total, results = grade("07.sk_fuse_select", lambda u, r, s: ex.sk_fuse_select(u, r, s).detach())
    assert earned < total and any("autograd" in r.hint for r in results if not r.passed)


def test_questions_answers_and_explanations():
    q = QUESTIONS["07.predict_condconv_params"]
    expected = (4 * 64 * 64 * 9 + 64 * 4 + 4) / (64 * 64 * 9)
    assert q.correct() == pytest.approx(expected) and "FLOPs" in q.explain(q.correct())
    assert check("07.predict_condconv_params", 4.0) == 1 and check("07.predict_condconv_params", 1.0) == 0
    assert check("07.predict_temperature", "a") == 1 and check("07.predict_temperature", "b") == 0
