"""Exercises of module 05 (CBAM, BAM, scSE): the channel MLP, the spatial descriptor, a CBAM-ResNet block, BAM's combination.

========================  ======  ==================================================================
key                       points  the learner writes
========================  ======  ==================================================================
``05.channel_mlp``           4    ``ChannelAttentionMap(channels, reduction)``: ``σ(MLP(avg) + MLP(max))``, one shared MLP
``05.spatial_descriptor``    3    ``spatial_descriptor(x)``: channel-wise max and mean stacked, ``[N, 2, H, W]``
``05.cbam_block``            3    ``cbam_basic_block(x, conv1, bn1, conv2, bn2, cbam, shortcut)``
``05.bam_combine``           2    ``bam_attention(x, mc, ms)``: ``x · (1 + σ(Mc · Ms))``
========================  ======  ==================================================================

A decision about ``05.spatial_descriptor``: the official code stacks ``[max, mean]``, timm stacks
``[mean, max]``. The order only decides which input slice of the following 7×7 conv sees which
descriptor; a SAM trained from scratch learns the same functions either way, so both orders earn
full marks. (It matters only when copying trained weights between the two codes.)

Questions (counted apart, 1 point each): ``05.predict_cbam_gain`` (choice, read from the recorded ``cbam_order``
run) and ``05.interpret_untrained_map`` (choice).
"""
from __future__ import annotations

import torch
from torch import nn

from .core import (CaseResult, _close, compare_gradient, compare_numbers, compare_tensors, gradient_flow,
                   match_mistakes, mlp_readings, recorded, recorded_gain, recorded_note, register_exercise,
                   register_question, run_case, seeded_generator, tensor_type_hint)
from .side_properties import side_property

__all__ = ["ChannelAttentionMap", "spatial_descriptor", "cbam_basic_block", "bam_attention"]


# --------------------------------------------------------------------------------------------------
# reference solutions
# --------------------------------------------------------------------------------------------------
class ChannelAttentionMap(nn.Module):
    """CBAM's channel attention map ``Mc = σ(MLP(avgpool x) + MLP(maxpool x))``, ``[N, C, H, W] → [N, C, 1, 1]``.

    One MLP (``C → C // r → C``, biases, ReLU between) is shared by both pooled descriptors.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def mlp(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(z)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


def spatial_descriptor(x: torch.Tensor) -> torch.Tensor:
    """Channel-wise max and mean, stacked as two channels: ``[N, C, H, W] → [N, 2, H, W]`` (official order)."""
    return torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)


def cbam_basic_block(x, conv1, bn1, conv2, bn2, cbam, shortcut):
    """A CBAM-ResNet basic block: CBAM rescales the residual branch *before* the add, then ReLU.

    ``out = ReLU(cbam(bn2(conv2(ReLU(bn1(conv1(x)))))) + shortcut(x))``.
    """
    out = torch.relu(bn1(conv1(x)))
    out = bn2(conv2(out))
    out = cbam(out)
    return torch.relu(out + shortcut(x))


def bam_attention(x: torch.Tensor, mc: torch.Tensor, ms: torch.Tensor) -> torch.Tensor:
    """BAM's output from its two gate logits: ``x · (1 + σ(Mc · Ms))`` with ``Mc [N, C, 1, 1]``, ``Ms [N, 1, H, W]``."""
    return x * (1 + torch.sigmoid(mc * ms))


# --------------------------------------------------------------------------------------------------
# 05.channel_mlp
# --------------------------------------------------------------------------------------------------
def _build(learner, c: int, r: int):
    module = learner(c, r)
    if not isinstance(module, nn.Module):
        return None, f"ChannelAttentionMap({c}, {r}) should be an nn.Module (subclass nn.Module), got {type(module).__name__}"
    return module.eval(), None


