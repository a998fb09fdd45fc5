"""Reading a learner's module by role, and gradient cases: :func:`mlp_readings` finds a two-layer MLP in any
layout (``nn.Linear``, 1×1 / kernel-1 convs, raw matrices); :func:`gradient_flow` and :func:`compare_gradient`
check that gradients reach every input and parameter (a wrong output is the value cases' to report).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

from .cases import compare_tensors, tensor_type_hint
from .mistakes import _close, match_mistakes


@dataclass
class MLPWeights:
    """A two-layer MLP read from a learner's parameters: ``f(z) = W2 · act(W1 · z + b1) + b2`` on ``z [N, C_in]``.

    ``w1 [hidden, C_in]``, ``w2 [C_out, hidden]`` whatever layout the learner stored them in; a missing
    bias is zero. ``ids`` are the indices (in ``module.parameters()``) of the parameters it uses.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    ids: tuple[int, ...] = ()

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[0])

    def pre(self, z: torch.Tensor) -> torch.Tensor:
        """The hidden pre-activations ``W1 · z + b1``, ``[N, hidden]``."""
        return z.reshape(z.shape[0], -1) @ self.w1.t() + self.b1

    def __call__(self, z: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor] = torch.relu) -> torch.Tensor:
        return act(self.pre(z)) @ self.w2.t() + self.b2


def _matrix(p: torch.Tensor) -> torch.Tensor | None:
    """``p`` as a matrix: a Linear weight or raw matrix (2-D), a kernel-1 Conv1d/Conv2d weight ``[out, in, 1(, 1)]``."""
    if p.dim() == 2:
        return p
    if p.dim() > 2 and all(int(s) == 1 for s in p.shape[2:]):
        return p.reshape(p.shape[0], p.shape[1])
    return None


def _layer_options(p: torch.Tensor, *, c_in: int | None = None, c_out: int | None = None) -> list[tuple[int, torch.Tensor]]:
    """``(width, weight in [out, in] layout)`` for every way ``p`` can be a layer from ``c_in`` (or to ``c_out``)."""
    m = _matrix(p)
    if m is None:
        return []
    rows, cols = int(m.shape[0]), int(m.shape[1])
    out = []
    if c_in is not None:
        if cols == c_in:
            out.append((rows, m))  # [out, in]: nn.Linear, 1×1 conv, kernel-1 Conv1d, W @ z
        if rows == c_in:
            out.append((cols, m.t()))  # [in, out]: a raw matrix used as z @ W
    else:
        if rows == c_out:
            out.append((cols, m))
        if cols == c_out:
            out.append((rows, m.t()))
    return out


def mlp_readings(module: Any, c_in: int, c_out: int, hidden: int | None = None, *, limit: int = 48) -> list[MLPWeights]:
    """Every way to read ``module``'s parameters as one two-layer MLP ``c_in → hidden → c_out`` (by role, not by name).

    Accepts ``nn.Linear``, 1×1 ``nn.Conv2d``, kernel-1 ``nn.Conv1d`` and raw weight matrices in either
    orientation (``z @ W`` or ``W @ z``); biases are the parameters with ``hidden`` and ``c_out`` elements,
    any shape. ``hidden=None`` accepts any hidden width. Checkers compute the reference with each
    reading and keep the one that reproduces the learner's output, so no parameter layout is favoured.
    An empty list means the parameters cannot be read as such an MLP (check by behaviour only).
    """
    try:
        params = [p.detach() for p in module.parameters()]
    except Exception:
        return []
    readings: list[MLPWeights] = []
    for i, p in enumerate(params):
        for h, w1 in _layer_options(p, c_in=c_in):
            if hidden is not None and h != hidden:
                continue
            for j, q in enumerate(params):
                if j == i:
                    continue
                for h2, w2 in _layer_options(q, c_out=c_out):
                    if h2 != h:
                        continue
                    b1s = [k for k, t in enumerate(params) if k not in (i, j) and t.numel() == h] or [None]
                    b2s = [k for k, t in enumerate(params) if k not in (i, j) and t.numel() == c_out] or [None]
                    for k1 in b1s:
                        for k2 in b2s:
                            if k1 is not None and k1 == k2:
                                continue
                            b1 = params[k1].reshape(h) if k1 is not None else torch.zeros(h, dtype=w1.dtype)
                            b2 = params[k2].reshape(c_out) if k2 is not None else torch.zeros(c_out, dtype=w2.dtype)
                            ids = tuple(k for k in (i, j, k1, k2) if k is not None)
                            readings.append(MLPWeights(w1, b1, w2, b2, ids))
                            if len(readings) >= limit:
                                return readings
    return readings


