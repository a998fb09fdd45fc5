"""Speed settings shared by training and evaluation: bf16 autocast where the hardware computes bf16
natively, and the channels_last memory format.

Measured in ``benchmarks/train_throughput.py``. :func:`speed_settings` turns ``None`` (automatic) into the
choice :func:`attncourse.train.fit` makes on a device.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["bf16_supported", "speed_settings", "autocast", "memory_format", "to_channels_last"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively, so bf16 autocast is a speed-up and not a slow emulation.

    CUDA: compute capability ≥ 8.0 (Ampere and later). CPU: the ``avx512_bf16`` or ``amx_bf16`` flag (Linux
    ``/proc/cpuinfo``), or ARM's ``bf16`` feature. Anything else (MPS, older CPUs, other OSes): ``False``.
    ``ATTNCOURSE_BF16=0`` or ``1`` overrides the detection.
    """
    forced = os.environ.get("ATTNCOURSE_BF16")
    if forced in {"0", "1"}:
        return forced == "1"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def speed_settings(device, amp: bool | None = None, channels_last: bool | None = None) -> dict:
    """The ``amp`` (bf16 autocast) and ``channels_last`` choices :func:`fit` makes on ``device``.

    ``None`` means automatic: bf16 where :func:`bf16_supported`, channels_last on CUDA and CPU.
    """
    device = torch.device(device)
    return {"amp": bf16_supported(device) if amp is None else bool(amp),
            "channels_last": device.type in ("cuda", "cpu") if channels_last is None else bool(channels_last)}


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on ``device`` when ``enabled`` (weights stay float32; losses are computed in float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type in ("cuda", "cpu"))


def memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Store every 4-D parameter and buffer of ``model`` in channels_last, in place; others are left alone.

    ``model.to(memory_format=torch.channels_last)`` also tries 5-D tensors and fails on them (``required rank 4
    tensor``) — e.g. CondConv's and Dynamic Convolution's stacks of expert kernels ``[E, C_out, C_in, k, k]``.
    """
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    return model