def _case_params(learner, c: int, r: int) -> str | None:
    module, err = _build(learner, c, r)
    if err:
        return err
    got = sum(p.numel() for p in module.parameters())
    d = c // r
    shared = 2 * c * d + d + c  # 2·C·C/r + C/r + C
    mistakes = [
        ("that is two MLPs, one per pooled descriptor: CBAM shares ONE MLP between the average- and the max-pooled "
         "descriptor", 2 * shared),
        ("that is two MLPs without biases: share one MLP (with biases) between both pools", 4 * c * d),
        ("the MLP layers need biases (C/r + C parameters), as the official code's nn.Linear", 2 * c * d),
        ("only one of the two layers has a bias", 2 * c * d + c),
        ("only one of the two layers has a bias", 2 * c * d + d),
        ("the hidden layer should have C // r units (reduction r), not C·r", 2 * c * c * r + c * r + c),
        ("the hidden layer should have C // r units: the bottleneck is missing", 2 * c * c + 2 * c),
    ]
    return compare_numbers(got, shared, f"the parameter count of ChannelAttentionMap({c}, {r})", integer=True,
                           mistakes=mistakes)


_ONLY_AVG = "only the average-pooled descriptor is used (that is an SE block): add MLP(max-pooled descriptor)"
_ONLY_MAX = "only the max-pooled descriptor is used: add MLP(average-pooled descriptor)"
_SUM_BEFORE = "the two descriptors were added BEFORE the MLP; run the shared MLP on each and add its two outputs"
_MEAN_BEFORE = "the two descriptors were averaged BEFORE the MLP; run the shared MLP on each and add its two outputs"
_NO_SIGMOID = "the sigmoid is missing: Mc = σ(MLP(avg) + MLP(max))"
_SIGMOID_EACH = "the sigmoid was applied to each descriptor's MLP output before adding; add the logits, then σ"
_AVERAGED = "the two MLP outputs were averaged; CBAM adds them (σ(MLP(avg) + MLP(max)))"
_HIDDEN = "the activation between the two layers must be a ReLU, not {}"
_NO_RELU = "there is no ReLU between the two layers of the MLP (C → C/r → ReLU → C)"
_RELU_OUT = "a ReLU was applied to the MLP's output; the ReLU belongs between its two layers only"
_RESCALED = "forward returned x rescaled; return the map Mc of shape [N, C, 1, 1]"
_TWO_MLPS = "that is two MLPs, one per pooled descriptor: CBAM shares ONE MLP between them"


def _pooled(x: torch.Tensor):
    return x.mean((2, 3)), x.amax((2, 3))  # [N, C] each


def _variants(f, x: torch.Tensor):
    """Mc for the MLP ``f`` read from the learner's parameters, and what each known mistake would give."""
    a, m = _pooled(x)
    v = lambda t: t.reshape(x.shape[0], x.shape[1], 1, 1)  # noqa: E731
    fa, fm = f(a), f(m)
    right = v(torch.sigmoid(fa + fm))
    both = lambda act: v(torch.sigmoid(f(a, act) + f(m, act)))  # noqa: E731
    mistakes = [
        (_ONLY_AVG, v(torch.sigmoid(fa))), (_ONLY_MAX, v(torch.sigmoid(fm))),
        (_SUM_BEFORE, v(torch.sigmoid(f(a + m)))), (_MEAN_BEFORE, v(torch.sigmoid(f((a + m) / 2)))),
        (_NO_SIGMOID, v(fa + fm)), (_SIGMOID_EACH, v(torch.sigmoid(fa) + torch.sigmoid(fm))),
        (_AVERAGED, v(torch.sigmoid((fa + fm) / 2))),
        (_HIDDEN.format("a sigmoid"), both(torch.sigmoid)), (_HIDDEN.format("a tanh"), both(torch.tanh)),
        (_HIDDEN.format("a GELU"), both(torch.nn.functional.gelu)), (_NO_RELU, both(lambda t: t)),
        (_RELU_OUT, v(torch.sigmoid(torch.relu(fa) + torch.relu(fm)))),
        (_RELU_OUT, v(torch.sigmoid(torch.relu(fa + fm)))),
        (_RESCALED, x * right),
    ]
    return right, mistakes


