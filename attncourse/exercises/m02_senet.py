"""Exercises of module 02 (SENet): squeeze, excitation, the SE-ResNet block and ECA's kernel size.

=======================  ======  ===================================================================
key                      points  the learner writes
=======================  ======  ===================================================================
``02.squeeze``              3    ``squeeze(x, op)``: per-channel ``"avg"``, ``"max"`` or ``"std"``, ``[N, C, 1, 1]``
``02.excitation``           4    ``Excitation(channels, reduction)``: FC C→C/r → ReLU → FC → C → sigmoid
``02.se_resnet_block``      3    ``se_resnet_forward(x, branch, se, shortcut)``: SE before the add
``02.eca_kernel_size``      2    ``eca_kernel_size(channels, gamma=2, beta=1)``: ECA's adaptive k
=======================  ======  ===================================================================

Questions (counted apart, 1 point each): ``02.predict_se_gain`` and ``02.interpret_task_contrast`` (choices,
read from the recorded ``senet_channel_cue`` and ``senet_cluttered`` runs).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .core import (_close, bucket, compare_gradient, compare_number_cases, compare_numbers, compare_tensors, gradient_flow,
                   match_mistakes, mlp_readings, recorded_gain, recorded_note, register_exercise, register_question, run_case,
                   seeded_generator, tensor_type_hint)
from .side_properties import side_property

__all__ = ["squeeze", "Excitation", "se_resnet_forward", "eca_kernel_size"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
def squeeze(x: torch.Tensor, op: str = "avg") -> torch.Tensor:
    """One number per channel, pooled over all positions: ``[N, C, H, W] -> [N, C, 1, 1]``.

    ``op``: ``"avg"`` (SE's global average pooling), ``"max"`` or ``"std"`` (population standard deviation,
    ``unbiased=False``).
    """
    if op == "avg":
        return x.mean(dim=(2, 3), keepdim=True)
    if op == "max":
        return x.amax(dim=(2, 3), keepdim=True)
    if op == "std":
        return x.std(dim=(2, 3), unbiased=False, keepdim=True)
    raise ValueError(f"squeeze: unknown op {op!r}")


class Excitation(nn.Module):
    """SE's excitation: ``z [N, C, 1, 1] → FC C→C/r (bias) → ReLU → FC C/r→C (bias) → sigmoid → [N, C, 1, 1]``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1)  # an FC on the pooled vector is a 1×1 conv
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))


def se_resnet_forward(x: torch.Tensor, branch, se, shortcut) -> torch.Tensor:
    """One SE-ResNet block: SE rescales the residual branch *before* the add, then ReLU.

    ``branch(x)`` is the residual branch (conv-BN-ReLU-conv-BN), ``se(u)`` returns ``u`` rescaled, and
    ``shortcut(x)`` is the identity or a projection. ``out = ReLU(se(branch(x)) + shortcut(x))``.
    """
    return torch.relu(se(branch(x)) + shortcut(x))


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA's kernel size ``k = |log2(C)/γ + β/γ|_odd``: truncate to an int ``t``; ``k = t`` if odd else ``t + 1``."""
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


# --------------------------------------------------------------------------------------------------
# 02.squeeze
# --------------------------------------------------------------------------------------------------
_SHAPES = [(2, 3, 5, 5), (1, 4, 7, 3), (3, 8, 4, 6), (2, 1, 2, 9)]  # batch 1, one channel, non-square


