"""Exercises of module 09 (Coordinate Attention, SA-Net, AFF/iAFF) and its capstone, design your own block.

=========================  ======  =====================================================================
key                        points  the learner writes
=========================  ======  =====================================================================
``09.directional_pool``       3    ``directional_pool(x)``: CoordAtt's two pooled descriptors, ``[N, C, H + W, 1]``
``09.channel_shuffle``        3    ``channel_shuffle(x, groups=2)``: ShuffleNet's shuffle, as SA-Net ends
``09.aff_fuse``               3    ``aff_fuse(x, y, local_branch, global_branch)``: AFF's output
``09.design_block``           6    a block class ``Block(channels)`` (or its name after ``register_block``)
=========================  ======  =====================================================================

Questions (counted apart, 1 point each): ``09.predict_row_descriptor``, ``09.predict_sa_init`` and
``09.predict_coordatt_vs_se`` (predict first; the last reads the recorded ``coordatt_rows`` run) and
``09.interpret_aff_half`` (choices).

``09.design_block`` grades the **block contract** only — what every block of the course keeps, so that any
backbone can place it (:mod:`attncourse.blocks`):

* it builds as ``Block(channels)`` and maps ``[N, C, H, W] → [N, C, H, W]``, in train and in eval mode, for odd and
  non-square maps;
* in eval mode a batch of one gives that sample's row of a larger batch (batch 1 works, samples do not mix);
* an input with the wrong channel count or the wrong rank raises a ``ValueError`` that names the block and the
  input's shape (``attncourse.blocks.check_input(self, x, channels)`` does exactly this);
* a gradient reaches the input and every parameter (checked with the parameters moved off their initial values,
  so a gate that starts at zero — SA-Net's ``w = 0`` — is as good a design as any).

How well the block does on a task is the experiment's business: it is reported, never graded.
"""
from __future__ import annotations

import torch
from torch import nn

from ..blocks import check_input
from ..blocks.fusion import MSCAM
from ..experiments import effects, interval_text
from .core import (compare_gradient, compare_tensors, describe_exception, gradient_flow, recorded, recorded_note,
                   register_exercise, register_question, run_case, seeded_generator, tensor_type_hint)
from .side_properties import side_property

__all__ = ["ExampleBlock", "directional_pool", "channel_shuffle", "aff_fuse"]

C_SMALL, C_LARGE = 16, 32


class ExampleBlock(nn.Module):
    """A reference block in the module-00 template: statistic (per-channel mean and max) → transform (a shared 1×1
    conv pair) → reweight (sigmoid gate). ``[N, C, H, W] → [N, C, H, W]``."""

    def __init__(self, channels: int, hidden: int = 4):
        super().__init__()
        self.channels = channels
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        stats = (x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True))
        logits = sum(self.fc2(torch.relu(self.fc1(s))) for s in stats)
        return x * torch.sigmoid(logits)


_NOT_A_MODULE = "Block(channels) must build an nn.Module (a class deriving from torch.nn.Module)"
_WRONG_SHAPE = "the block must return a tensor of the input's shape [N, C, H, W]"
_NOT_FINITE = "the output holds NaN or inf"
_BATCH_MIXES = ("in eval mode a batch of one must give that sample's row of a larger batch (do not mix samples: "
                "BatchNorm in eval mode, no statistics over the batch)")
_NO_VALUE_ERROR = "raise a ValueError for this input (attncourse.blocks.check_input(self, x, channels) does it)"
_UNNAMED = "the ValueError must name the block's class and the input's shape"
_UNKNOWN_NAME = "is not a registered block name"


def _block_class(learner):
    """The learner's class: the object itself, or the factory registered under a name."""
    if isinstance(learner, str):
        from ..blocks import BLOCKS

        key = learner.lower()
        if key not in BLOCKS:
            raise ValueError(f"{learner!r} {_UNKNOWN_NAME}: call register_block({learner!r})(YourBlock) first")
        return BLOCKS[key].factory
    if not callable(learner):
        raise TypeError(f"expected a block class (or its registered name), got {type(learner).__name__}")
    return learner


def _build(learner, channels: int) -> nn.Module:
    block = _block_class(learner)(channels)
    if not isinstance(block, nn.Module):
        raise TypeError(f"{_NOT_A_MODULE}; what it built is not one")
    return block


def _x(shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=seeded_generator(seed)) + 0.2