def _probe(module: nn.Module, x: torch.Tensor):
    """Read the learner's shared function by behaviour: on an input whose every map is constant, avg = max = v,
    so a correct answer returns σ(2·MLP(v)). Returns (σ(MLP(avg) + MLP(max)) if the answer has that form, mistakes)."""
    n, c, h, w = x.shape
    a, m = _pooled(x)

    def run(vec):
        out = module(vec[:, :, None, None].expand(n, c, h, w).contiguous())
        return out.detach().double() if isinstance(out, torch.Tensor) and out.shape == (n, c, 1, 1) else None

    try:
        pa, pm, pmid = run(a), run(m), run((a + m) / 2)
    except Exception:  # the module only works on the inputs it is graded on: no behavioural reading
        return None, []
    if pa is None or pm is None or pmid is None:
        return None, []
    mistakes = [(_NO_SIGMOID, (pa + pm) / 2)]
    in_range = lambda t: bool(((t > 0) & (t < 1)).all())  # noqa: E731
    if bool(((pa > 0) & (pa < 2)).all() and ((pm > 0) & (pm < 2)).all()):
        mistakes = [(_SIGMOID_EACH, (pa + pm) / 2)]  # σ(f(a)) + σ(f(m)): the constant input gives 2σ(f(v))
    if not (in_range(pa) and in_range(pm) and in_range(pmid)):
        return None, mistakes
    la, lm, lmid = torch.logit(pa), torch.logit(pm), torch.logit(pmid)
    mistakes += [(_ONLY_AVG, torch.sigmoid(la)), (_ONLY_MAX, torch.sigmoid(lm)), (_SUM_BEFORE, torch.sigmoid(lmid))]
    return torch.sigmoid((la + lm) / 2), mistakes


def _case_values(learner, c: int, r: int, shape) -> str | None:
    """Mc against a reference computed with the learner's own MLP weights, read by role (nn.Linear, 1×1 or
    kernel-1 convs, raw matrices in either orientation), whichever reading reproduces the output."""
    module, err = _build(learner, c, r)
    if err:
        return err
    x = torch.randn(shape, generator=seeded_generator(c * 7 + shape[0])) * 1.5 + 0.3
    with torch.no_grad():
        got = module(x.clone())
        readings = mlp_readings(module, c, c)
        variants = [_variants(f, x) for f in readings]
        if not isinstance(got, torch.Tensor):
            return compare_tensors(got, torch.full((shape[0], c, 1, 1), 0.5), "Mc")
        got = got.detach()
        for right, _ in variants:
            if _close(got, right, 1e-5, 1e-4):
                return None
        mistakes = [(h, t) for right, ms in variants for h, t in ms if not _close(t, right, 1e-5, 1e-4)]
        if got.shape != (shape[0], c, 1, 1):
            ratio = got / x if got.shape == x.shape else None
            if ratio is not None and torch.allclose(ratio, ratio.mean((2, 3), keepdim=True), atol=1e-4):
                return f"Mc: {_RESCALED}"  # x times one weight per (sample, channel)
            return (match_mistakes(got, None, mistakes) and f"Mc: {match_mistakes(got, None, mistakes)}") or \
                compare_tensors(got, torch.full((shape[0], c, 1, 1), 0.5), "Mc")
        a, m = _pooled(x)
        pairs = [(f, g) for f in readings for g in readings if not set(f.ids) & set(g.ids)]
        for f, g in pairs[:64]:  # one MLP per descriptor, each read from its own parameters
            mistakes.append((_TWO_MLPS, torch.sigmoid(f(a) + g(m)).reshape(got.shape)))
        probe_ref, probe_mistakes = _probe(module, x)
    hint = match_mistakes(got, None, mistakes) or match_mistakes(got, probe_ref, probe_mistakes)
    if hint:
        return f"Mc: {hint}"
    if probe_ref is not None and _close(got, probe_ref, 1e-5, 1e-4):
        if not readings:  # σ(g(avg) + g(max)) with one shared g, whose layers are not a readable plain MLP
            return None
        return ("Mc has the form σ(g(avg) + g(max)) with one shared g, but g is not W2·ReLU(W1·z + b1) + b2 with "
                "your layers' weights: check the layers and the activation between them")
    if variants:
        expected = min((right for right, _ in variants), key=lambda t: float((t - got).abs().max()))
    elif probe_ref is not None:
        expected = probe_ref.to(got.dtype)
    else:
        if not ((got > 0) & (got < 1)).all():
            return (f"Mc must lie in (0, 1), got values in [{float(got.min()):.3g}, {float(got.max()):.3g}] "
                    "(Mc = σ(MLP(avg) + MLP(max)))")
        return ("Mc is not σ(g(avg) + g(max)) for one shared function g: run the same MLP on the average- and the "
                "max-pooled descriptor and add the two outputs before the sigmoid")
    return compare_tensors(got, expected, "Mc", atol=1e-5)