def _case_squeeze(learner, x: torch.Tensor, op: str) -> str | None:
    expected = squeeze(x, op)
    pool = {"avg": lambda d: x.mean(dim=d, keepdim=True), "max": lambda d: x.amax(dim=d, keepdim=True),
            "std": lambda d: x.std(dim=d, unbiased=False, keepdim=True)}[op]
    mistakes = {
        "pooled over the channels (dim=1): that is the squeeze along the channel direction (a spatial map); "
        "pool over the spatial dims (2, 3)": pool(1),
        "pooled over H only (dim=2); pool over both H and W, dim=(2, 3)": pool(2),
        "pooled over W only (dim=3); pool over both H and W, dim=(2, 3)": pool(3),
        "pooled over everything but the batch; keep one value per channel": pool((1, 2, 3)),
    }
    if op == "avg":
        mistakes["that is the sum over space; divide by H·W (use .mean)"] = x.sum(dim=(2, 3), keepdim=True)
        mistakes["that is the maximum; op='avg' asks for the mean"] = x.amax(dim=(2, 3), keepdim=True)
    if op == "max":
        mistakes["that is the mean; op='max' asks for the maximum (x.amax)"] = x.mean(dim=(2, 3), keepdim=True)
    if op == "std":
        mistakes["that is the unbiased (N−1) std; use the population std: unbiased=False (correction=0)"] = \
            x.std(dim=(2, 3), keepdim=True)
        mistakes["that is the variance; take its square root"] = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    got = learner(x.clone(), op)
    return compare_tensors(got, expected, f"squeeze(x, {op!r})", atol=1e-4, mistakes=mistakes)


def _case_squeeze_grad(learner) -> str | None:
    x = torch.randn(2, 3, 4, 5, generator=seeded_generator(1), requires_grad=True)
    out = learner(x, "avg")
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return "the output is not connected to x's autograd graph (no .detach(), .numpy() or torch.no_grad())"
    out.sum().backward()
    if x.grad is None:
        return "no gradient reached x"
    return compare_gradient(out, squeeze(x.detach(), "avg"), x.grad, torch.full_like(x, 1 / 20),
                            "the gradient of sum(squeeze(x, 'avg')) w.r.t. x",
                            mistakes={"gradient is 1 everywhere: a sum, not a mean": torch.ones_like(x)})


@register_exercise("02.squeeze", title="Squeeze: one statistic per channel (avg, max, std)", points=3, solution=squeeze)
def _check_squeeze(learner):
    gen = seeded_generator(0)
    for op in ("avg", "max", "std"):
        for shape in _SHAPES[:3] if op != "avg" else _SHAPES:
            x = torch.randn(shape, generator=gen) * 2 + 0.5
            yield run_case(f"op={op!r}, x {list(shape)} -> [N, C, 1, 1]", _case_squeeze, learner, x, op)
    yield side_property(run_case("gradient flows back to x", _case_squeeze_grad, learner))


# --------------------------------------------------------------------------------------------------
# 02.excitation
# --------------------------------------------------------------------------------------------------
def _expected_params(c: int, r: int) -> int:
    d = c // r
    return 2 * c * d + d + c  # = 2·C²/r + C/r + C when r divides C


def _build(learner, c: int, r: int):
    module = learner(c, r)
    if not isinstance(module, nn.Module):
        return None, f"Excitation({c}, {r}) should be an nn.Module (subclass nn.Module), got {type(module).__name__}"
    return module.eval(), None


def _case_excitation_params(learner, c: int, r: int) -> str | None:
    module, err = _build(learner, c, r)
    if err:
        return err
    got = sum(p.numel() for p in module.parameters())
    d = c // r
    mistakes = [
        ("the FC layers need biases (C/r + C parameters)", 2 * c * d),
        ("only one of the two FC layers has a bias", 2 * c * d + c),
        ("only one of the two FC layers has a bias", 2 * c * d + d),
        ("the hidden layer should have C // r units (reduction r), not C·r", 2 * c * c * r + c * r + c),
        ("the hidden layer should have C // r units: the bottleneck is missing", 2 * c * c + 2 * c),
        ("two FC layers (C→C/r and C/r→C), not one", c * d + d),
        ("two FC layers (C→C/r and C/r→C), not one", c * c + c),
    ]
    return compare_numbers(got, _expected_params(c, r), f"parameters of Excitation({c}, {r})", integer=True,
                           mistakes=mistakes)