def _check_output(y, x) -> str | None:
    if not isinstance(y, torch.Tensor):
        return f"{_WRONG_SHAPE}; got a {type(y).__name__}"
    if tuple(y.shape) != tuple(x.shape):
        return f"{_WRONG_SHAPE}; for input shape {list(x.shape)} it returned {list(y.shape)}"
    if not torch.isfinite(y).all():
        return _NOT_FINITE
    return None


def _case_builds(learner):
    for c in (C_SMALL, C_LARGE):
        _build(learner, c)


def _case_shape(learner, channels: int, hw: tuple[int, int], train: bool):
    torch.manual_seed(0)
    block = _build(learner, channels).train(train)
    x = _x((3, channels, *hw), seed=hw[0] * 10 + hw[1])
    with torch.no_grad():
        return _check_output(block(x.clone()), x)


def _case_batch_one(learner):
    torch.manual_seed(0)
    block = _build(learner, C_SMALL).eval()
    x = _x((3, C_SMALL, 5, 7), seed=3)
    with torch.no_grad():
        whole = block(x.clone())
        problem = _check_output(whole, x)
        if problem:
            return problem
        for i in range(3):
            one = block(x[i:i + 1].clone())
            problem = _check_output(one, x[i:i + 1])
            if problem:
                return problem
            if not torch.allclose(one, whole[i:i + 1], rtol=1e-4, atol=1e-5):
                return _BATCH_MIXES
    return None


def _case_value_error(learner, shape: tuple[int, ...]):
    torch.manual_seed(0)
    block = _build(learner, C_SMALL).eval()
    x = _x(shape, seed=5)
    try:
        with torch.no_grad():
            block(x)
    except ValueError as err:
        message = str(err)
        if type(block).__name__ not in message or str(tuple(x.shape)) not in message:
            return f"{_UNNAMED} {tuple(x.shape)}; got {describe_exception(err)}"
        return None
    except Exception as err:  # noqa: BLE001 — any other exception is the mistake being graded
        return f"{_NO_VALUE_ERROR}; input of shape {tuple(x.shape)} raised {type(err).__name__} instead"
    return f"{_NO_VALUE_ERROR}; input of shape {tuple(x.shape)} was accepted"


def _case_gradient(learner):
    torch.manual_seed(0)
    block = _build(learner, C_SMALL).train()
    gen = seeded_generator(9)
    with torch.no_grad():  # moved off its init: a zero-initialised gate (SA's w = 0, γ = 0) is a fair design
        for p in block.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    inputs = [_x((2, C_SMALL, 5, 4), seed=s) for s in (7, 8)]
    return gradient_flow(block, inputs, module=block, output_name="the block's output")


@register_exercise("09.design_block", title="Design your own block: keep the block contract", points=6,
                   solution=ExampleBlock, expects="any")
def _check_design(learner):
    yield run_case(f"Block({C_SMALL}) and Block({C_LARGE}) build nn.Modules", _case_builds, learner)
    yield run_case(f"train mode: [3, {C_SMALL}, 8, 8] → the same shape", _case_shape, learner, C_SMALL, (8, 8), True)
    yield run_case(f"eval mode, odd non-square map: [3, {C_LARGE}, 7, 5] → the same shape", _case_shape, learner,
                   C_LARGE, (7, 5), False)
    yield run_case("eval mode: batch 1 works and equals its row of a batch", _case_batch_one, learner)
    yield run_case(f"wrong channels [2, {C_SMALL + 1}, 5, 5] → ValueError naming the block and the shape",
                   _case_value_error, learner, (2, C_SMALL + 1, 5, 5))
    yield run_case(f"wrong rank [2, {C_SMALL}, 5] → ValueError naming the block and the shape",
                   _case_value_error, learner, (2, C_SMALL, 5))
    yield run_case("a gradient reaches the input and every parameter", _case_gradient, learner)