def _case_range(learner, c: int, r: int) -> str | None:
    module, err = _build(learner, c, r)
    if err:
        return err
    x = torch.randn(3, c, 5, 4, generator=seeded_generator(5)) * 4
    with torch.no_grad():
        m = module(x)
    if not isinstance(m, torch.Tensor):
        return f"forward should return a tensor, got {type(m).__name__}"
    if m.shape != (3, c, 1, 1):
        return f"Mc has shape {list(m.shape)}, expected [3, {c}, 1, 1] (one weight per sample and channel)"
    if not ((m > 0) & (m < 1)).all():
        return (f"Mc must lie in (0, 1) (it ends with a sigmoid), got values in [{float(m.min()):.3g}, "
                f"{float(m.max()):.3g}]")
    return None


def _case_grad(learner, c: int, r: int) -> str | None:
    module, err = _build(learner, c, r)
    if err:
        return err
    module.train()
    gen = seeded_generator(3)
    inputs = [torch.randn(2, c, 4, 6, generator=gen), torch.randn(4, c, 3, 5, generator=gen) * 3 - 1,
              -torch.randn(3, c, 5, 5, generator=gen) * 2 + 1]
    return gradient_flow(module, inputs, module, input_name="x", output_name="Mc")


@register_exercise("05.channel_mlp", title="CBAM's channel attention: one MLP shared by the avg- and max-pooled descriptors",
                   points=4, solution=ChannelAttentionMap)
def _check_channel_mlp(learner):
    for c, r in [(16, 4), (32, 8)]:
        yield side_property(run_case(f"parameters of one shared MLP, C={c}, r={r}", _case_params, learner, c, r))
    yield side_property(run_case("shape [N, C, 1, 1], values in (0, 1)", _case_range, learner, 16, 4))
    for c, r, shape in [(16, 4, (2, 16, 5, 5)), (32, 8, (1, 32, 7, 3)), (8, 2, (3, 8, 4, 9))]:
        yield run_case(f"Mc = σ(MLP(avg) + MLP(max)) for x {list(shape)}, r={r}", _case_values, learner, c, r, shape)
    yield side_property(run_case("gradients reach x and every parameter", _case_grad, learner, 16, 4))


# --------------------------------------------------------------------------------------------------
# 05.spatial_descriptor
# --------------------------------------------------------------------------------------------------
_SHAPES = [(2, 3, 5, 5), (1, 4, 7, 3), (3, 8, 4, 6), (2, 1, 2, 9)]  # batch 1, one channel, non-square


