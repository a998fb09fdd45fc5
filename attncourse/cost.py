"""What a block costs: parameters, FLOPs, latency and peak memory, and a table to compare them.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2 FLOPs;
convolutions and matrix products only — element-wise ops, pooling and softmax are not counted).
``scaled_dot_product_attention`` is counted by formula, whatever kernel runs it (CPU flash, flash,
memory-efficient, cuDNN, or the math fallback, which decomposes into ``bmm``) and whatever the torch
version: for q ``[.., L, E]``, k ``[.., S, E]``, v ``[.., S, Ev]`` it is ``2·L·S·E + 2·L·S·Ev`` per batch×head
forward (the two matrix products), and twice that backward (the four products of the gradients;
torch's own table adds a recomputation of ``q kᵀ`` to the fused kernels' backward, which the math
fallback does not do). So an attention block costs the same as its explicit-matrix form.
Latency is the median of repeated timed runs after warm-up (CUDA events on a GPU).
Peak memory is the allocator's peak on CUDA, and on the CPU the peak of live tensor memory
recorded by the PyTorch profiler.
The latency and memory helpers leave a model exactly as they found it (:func:`preserved`): the mode of
every submodule, parameters, buffers (BatchNorm running statistics) and gradients.
"""
from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager, nullcontext
from typing import Callable

import torch
from torch import nn

from .config import device_name

__all__ = ["count_params", "count_flops", "measure_latency", "peak_memory", "preserved", "cost_report", "CostTable",
           "compare_costs"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _as_input(model: nn.Module, x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    p = next(model.parameters(), None)
    return torch.randn(*x, device=p.device if p is not None else "cpu")


def _shape(t) -> tuple[int, ...]:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else tuple(t)


def _sdpa_forward_flops(query, key, value, *args, **kwargs) -> int:
    """``2·L·S·(E + Ev)`` per batch×head: ``q kᵀ`` ``[L, E]·[E, S]`` and ``attn·v`` ``[L, S]·[S, Ev]``."""
    q, k, v = _shape(query), _shape(key), _shape(value)
    (length, e), s, ev = q[-2:], k[-2], v[-1]
    return 2 * length * s * (e + ev) * math.prod(q[:-2])  # query's batch×heads (GQA broadcasts k, v to them)


def _sdpa_backward_flops(grad_out, query, key, value, *args, **kwargs) -> int:
    """2× forward: ``d(q kᵀ)`` → dq, dk; ``d(attn·v)`` → d attn, dv (the math fallback's four ``bmm``)."""
    return 2 * _sdpa_forward_flops(query, key, value)


_sdpa_forward_flops._get_raw = True  # FlopCounterMode passes the tensors (else their shapes: both work)
_sdpa_backward_flops._get_raw = True

_SDPA_FORWARD_OPS = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
                     "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                     "_scaled_dot_product_fused_attention_overrideable", "_scaled_dot_product_attention_math_for_mps")


def _sdpa_flop_mapping() -> dict:
    """A ``custom_mapping`` for ``FlopCounterMode``: every fused SDPA op of this torch (forward and backward).

    The math fallback (``_scaled_dot_product_attention_math``) is not listed: it decomposes into two ``bmm``
    (four backward), which the counter already counts, to the same total.
    """
    mapping = {}
    for name in _SDPA_FORWARD_OPS:
        for op, formula in ((name, _sdpa_forward_flops), (name + "_backward", _sdpa_backward_flops)):
            try:
                mapping[getattr(torch.ops.aten, op)] = formula
            except (AttributeError, RuntimeError):  # not in this torch version
                pass
    return mapping


def count_flops(model: nn.Module | Callable, x, backward: bool = False) -> int:
    """FLOPs of one forward pass (plus backward if ``backward``) on input ``x`` (a tensor or a shape).

    Attention (``F.scaled_dot_product_attention``) is counted by formula, the same under every SDPA backend.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = _as_input(model, x) if isinstance(model, nn.Module) else x
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_sdpa_flop_mapping())
    with counter:
        if backward:
            model(x).float().sum().backward()
        else:
            with torch.no_grad():
                model(x)
    if isinstance(model, nn.Module):
        model.train(was_training)
    return int(counter.get_total_flops())


@contextmanager
def preserved(*models: nn.Module | None):
    """Put every model back exactly as it was when the block exits (also after an exception).

    Restored in place: the ``training`` flag of every submodule, the values of all parameters and buffers
    (BatchNorm running statistics and batch counters, EMA bases, …) and every parameter's ``.grad`` (the same
    tensor object with its old values, or ``None``). Costs one copy of the model's tensors while it runs.
    """
    modules = [m for m in models if isinstance(m, nn.Module)]
    modes = [(sub, sub.training) for m in modules for sub in m.modules()]
    params = list(dict.fromkeys(p for m in modules for p in m.parameters()))
    tensors = [(t, t.detach().clone()) for t in params + list(dict.fromkeys(b for m in modules for b in m.buffers()))]
    grads = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in params]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, saved in tensors:
                t.copy_(saved)
            for p, grad, saved in grads:
                if grad is not None:
                    grad.copy_(saved)
                p.grad = grad
        for sub, training in modes:
            sub.training = training


def measure_latency(fn: nn.Module | Callable, x, *, warmup: int = 3, repeats: int = 10, backward: bool = False) -> dict:
    """Median wall time of ``fn(x)`` in milliseconds (forward only, or forward+backward).

    A module is timed in eval mode (forward) or in training mode (``backward=True``), then restored exactly
    (:func:`preserved`): its modes, parameters, BatchNorm statistics and existing gradients are as before.

    Returns ``{"median_ms", "min_ms", "max_ms", "times_ms", "repeats", "device"}``. Warm-up runs are discarded.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"measure_latency: repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"measure_latency: warmup must be an int >= 0, got {warmup!r}")
    if isinstance(fn, nn.Module):
        x = _as_input(fn, x)
        with preserved(fn):
            fn.train(backward)
            return _time(fn, x, warmup, repeats, backward)
    return _time(fn, x, warmup, repeats, backward)


def _time(fn, x, warmup: int, repeats: int, backward: bool) -> dict:
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    ctx = nullcontext if backward else torch.no_grad

    def step():
        if backward and isinstance(fn, nn.Module):
            fn.zero_grad(set_to_none=True)
        with ctx():
            out = fn(x)
            if backward:
                out.float().sum().backward()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "times_ms": times,
            "repeats": repeats,
            "device": device_name(device)}