# --------------------------------------------------------------------------------------------------
# reference solutions of the three graded exercises
# --------------------------------------------------------------------------------------------------
def directional_pool(x: torch.Tensor) -> torch.Tensor:
    """CoordAtt's two pooled descriptors, concatenated: ``[N, C, H, W] → [N, C, H + W, 1]``.

    The first ``H`` entries are the rows' means (pooled over ``W``: ``[N, C, H, 1]``), the last ``W`` the columns'
    means (pooled over ``H``: ``[N, C, 1, W]``, transposed to ``[N, C, W, 1]``), as the official code stacks them.
    """
    return torch.cat([x.mean(dim=3, keepdim=True), x.mean(dim=2, keepdim=True).transpose(2, 3)], dim=2)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``[N, C, H, W]`` viewed as ``[N, g, C/g, H, W]``, the two group axes swapped.

    With ``groups=2``: ``out[:, 2k] = x[:, k]`` and ``out[:, 2k + 1] = x[:, C/2 + k]``.
    """
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def aff_fuse(x: torch.Tensor, y: torch.Tensor, local_branch, global_branch) -> torch.Tensor:
    """AFF: ``w = σ(L(x + y) + G(x + y))``, ``out = 2·x·w + 2·y·(1 − w)``, all ``[N, C, H, W]``.

    ``local_branch`` maps ``[N, C, H, W] → [N, C, H, W]``; ``global_branch`` maps ``[N, C, H, W] → [N, C, 1, 1]``
    (it pools first).
    """
    z = x + y
    w = torch.sigmoid(local_branch(z) + global_branch(z))
    return 2 * x * w + 2 * y * (1 - w)


_CUT_GRAPH = "the output is not connected to the inputs' autograd graph (no .detach(), .numpy(), .item() or torch.no_grad())"


def _gradient_case(learner, reference, inputs: list[torch.Tensor], names: list[str], *extra) -> str | None:
    """Gradients of a weighted sum of the learner's output reach every input, and equal the reference's."""
    xs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = learner(*xs, *extra)
    hint = tensor_type_hint(out, "the output")
    if hint:
        return hint
    if not out.requires_grad:
        return _CUT_GRAPH
    expected = reference(*[t.detach() for t in inputs], *extra)
    if out.shape != expected.shape:
        return None  # the value cases say what is wrong with the shape
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weights).sum().backward()
    refs = [t.detach().clone().requires_grad_(True) for t in inputs]
    (reference(*refs, *extra) * weights).sum().backward()
    for name, x, r in zip(names, xs, refs):
        if x.grad is None:
            return f"no gradient reached {name}: {_CUT_GRAPH}"
        hint = compare_gradient(out, expected, x.grad, r.grad, f"the gradient w.r.t. {name}")
        if hint:
            return hint
    return None


# --------------------------------------------------------------------------------------------------
# 09.directional_pool
# --------------------------------------------------------------------------------------------------
def _pool_input(shape, seed: int) -> torch.Tensor:
    gen = seeded_generator(seed)
    return torch.randn(shape, generator=gen) * 1.3 + torch.linspace(-0.5, 1.0, shape[2]).view(1, 1, -1, 1)


def _case_pool(learner, x: torch.Tensor) -> str | None:
    rows, cols = x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)
    mistakes = {
        "the order is swapped: the rows' means (pooled over W, H values) come first, then the columns' means "
        "(pooled over H, W values)": torch.cat([cols, rows], dim=2),
        "that is a max; CoordAtt pools each row and each column with an average (mean)":
            torch.cat([x.amax(3, keepdim=True), x.amax(2, keepdim=True).transpose(2, 3)], dim=2),
        "that is a sum over each row and column; CoordAtt averages (mean), so the descriptors do not grow with the map":
            torch.cat([x.sum(3, keepdim=True), x.sum(2, keepdim=True).transpose(2, 3)], dim=2),
        "concatenated along the last axis ([N, C, 1, H + W]); CoordAtt stacks the two descriptors along dim 2: "
        "[N, C, H + W, 1]": torch.cat([rows.transpose(2, 3), cols.transpose(2, 3)], dim=3),
        "that is the global average (SE's squeeze) repeated; each row and each column gets its own mean":
            x.mean((2, 3), keepdim=True).expand(-1, -1, x.shape[2] + x.shape[3], 1),
    }
    got = learner(x.clone())
    return compare_tensors(got, directional_pool(x), f"directional_pool(x {list(x.shape)})", atol=1e-5,
                           mistakes=mistakes)


@register_exercise("09.directional_pool", title="CoordAtt's directional pooling: one mean per row, one per column",
                   points=3, solution=directional_pool)
def _check_directional_pool(learner):
    for i, shape in enumerate([(2, 3, 5, 7), (1, 4, 6, 6), (3, 2, 9, 4)]):
        yield run_case(f"x {list(shape)} -> [N, C, H + W, 1]", _case_pool, learner, _pool_input(shape, i))
    yield side_property(run_case("gradient flows back to x", _gradient_case, learner, directional_pool,
                                 [_pool_input((2, 3, 4, 5), 9)], ["x"]))


# --------------------------------------------------------------------------------------------------
# 09.channel_shuffle
# --------------------------------------------------------------------------------------------------
def _case_shuffle(learner, x: torch.Tensor, groups: int) -> str | None:
    n, c, h, w = x.shape
    mistakes = {
        "the channels are unchanged: after the reshape to [N, g, C/g, H, W], transpose the two group axes (1 and 2) "
        "before flattening back": x,
        "that is the inverse shuffle (the view [N, C/g, g, H, W] transposed): out[:, k·g + i] must be "
        "x[:, i·C/g + k], i.e. the view is [N, g, C/g, H, W]":
            x.reshape(n, c // groups, groups, h, w).transpose(1, 2).reshape(n, c, h, w),
        "the transpose swapped a channel axis with a spatial one; swap the two group axes of the view "
        "[N, g, C/g, H, W] (dims 1 and 2)":
            x.reshape(n, groups, c // groups, h, w).transpose(2, 3).reshape(n, c, h, w),
        "the channel order is reversed; the shuffle interleaves the groups": x.flip(1),
    }
    got = learner(x.clone(), groups)
    return compare_tensors(got, channel_shuffle(x, groups), f"channel_shuffle(x {list(x.shape)}, groups={groups})",
                           atol=1e-6, rtol=0, mistakes=mistakes)


@register_exercise("09.channel_shuffle", title="The channel shuffle that ends SA-Net", points=3,
                   solution=channel_shuffle)
def _check_channel_shuffle(learner):
    gen = seeded_generator(4)
    for shape, groups in [((2, 6, 3, 4), 2), ((1, 8, 5, 3), 2), ((2, 12, 2, 2), 3), ((1, 12, 3, 3), 4)]:
        x = torch.randn(shape, generator=gen)
        yield run_case(f"x {list(shape)}, groups={groups}", _case_shuffle, learner, x, groups)
    yield side_property(run_case("gradient flows back to x", _gradient_case, learner, channel_shuffle,
                                 [torch.randn(2, 6, 3, 3, generator=gen)], ["x"], 2))


# --------------------------------------------------------------------------------------------------
# 09.aff_fuse
# --------------------------------------------------------------------------------------------------
def _aff_branches(channels: int, seed: int):
    """MS-CAM's two branches (eval mode, random weights and BN statistics, so no gate is trivially 0.5)."""
    with torch.random.fork_rng(devices=[]):  # the learner's own random streams are left alone
        torch.manual_seed(seed)
        m = MSCAM(channels, reduction=2).eval()
    gen = seeded_generator(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=gen) * 0.3)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.local_att, m.global_att