def _case_descriptor(learner, shape) -> str | CaseResult | None:
    x = torch.randn(shape, generator=seeded_generator(sum(shape))) * 2 + 0.5
    got = learner(x.clone())
    mx, mean = x.amax(1, keepdim=True), x.mean(1, keepdim=True)
    official, timm = torch.cat([mx, mean], 1), torch.cat([mean, mx], 1)
    if isinstance(got, torch.Tensor) and got.shape == official.shape and torch.allclose(got.detach(), timm, atol=1e-5):
        return None  # [mean, max]: timm's order — equally right for a SAM trained from scratch
    mistakes = {
        "only the mean over channels: stack the channel-wise max AND mean as two channels": mean,
        "only the max over channels: stack the channel-wise max AND mean as two channels": mx,
        "the channel-wise max and mean were added; stack them as two channels (torch.cat along dim 1)": mx + mean,
        "that is the sum over channels, not the mean": torch.cat([mx, x.sum(1, keepdim=True)], 1),
        "pooled over the positions (dim=(2, 3)); pool over the channels (dim=1) to keep a map per position":
            torch.cat([x.amax((2, 3), keepdim=True), x.mean((2, 3), keepdim=True)], 1),
        "stacked along the batch dimension; stack along dim=1 (channels)": torch.cat([mx, mean], 0),
        "the min was taken instead of the max": torch.cat([x.amin(1, keepdim=True), mean], 1),
        "torch.max(x, 1) returns (values, indices): use the values (or x.amax(1, keepdim=True))":
            torch.cat([x.argmax(1, keepdim=True).to(x.dtype), mean], 1),
    }
    return compare_tensors(got, official, "descriptor", atol=1e-5, mistakes=mistakes)


def _case_descriptor_grad(learner) -> str | None:
    x = torch.randn(2, 4, 3, 5, generator=seeded_generator(1), requires_grad=True)
    out = learner(x)
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return "the descriptor is not connected to x's autograd graph (no .detach(), .numpy() or torch.no_grad())"
    out.sum().backward()
    if x.grad is None:
        return "no gradient reached x"
    # d/dx of (max + mean): 1/C everywhere, plus 1 at each position's argmax channel
    expected = torch.full_like(x, 1 / 4) + torch.zeros_like(x).scatter_(1, x.detach().argmax(1, keepdim=True), 1.0)
    reference = spatial_descriptor(x.detach())
    if isinstance(out, torch.Tensor) and out.shape == reference.shape and \
            torch.allclose(out.detach(), reference[:, [1, 0]], atol=1e-5):
        reference = reference[:, [1, 0]]  # [mean, max]: the other accepted order, same gradient
    return compare_gradient(out, reference, x.grad, expected, "the gradient of sum(descriptor) w.r.t. x")


@register_exercise("05.spatial_descriptor", title="CBAM's spatial descriptor: channel-wise max and mean, stacked",
                   points=3, solution=spatial_descriptor)
def _check_spatial_descriptor(learner):
    for shape in _SHAPES:
        yield run_case(f"x {list(shape)} -> [N, 2, H, W] ([max, mean] or [mean, max])", _case_descriptor, learner, shape)
    yield side_property(run_case("gradient flows back to x", _case_descriptor_grad, learner))