_EX_RESCALED = "you returned z rescaled by the weights (z·σ(…)); return the weights σ(…) themselves, [N, C, 1, 1]"
_EX_RELU_OUT = ("a ReLU right before the sigmoid: the weights can never go below 0.5 (σ(0) = 0.5); the ReLU belongs "
                "between the two FC layers only")
_EX_HIDDEN = "the activation between the two FC layers must be a ReLU, not {} (the sigmoid comes last)"
_EX_NO_RELU = "there is no ReLU between the two FC layers: FC → ReLU → FC → sigmoid"
_EX_NO_SIGMOID = "the final sigmoid is missing: the weights are σ(FC2(ReLU(FC1 z)))"
_EX_SOFTMAX = ("the weights sum to 1 over the channels: that is a softmax, which makes channels compete; SE gives each "
               "channel an independent sigmoid weight")
_EX_UNREADABLE = ("could not read your parameters as two FC layers C → hidden → C (nn.Linear, 1×1 nn.Conv2d, kernel-1 "
                  "nn.Conv1d or weight matrices, with or without biases), so the values cannot be compared")


def _ex_variants(f, z: torch.Tensor):
    """The weights for the MLP ``f`` read from the learner's parameters, and what each known mistake would give."""
    zf = z.reshape(z.shape[0], -1)
    v = lambda t: t.reshape(z.shape)  # noqa: E731
    logits = f(zf)
    right = v(torch.sigmoid(logits))
    mistakes = [
        (_EX_RESCALED, z * right),
        (_EX_RELU_OUT, v(torch.sigmoid(torch.relu(logits)))),
        (_EX_RELU_OUT, v(torch.sigmoid(torch.relu(f(zf, lambda t: t))))),  # the ReLU moved to the end
        (_EX_HIDDEN.format("a sigmoid"), v(torch.sigmoid(f(zf, torch.sigmoid)))),
        (_EX_HIDDEN.format("a tanh"), v(torch.sigmoid(f(zf, torch.tanh)))),
        (_EX_HIDDEN.format("a GELU"), v(torch.sigmoid(f(zf, torch.nn.functional.gelu)))),
        (_EX_NO_RELU, v(torch.sigmoid(f(zf, lambda t: t)))),
        (_EX_NO_SIGMOID, v(logits)),
        (_EX_SOFTMAX, v(torch.softmax(logits, dim=1))),
    ]
    return right, mistakes