def _aff_inputs(shape, seed: int):
    gen = seeded_generator(seed)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen) * 0.8 + 0.3


def _case_aff(learner, shape, seed: int) -> str | None:
    x, y = _aff_inputs(shape, seed)
    local, glob = _aff_branches(shape[1], seed)
    z = x + y
    with torch.no_grad():
        lz, gz, lx, gx = local(z), glob(z), local(x), glob(x)
    w = torch.sigmoid(lz + gz)
    mistakes = {
        "the factor 2 is missing: AFF's output is 2·x·w + 2·y·(1 − w) (at w = 0.5 it is x + y, the plain sum it "
        "replaces)": x * w + y * (1 - w),
        "w must come from x + y (the initial integration), not from x alone":
            2 * x * torch.sigmoid(lx + gx) + 2 * y * (1 - torch.sigmoid(lx + gx)),
        "w weighs x and 1 − w weighs y (you swapped them)": 2 * x * (1 - w) + 2 * y * w,
        "add the two branches' outputs, then one sigmoid: w = σ(L(x + y) + G(x + y))":
            2 * x * torch.sigmoid(lz) * torch.sigmoid(gz) + 2 * y * (1 - torch.sigmoid(lz) * torch.sigmoid(gz)),
        "the local branch is missing: MS-CAM adds the local (per-pixel) and the global (pooled) branch":
            2 * x * torch.sigmoid(gz) + 2 * y * (1 - torch.sigmoid(gz)),
        "the global branch is missing: MS-CAM adds the local (per-pixel) and the global (pooled) branch":
            2 * x * torch.sigmoid(lz) + 2 * y * (1 - torch.sigmoid(lz)),
    }
    got = learner(x.clone(), y.clone(), local, glob)
    return compare_tensors(got, aff_fuse(x, y, local, glob), f"aff_fuse(x, y {list(shape)})", atol=1e-5,
                           mistakes=mistakes)