# --------------------------------------------------------------------------------------------------
# 05.cbam_block
# --------------------------------------------------------------------------------------------------
class _Spy(nn.Module):
    """Wraps a module and counts its calls."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, t):
        self.calls += 1
        return self.inner(t)


def _parts(c_in: int, c_out: int, stride: int, seed: int):
    from ..blocks.mixed import CBAM

    torch.manual_seed(seed)
    conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    bn1, bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
    shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    cbam = CBAM(c_out, reduction=2, kernel_size=3)
    with torch.no_grad():
        for p in cbam.parameters():  # random weights: the official init would make the spatial map a flat 0.5
            p.copy_(torch.randn(p.shape) * 0.7)
    for m in [bn1, bn2, *shortcut.modules(), *cbam.modules()]:
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics so eval mode is no identity
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.3, 0.3)
    return [m.eval() for m in (conv1, bn1, conv2, bn2, cbam, shortcut)]


def _case_cbam_block(learner, c_in: int, c_out: int, stride: int, seed: int) -> str | None:
    conv1, bn1, conv2, bn2, cbam, shortcut = _parts(c_in, c_out, stride, seed)
    x = torch.randn(2, c_in, 8, 7, generator=seeded_generator(seed)) * 1.5
    with torch.no_grad():
        h = bn2(conv2(torch.relu(bn1(conv1(x)))))
        s = shortcut(x)
        expected = torch.relu(cbam(h) + s)
        mistakes = {
            "CBAM was applied after the add; it rescales the residual branch BEFORE the shortcut is added":
                torch.relu(cbam(h + s)),
            "CBAM was applied after the final ReLU; rescale the residual branch before the add":
                cbam(torch.relu(h + s)),
            "the residual connection is missing: add shortcut(x) to the rescaled branch": torch.relu(cbam(h)),
            "the final ReLU (after the add) is missing": cbam(h) + s,
            "the ReLU between bn1 and conv2 is missing": torch.relu(cbam(bn2(conv2(bn1(conv1(x))))) + s),
            "CBAM was not applied": torch.relu(h + s),
            "CBAM was applied to the shortcut instead of the residual branch": torch.relu(h + cbam(s)),
            "x was added instead of shortcut(x) (a projection when the shape changes)":
                torch.relu(cbam(h) + x) if x.shape == h.shape else None,
        }
        mistakes = {k: v for k, v in mistakes.items() if v is not None}
        spy = _Spy(cbam)
        got = learner(x.clone(), conv1, bn1, conv2, bn2, spy, shortcut)
    hint = compare_tensors(got, expected, "block output", atol=1e-4, mistakes=mistakes)
    if hint:
        return hint
    if spy.calls != 1:
        return f"cbam was called {spy.calls} times; call it once, on the residual branch's output"
    return None


def _case_cbam_block_grad(learner) -> str | None:
    conv1, bn1, conv2, bn2, cbam, shortcut = _parts(4, 4, 1, 5)
    x = torch.randn(2, 4, 6, 6, generator=seeded_generator(9), requires_grad=True)
    out = learner(x, conv1, bn1, conv2, bn2, cbam, shortcut)
    if not isinstance(out, torch.Tensor):
        return tensor_type_hint(out, "the output")
    if not out.requires_grad:
        return "the output is not connected to the autograd graph"
    out.sum().backward()
    for name, p in [("conv1", conv1.weight), ("the CBAM channel MLP", cbam.channel.fc1.weight),
                    ("the CBAM spatial conv", cbam.spatial.conv.weight)]:
        if p.grad is None or float(p.grad.abs().sum()) == 0:
            return f"no gradient reached {name}"
    return None if x.grad is not None else "no gradient reached x"


@register_exercise("05.cbam_block", title="A CBAM-ResNet basic block: CBAM on the residual branch, before the add",
                   points=3, solution=cbam_basic_block)
def _check_cbam_block(learner):
    yield run_case("identity shortcut, 8 channels", _case_cbam_block, learner, 8, 8, 1, 0)
    yield run_case("identity shortcut, 4 channels, another seed", _case_cbam_block, learner, 4, 4, 1, 1)
    yield run_case("projection shortcut (4 → 8 channels, stride 2)", _case_cbam_block, learner, 4, 8, 2, 2)
    yield side_property(run_case("gradients reach x, the convs and CBAM", _case_cbam_block_grad, learner))


# --------------------------------------------------------------------------------------------------
# 05.bam_combine
# --------------------------------------------------------------------------------------------------
def _case_bam(learner, n: int, c: int, h: int, w: int) -> str | None:
    gen = seeded_generator(n * 100 + c * 10 + h)
    x = torch.randn(n, c, h, w, generator=gen)
    mc, ms = torch.randn(n, c, 1, 1, generator=gen) * 2, torch.randn(n, 1, h, w, generator=gen) * 2
    got = learner(x.clone(), mc.clone(), ms.clone())
    mistakes = {
        "the identity term is missing: BAM outputs x · (1 + M), i.e. x + x·M (a residual attention)":
            x * torch.sigmoid(mc * ms),
        "that is the paper's formula σ(Mc + Ms); the official code, which this exercise follows, multiplies the "
        "gates: σ(Mc · Ms)": x * (1 + torch.sigmoid(mc + ms)),
        "the sigmoid was applied to each gate separately; apply it once, to the product Mc · Ms":
            x * (1 + torch.sigmoid(mc) * torch.sigmoid(ms)),
        "the sigmoid is missing": x * (1 + mc * ms),
        "x was added instead of multiplied: y = x · (1 + σ(Mc · Ms))": x + 1 + torch.sigmoid(mc * ms),
    }
    return compare_tensors(got, x * (1 + torch.sigmoid(mc * ms)), "BAM output", atol=1e-5, mistakes=mistakes)


@register_exercise("05.bam_combine", title="BAM's combination: x · (1 + σ(Mc · Ms))", points=2, solution=bam_attention)
def _check_bam(learner):
    for shape in [(2, 8, 5, 5), (1, 4, 3, 7), (3, 16, 6, 4)]:
        yield run_case(f"x {list(shape)}, Mc [N, C, 1, 1], Ms [N, 1, H, W]", _case_bam, learner, *shape)


# --------------------------------------------------------------------------------------------------
# questions (predict first, interpret after; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
def _cbam_gain() -> float:
    return recorded_gain("cbam_order", "channel_spatial", "baseline")


def _cbam_gain_explanation(correct: str) -> str:
    gain = _cbam_gain()
    verdict = {"a": "better than the baseline", "b": "within a point of the baseline",
               "c": "worse than the baseline"}[correct]
    base = 100 * recorded("cbam_order")["arms"]["baseline"]["mean_test_acc"]
    return (f"Recorded ({recorded_note('cbam_order')}): the plain baseline reaches {base:.1f} %, and CBAM in the "
            f"paper's order (channel → spatial) changes that by {gain:+.1f} points: {verdict}. A paper's ImageNet "
            "gain does not carry over by itself to a small network on a small task, and a difference of a point or "
            "two needs its 95 % interval over seeds and test images (How to read a result) before it counts as an "
            "effect of the block.")


register_question(
    "05.predict_cbam_gain", title="Predict: CBAM (channel → spatial) against the plain baseline on cluttered digits",
    when="predict",
    choices={"a": "more than 1 point better", "b": "within 1 point", "c": "more than 1 point worse"},
    answer=lambda: "a" if _cbam_gain() > 1 else ("c" if _cbam_gain() < -1 else "b"),
    explanation=_cbam_gain_explanation)

register_question(
    "05.interpret_untrained_map", title="Interpret: why is the untrained CBAM spatial map exactly 0.5 everywhere?",
    when="interpret",
    choices={"a": "the batch norm after the 7×7 convolution starts with scale 0, so the map is σ(0) = 0.5",
             "b": "the 7×7 convolution starts with all-zero weights and no bias",
             "c": "the channel-wise max and mean cancel each other",
             "d": "the sigmoid saturates on large inputs"},
    answer="a",
    explanation="The official CBAM code puts a batch norm after the 7×7 convolution, and the package follows its "
                "initialisation: BN scale γ = 0 and shift 0, so whatever the convolution computes, the map is "
                "σ(0) = 0.5 at every position. The spatial module starts by scaling all positions alike (it cannot "
                "prefer the digit yet); training moves γ away from 0 and lets the map choose where. The 7×7 "
                "weights themselves are random (Kaiming), not zero.")