def compare_gradient(output: Any, reference: torch.Tensor, grad: Any, expected: torch.Tensor, what: str, *,
                     mistakes: Any = None, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """Compare a gradient with ``expected`` only when the ``output`` it comes from equals ``reference``.

    A wrong output is the value cases' business: its gradient differs too, and saying so again (or
    guessing a cause from it) would name a mistake twice or wrongly. Then only a known mistake the
    gradient reproduces is named; otherwise the gradient case passes (the gradient did flow).
    """
    if isinstance(output, torch.Tensor) and _close(output.detach(), reference.detach(), atol, rtol):
        return compare_tensors(grad, expected, what, atol=atol, rtol=rtol, mistakes=mistakes)
    hint = match_mistakes(grad, expected, mistakes, atol=atol, rtol=rtol)
    return f"{what}: {hint}" if hint else None


def gradient_flow(forward: Callable[[torch.Tensor], Any], inputs: Iterable[torch.Tensor], module: Any = None, *,
                  input_name: str = "x", output_name: str = "the output") -> str | None:
    """``None`` when gradients reach the input and every parameter of ``module`` on at least one of ``inputs``.

    Each input is tried in turn (a weighted sum of ``forward(input)`` is back-propagated). The hints
    tell apart what autograd can tell apart: an output outside the graph, an input whose gradient never
    arrives (detached), a gradient that arrives but is zero on every input tried (the output is flat in
    the input there: no graph problem), and parameters that get no gradient (unused) or only zero ones.
    """
    params = list(module.named_parameters()) if module is not None else []
    reached_x = nonzero_x = False
    reached = {name: False for name, _ in params}
    nonzero = {name: False for name, _ in params}
    for x in inputs:
        x = x.detach().clone().requires_grad_(True)
        for _, p in params:
            p.grad = None
        out = forward(x)
        if not isinstance(out, torch.Tensor):
            return tensor_type_hint(out, "the output")
        if not out.requires_grad:
            return (f"{output_name} is not connected to the autograd graph (no .detach(), .numpy(), .item() or "
                    "torch.no_grad() in forward)")
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        (out * weights).sum().backward()
        if x.grad is not None:
            reached_x = True
            nonzero_x = nonzero_x or bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
        for name, p in params:
            if p.grad is not None:
                reached[name] = True
                nonzero[name] = nonzero[name] or float(p.grad.abs().sum()) > 0
    for _, p in params:
        p.grad = None
    if not reached_x:
        return (f"no gradient reached {input_name}: the graph is cut between {input_name} and {output_name} "
                "(.detach(), .data, .numpy() or torch.no_grad() on the way?)")
    if not nonzero_x:
        return (f"the gradient reaching {input_name} is exactly zero on every input tried: {output_name} does not "
                f"change with {input_name} there")
    unused = [name for name in reached if not reached[name]]
    if unused:
        return f"no gradient reached these parameters: {', '.join(unused)} (are they used in forward?)"
    flat = [name for name in nonzero if not nonzero[name]]
    if flat:
        return (f"these parameters get a zero gradient on every input tried: {', '.join(flat)} "
                f"({output_name} does not change with them)")
    return None