def _case_aff_gradient(learner):
    x, y = _aff_inputs((2, 8, 4, 5), 9)
    local, glob = _aff_branches(8, 9)
    return _gradient_case(learner, aff_fuse, [x, y], ["x", "y"], local, glob)


@register_exercise("09.aff_fuse", title="AFF: two inputs weighed by MS-CAM, 2·x·w + 2·y·(1 − w)", points=3,
                   solution=aff_fuse)
def _check_aff_fuse(learner):
    for i, shape in enumerate([(2, 8, 5, 5), (1, 8, 3, 7), (3, 16, 4, 6)]):
        yield run_case(f"x, y {list(shape)}", _case_aff, learner, shape, i)
    yield side_property(run_case("gradient flows back to x and y", _case_aff_gradient, learner))


# --------------------------------------------------------------------------------------------------
# questions (predict first, interpret after; counted apart from the exercises)
# --------------------------------------------------------------------------------------------------
register_question(
    "09.predict_row_descriptor",
    title="Predict: the bar moves to another band — which squeeze of the image changes?", when="predict",
    choices={"a": "all of them: SE's global mean and both of CoordAtt's descriptors",
             "b": "only CoordAtt's row descriptor (the mean of each row)",
             "c": "SE's global mean and CoordAtt's row descriptor, not its column descriptor",
             "d": "none: the two images hold the same pixels"},
    answer="b",
    explanation=("The bar keeps its columns and its pixel values; only its rows change. A channel's global mean sums "
                 "every pixel, wherever it is: unchanged. Each column's mean sums that column over all rows: "
                 "unchanged too. Each row's mean is where the bar's rows show: the bar leaves the rows of one band "
                 "and arrives in those of another. So only the pooling along W, one value per row, tells the bands "
                 "apart; SE's squeeze cannot, whatever the network learns after it."))

register_question(
    "09.predict_sa_init", title="Predict: what does a freshly initialised SA block output?", when="predict",
    choices={"a": "x itself",
             "b": "x scaled by σ(1) ≈ 0.73, with its channels shuffled",
             "c": "0.5·x, in the original channel order",
             "d": "x scaled by σ(1) ≈ 0.73, in the original channel order"},
    answer="b",
    explanation=("The official init sets both halves' weights to 0 and biases to 1: the channel gate is "
                 "σ(0·GAP(x₀) + 1) = σ(1) and the spatial gate σ(0·GN(x₁) + 1) = σ(1), whatever the input. Every "
                 "channel is scaled by σ(1) ≈ 0.731, and the block still ends with its channel shuffle, so the "
                 "output is shuffle(σ(1)·x): the same values in another channel order."))


def _coordatt_vs_se() -> dict:
    rows = {r["arm"]: r for r in effects(recorded("coordatt_rows"), baseline="se")}
    return rows["coordatt"]


_LABEL_LETTER = {"clear gain": "a", "inconclusive": "b", "clear loss": "c"}


def _coordatt_vs_se_explanation(correct: str) -> str:
    row = _coordatt_vs_se()
    return (f"Recorded ({recorded_note('coordatt_rows')}): CoordAtt against SE on row-marker digits, "
            f"{interval_text(row)} — {row['label']}. The interval covers the seeds and the finite test set; only an "
            "interval entirely above (or below) 0 counts as a clear difference. SE's squeeze is blind to the "
            "marked band by construction; whether a network with a directional squeeze learns to use it within the "
            "training budget is what the run measured.")


register_question(
    "09.predict_coordatt_vs_se", title="Predict: CoordAtt against SE on row-marker digits", when="predict",
    choices={"a": "CoordAtt is a clear gain over SE (the 95 % interval lies above 0)",
             "b": "inconclusive (the interval contains 0)",
             "c": "CoordAtt is a clear loss against SE (the interval lies below 0)"},
    answer=lambda: _LABEL_LETTER[_coordatt_vs_se()["label"]],
    explanation=_coordatt_vs_se_explanation)

register_question(
    "09.interpret_aff_half", title="Interpret: AFF with every weight w = 0.5 — what does it output?",
    when="interpret",
    choices={"a": "x + y", "b": "(x + y) / 2", "c": "x · y", "d": "x"},
    answer="a",
    explanation=("2·x·0.5 + 2·y·(1 − 0.5) = x + y: with its factor 2, AFF undecided is exactly the plain addition it "
                 "replaces (a residual block's add, an FPN's skip sum). Without the factor it would halve the sum; "
                 "iAFF has no factor 2 in either round, so its undecided output is (x + y) / 2."))