def peak_memory(fn: Callable[[], object], device=None, *, model: nn.Module | None = None) -> int:
    """Peak bytes of tensor memory allocated while ``fn()`` runs, above what was live before.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the running total of the profiler's allocation
    and free events (tensors allocated by PyTorch, the figure that grows with attention matrices).

    ``fn`` may switch modes, step BatchNorm statistics or accumulate gradients: pass the ``model`` it uses
    and that model is restored exactly afterwards (:func:`preserved`). The copy this takes is made before
    the measurement starts and is not counted.
    """
    with preserved(model):
        return _peak_memory(fn, device)


def _peak_memory(fn: Callable[[], object], device=None) -> int:
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with _silenced_native_output(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are charged to the op that made them (self memory > 0); frees appear as "[memory]" events
    deltas = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, d in deltas:
        live += d
        peak = max(peak, live)
    return int(peak)


@contextmanager
def _silenced_native_output():
    """Send the profiler's native log lines (written straight to fds 1 and 2) to /dev/null."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def cost_report(model: nn.Module, x, *, latency: bool = True, memory: bool = False, repeats: int = 10) -> dict:
    """Params, forward FLOPs and (optionally) latency and forward+backward peak memory of ``model`` on ``x``."""
    x = _as_input(model, x)
    row = {"params": count_params(model), "flops": count_flops(model, x)}
    if latency:
        row["latency_ms"] = measure_latency(model, x, repeats=repeats)["median_ms"]
    if memory:
        def fwd_bwd():
            model.train()
            model(x).float().sum().backward()
        row["peak_mem_bytes"] = peak_memory(fwd_bwd, x.device, model=model)
    return row


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


class CostTable:
    """Rows of costs (one per model) that render as an HTML table in Jupyter and as text elsewhere.

    The first row is the baseline; the ``Δ`` columns compare every row against it.
    """

    columns = (("params", "params", ""), ("flops", "FLOPs", ""), ("latency_ms", "latency (ms)", None),
               ("peak_mem_bytes", "peak memory", "B"))

    def __init__(self, rows: dict[str, dict], note: str = ""):
        self.rows = rows
        self.note = note

    def _cells(self):
        names = list(self.rows)
        base = self.rows[names[0]] if names else {}
        cols = [c for c in self.columns if any(c[0] in r for r in self.rows.values())]
        header = ["model"] + [label for _, label, _ in cols] + [f"Δ {label}" for key, label, _ in cols if key != "latency_ms"]
        body = []
        for name, r in self.rows.items():
            cells = [name]
            for key, _, unit in cols:
                v = r.get(key)
                cells.append("" if v is None else (f"{v:.2f}" if unit is None else _human(v, unit)))
            for key, _, unit in cols:
                if key == "latency_ms":
                    continue
                v, b = r.get(key), base.get(key)
                cells.append("" if v is None or not b else f"{100 * (v - b) / b:+.1f}%")
            body.append(cells)
        return header, body

    def __str__(self) -> str:
        header, body = self._cells()
        widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
        line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        text = "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])
        return text + (f"\n{self.note}" if self.note else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        header, body = self._cells()
        th = "".join(f"<th>{h}</th>" for h in header)
        tr = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
        note = f"<caption style='caption-side:bottom'>{self.note}</caption>" if self.note else ""
        return f"<table>{note}<thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>"


def compare_costs(models: dict[str, nn.Module], x, *, latency: bool = True, memory: bool = False, repeats: int = 10) -> CostTable:
    """A :class:`CostTable` for several models on the same input (first model = baseline)."""
    x = _as_input(next(iter(models.values())), x)
    rows = {name: cost_report(m, x, latency=latency, memory=memory, repeats=repeats) for name, m in models.items()}
    note = f"input {tuple(x.shape)}; " + (f"latency: median of {repeats} on {device_name(x.device)}" if latency else "")
    return CostTable(rows, note)