def _ex_weights_of(s: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The weights inside the learner's output: ``s`` itself, or ``s / z`` when ``s`` is z·w (w in (0, 1))."""
    if ((s > 0) & (s < 1)).all():
        return s, False
    big = z.abs() > 1e-3
    q = torch.where(big, s / torch.where(big, z, torch.ones_like(z)), torch.full_like(s, 0.5))
    if ((q > 0) & (q < 1)).all():
        return q, True
    return s, False


def _ex_diagnose(module: nn.Module, z: torch.Tensor, s: torch.Tensor) -> str | None:
    """A specific hint when the output ``s`` is a known mistake (read with the learner's own weights, or by behaviour)."""
    c = z.shape[1]
    mistakes = [(h, t) for f in mlp_readings(module, c, c) for right, ms in [_ex_variants(f, z)] for h, t in ms
                if not _close(t, right, 1e-5, 1e-4)]
    hint = match_mistakes(s, None, mistakes)
    if hint:
        return hint
    if s.shape == z.shape and torch.isfinite(s).all():
        w, rescaled = _ex_weights_of(s, z)
        if rescaled:
            return _EX_RESCALED
        if ((w > 0) & (w < 1)).all() and float(w.min()) >= 0.5 - 1e-6 and s.numel() >= 8:
            return _EX_RELU_OUT
    return None


def _case_excitation_output(learner, c: int, r: int, n: int) -> str | None:
    module, err = _build(learner, c, r)
    if err:
        return err
    z = torch.randn(n, c, 1, 1, generator=seeded_generator(c * 31 + r)) * 3
    with torch.no_grad():
        s = module(z)
    if not isinstance(s, torch.Tensor):
        return f"forward should return a tensor, got {type(s).__name__}"
    s = s.detach()
    if s.shape != z.shape:
        hint = " — reshape the result back to [N, C, 1, 1]" if s.numel() == z.numel() else ""
        return f"output has shape {list(s.shape)}, expected {list(z.shape)}{hint}"
    if not torch.isfinite(s).all():
        return "output contains NaN or inf"
    if not ((s > 0) & (s < 1)).all():
        with torch.no_grad():
            hint = _ex_diagnose(module, z, s)  # why they are out of range, when that is recognisable
        if hint:
            return hint
        return (f"the weights must lie in (0, 1) (the excitation ends with a sigmoid), got values in "
                f"[{float(s.min()):.3g}, {float(s.max()):.3g}]")
    if torch.allclose(s.sum(dim=1), torch.ones_like(s.sum(dim=1)), atol=1e-5):
        return _EX_SOFTMAX
    if n > 1:  # each sample's weights depend on that sample only
        with torch.no_grad():
            one = module(z[:1])
        if one.shape != s[:1].shape or not torch.allclose(one, s[:1], atol=1e-5):
            return "the weights of sample 0 change when other samples are in the batch (no mixing across the batch)"
    return None


def _case_excitation_values(learner, c: int, r: int) -> str | None:
    """The weights against σ(FC2(ReLU(FC1 z))) computed with the learner's own two layers, read by role."""
    module, err = _build(learner, c, r)
    if err:
        return err
    z = torch.randn(6, c, 1, 1, generator=seeded_generator(c * 13 + r)) * 2
    with torch.no_grad():
        s = module(z)
        readings = mlp_readings(module, c, c)
        variants = [_ex_variants(f, z) for f in readings]
    if not readings:
        return _EX_UNREADABLE
    if not isinstance(s, torch.Tensor) or s.shape != z.shape:
        return compare_tensors(s, variants[0][0], "the weights")
    s = s.detach()
    if any(_close(s, right, 1e-5, 1e-4) for right, _ in variants):
        return None
    with torch.no_grad():
        hint = _ex_diagnose(module, z, s)
    if hint:
        return hint
    expected = min((right for right, _ in variants), key=lambda t: float((t - s).abs().max()))
    return compare_tensors(s, expected, "the weights σ(FC2(ReLU(FC1 z))) with your layers' weights")


def _case_excitation_nonlinear(learner, c: int, r: int) -> str | None:
    """Without the ReLU, logit(s) would be an affine function of z."""
    module, err = _build(learner, c, r)
    if err:
        return err
    gen = seeded_generator(7)
    z1, z2 = torch.randn(8, c, 1, 1, generator=gen) * 2, torch.randn(8, c, 1, 1, generator=gen) * 2
    with torch.no_grad():
        s1, s2, s12 = module(z1), module(z2), module(z1 + z2)
        s0 = module(torch.zeros(1, c, 1, 1))
    if not all(isinstance(t, torch.Tensor) for t in (s1, s2, s12, s0)) or s1.shape != z1.shape:
        return f"output has shape {list(getattr(s1, 'shape', []))}, expected {list(z1.shape)}"
    if not all(((t > 0) & (t < 1)).all() for t in (s1, s2, s12, s0)):
        g = lambda s: s.double()  # noqa: E731  (no sigmoid to undo: test the output itself)
    else:
        g = lambda s: torch.logit(s.double().clamp(1e-12, 1 - 1e-12))  # noqa: E731
    if torch.allclose(g(s12), g(s1) + g(s2) - g(s0), atol=1e-4):
        return "the excitation is affine before the sigmoid: put a ReLU between the two FC layers"
    return None


def _case_excitation_bottleneck(learner, c: int, r: int) -> str | None:
    """The hidden layer has C // r units: read from the layers, or (layers not readable) from the rank of dσ/dz."""
    module, err = _build(learner, c, r)
    if err:
        return err
    d = c // r
    widths = sorted({f.hidden for f in mlp_readings(module, c, c)})
    if widths:
        if d in widths:
            return None
        return (f"the hidden layer has {widths[0]} units: the first FC must reduce C = {c} to C // r = {d} units "
                "(the bottleneck)")
    module = module.double()
    gen = seeded_generator(11)
    worst = 0
    for _ in range(4):
        z = torch.randn(1, c, 1, 1, generator=gen, dtype=torch.float64)

        def weights(t):
            return _ex_weights_of(module(t), t)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(weights, z).reshape(c, c)
        worst = max(worst, int(torch.linalg.matrix_rank(jac, rtol=1e-8)))
    if worst > d:
        return (f"the weights depend on z through {worst} directions, more than the C // r = {d} bottleneck "
                "units allow: the first FC must reduce C to C // r")
    return None


def _case_excitation_grad(learner, c: int, r: int) -> str | None:
    module, err = _build(learner, c, r)
    if err:
        return err
    if not any(True for _ in module.parameters()):
        return "the module has no parameters: the excitation is learned (two FC layers)"
    module.train()
    gen = seeded_generator(3)
    inputs = [torch.randn(4, c, 1, 1, generator=gen), torch.randn(6, c, 1, 1, generator=gen) * 3 - 1]
    return gradient_flow(module, inputs, module, input_name="the input z", output_name="the weights")


@register_exercise("02.excitation", title="Excitation: the SE bottleneck MLP as a module", points=4, solution=Excitation)
def _check_excitation(learner):
    for c, r in [(16, 4), (64, 16), (32, 2)]:
        yield side_property(run_case(f"parameter count 2C²/r + C/r + C for C={c}, r={r}", _case_excitation_params,
                                     learner, c, r))
    for c, r, n in [(16, 4, 3), (64, 16, 1), (8, 2, 5)]:
        yield side_property(run_case(f"C={c}, r={r}, batch {n}: shape [N, C, 1, 1], values in (0, 1)",
                                     _case_excitation_output, learner, c, r, n))
    for c, r in [(16, 4), (24, 3)]:
        yield run_case(f"C={c}, r={r}: the weights equal σ(FC2(ReLU(FC1 z))) computed with your layers",
                       _case_excitation_values, learner, c, r)
    yield side_property(run_case("a ReLU between the two FC layers", _case_excitation_nonlinear, learner, 16, 4))
    yield side_property(run_case("the bottleneck has C // r units", _case_excitation_bottleneck, learner, 32, 8))
    yield side_property(run_case("gradients reach z and every parameter", _case_excitation_grad, learner, 16, 4))


# --------------------------------------------------------------------------------------------------
# 02.se_resnet_block
# --------------------------------------------------------------------------------------------------
class _Spy(nn.Module):
    """Wraps a module and records the inputs it is called with."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, t):
        self.calls.append(t.detach().clone())
        return self.inner(t)


def _parts(c_in: int, c_out: int, stride: int, seed: int):
    from ..blocks.channel import SEBlock

    torch.manual_seed(seed)
    branch = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                           nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
    for m in branch.modules():  # non-trivial BN statistics so eval mode is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.3, 0.3)
    se = SEBlock(c_out, reduction=2)
    with torch.no_grad():  # a strong excitation so SE's position changes the output visibly
        se.fc2.weight.mul_(4)
    shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    return branch.eval(), se.eval(), shortcut.eval()


def _case_se_resnet(learner, c_in: int, c_out: int, stride: int, seed: int) -> str | None:
    branch, se, shortcut = _parts(c_in, c_out, stride, seed)
    x = torch.randn(2, c_in, 7, 6, generator=seeded_generator(seed)) * 1.5
    with torch.no_grad():
        b, s = branch(x), shortcut(x)
        expected = torch.relu(se(b) + s)
        mistakes = {
            "SE was applied after the add; the paper rescales the residual branch *before* adding the shortcut":
                torch.relu(se(b + s)),
            "SE was applied after the final ReLU; rescale the residual branch before the add":
                se(torch.relu(b + s)),
            "the shortcut (residual connection) is missing: add shortcut(x) to the rescaled branch":
                torch.relu(se(b)),
            "the final ReLU is missing (ReLU after the add)": se(b) + s,
            "SE was applied to the input x; it rescales the output of the residual branch":
                torch.relu(branch(se(x)) + s) if c_in == c_out else None,
            "SE was applied to the shortcut; it rescales the residual branch": torch.relu(b + se(s)),
            "SE was not applied": torch.relu(b + s),
            "the shortcut was added to x instead of computed by shortcut(x) (a projection when shapes change)":
                torch.relu(se(b) + x) if x.shape == b.shape else None,
        }
        mistakes = {k: v for k, v in mistakes.items() if v is not None}
        spy_se = _Spy(se)
        got = learner(x.clone(), branch, spy_se, shortcut)
    hint = compare_tensors(got, expected, "block output", atol=1e-4, mistakes=mistakes)
    if hint:
        return hint
    if len(spy_se.calls) != 1:
        return f"se was called {len(spy_se.calls)} times; call it once, on the residual branch's output"
    return None


def _case_se_resnet_grad(learner) -> str | None:
    branch, se, shortcut = _parts(4, 4, 1, 5)
    se.train()
    x = torch.randn(2, 4, 5, 5, generator=seeded_generator(9), requires_grad=True)
    out = learner(x, branch, se, shortcut)
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return "the output is not connected to the autograd graph"
    out.sum().backward()
    if se.fc1.weight.grad is None or float(se.fc1.weight.grad.abs().sum()) == 0:
        return "no gradient reached the SE parameters"
    if x.grad is None:
        return "no gradient reached x"
    return None


@register_exercise("02.se_resnet_block", title="SE-ResNet block: SE on the residual branch, before the add", points=3,
                   solution=se_resnet_forward)
def _check_se_resnet(learner):
    yield run_case("identity shortcut, 8 channels", _case_se_resnet, learner, 8, 8, 1, 0)
    yield run_case("identity shortcut, 4 channels, another seed", _case_se_resnet, learner, 4, 4, 1, 1)
    yield run_case("projection shortcut (4 → 8 channels, stride 2)", _case_se_resnet, learner, 4, 8, 2, 2)
    yield side_property(run_case("gradients reach x and the SE parameters", _case_se_resnet_grad, learner))


# --------------------------------------------------------------------------------------------------
# 02.eca_kernel_size
# --------------------------------------------------------------------------------------------------
def _odd(t: float) -> int:
    t = int(t)
    return t if t % 2 else t + 1


def _eca_mistakes(c: int, g: float = 2, b: float = 1) -> list[tuple[str, int]]:
    """What each known mistake gives for ``eca_kernel_size(c, g, b)`` (a name for each, specific first)."""
    t = abs((math.log2(c) + b) / g)
    return [
        ("k must be odd: if the truncated t is even, use t + 1", int(t)),
        ("the parity is inverted: k = t when t is odd, t + 1 when t is even", int(t) + 1 if int(t) % 2 else int(t)),
        ("truncate t first (int), then make it odd; rounding t to the nearest int gives a different k", _odd(round(t))),
        ("the formula is log2(C)/γ + β/γ: β is divided by γ too, not added after", _odd(abs(math.log2(c) / g + b))),
        ("use the logarithm base 2 (math.log2), not the natural log", _odd(abs((math.log(c) + b) / g))),
        ("use the logarithm base 2 (math.log2), not log10", _odd(abs((math.log10(c) + b) / g))),
        ("γ multiplies nothing: t = (log2(C) + β) / γ, not (log2(C) + β) · γ", _odd(abs((math.log2(c) + b) * g))),
    ]


def _case_eca(learner, channels: list[int]) -> str | None:
    cases = [(f"eca_kernel_size({c})", learner(c), eca_kernel_size(c), _eca_mistakes(c)) for c in channels]
    evidence = []  # with γ = 2, β = 1 several mistakes give the same k; other γ, β tell them apart
    for c in channels:
        for g, b in [(3, 2), (1, 3), (2, 3)]:
            try:
                evidence.append((learner(c, g, b), eca_kernel_size(c, g, b), _eca_mistakes(c, g, b)))
            except Exception:  # not graded here: a learner without gamma/beta is judged by the other case
                pass
    return compare_number_cases(cases, integer=True, evidence=evidence)


def _case_eca_gamma(learner) -> str | None:
    cases = []
    for c, g, b in [(256, 1, 1), (64, 3, 2), (1024, 2, 3), (96, 2, 0)]:
        mistakes = [("use the gamma and beta arguments, do not hard-code 2 and 1", eca_kernel_size(c)),
                    *_eca_mistakes(c, g, b)]
        cases.append((f"eca_kernel_size({c}, gamma={g}, beta={b})", learner(c, g, b), eca_kernel_size(c, g, b), mistakes))
    return compare_number_cases(cases, integer=True)


@register_exercise("02.eca_kernel_size", title="ECA's adaptive kernel size", points=2, solution=eca_kernel_size)
def _check_eca(learner):
    yield run_case("ResNet-50 widths 256, 512, 1024, 2048", _case_eca, learner, [256, 512, 1024, 2048])
    yield run_case("small widths 16, 32, 64, 128", _case_eca, learner, [16, 32, 64, 128])
    yield run_case("widths that are not powers of two", _case_eca, learner, [24, 48, 96, 200, 720, 1500])
    yield run_case("other gamma and beta", _case_eca_gamma, learner)


# --------------------------------------------------------------------------------------------------
# questions (predict first, interpret after; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
def _se_gain_explanation(correct: str) -> str:
    gain = recorded_gain("senet_channel_cue", "se", "baseline")
    return (f"Recorded ({recorded_note('senet_channel_cue')}): SE changes the test accuracy by {gain:+.1f} points. "
            "Which channel holds the digit that decides the label changes from image to image, and the mark is "
            "only visible as a global statistic. A plain convolution adds the channels with the same fixed weights "
            "for every image, so it cannot switch to the marked one; SE computes the channel weights from globally "
            "pooled statistics of the image itself, which is exactly that switch.")


register_question(
    "02.predict_se_gain", title="Predict: how much does SE add on the channel-cue task?", when="predict",
    choices={"a": "less than 1 point (no real gain)", "b": "1 to 5 points", "c": "5 to 15 points",
             "d": "15 points or more"},
    answer=lambda: bucket(recorded_gain("senet_channel_cue", "se", "baseline"), [1, 5, 15]),
    explanation=_se_gain_explanation)


def _task_contrast() -> str:
    cue = recorded_gain("senet_channel_cue", "se", "baseline")
    clutter = recorded_gain("senet_cluttered", "se", "baseline")
    return "c" if abs(cue - clutter) <= 2 else ("a" if cue > clutter else "b")


def _task_contrast_explanation(correct: str) -> str:
    cue = recorded_gain("senet_channel_cue", "se", "baseline")
    clutter = recorded_gain("senet_cluttered", "se", "baseline")
    return (f"SE's gain over its baseline: {cue:+.1f} points on channel-cue ({recorded_note('senet_channel_cue')}), "
            f"{clutter:+.1f} on cluttered digits ({recorded_note('senet_cluttered')}). SE multiplies every position "
            "of a channel by the same weight: it can choose *which* channels to read, the need of the channel-cue "
            "task, but it cannot keep the digit and drop the clutter when both light up the same channels at "
            "different places — a *where* problem, for spatial attention (module 05).")


register_question(
    "02.interpret_task_contrast", title="Interpret: on which task does SE gain more?", when="interpret",
    choices={"a": "channel-cue digits", "b": "cluttered digits", "c": "about the same (within 2 points)"},
    answer=_task_contrast, explanation=_task_contrast_explanation)
