"""Plain data between the grader and a learner's worker: length-prefixed JSON frames with raw arrays.

Nothing is ever unpickled. A frame is ``b"ACG1" + 4-byte big-endian header length + UTF-8 JSON
header + the raw bytes of the arrays it names``. An array travels as ``{"a": index, "dtype": "float32",
"shape": [...]}`` in the header and its C-order bytes after it; the receiver checks the dtype against
a short list, the byte count against the shape, the header's nesting depth and every size limit
before building anything. Values that are not plain data (a learner's function or module) travel as
handles: ``{"obj": id, ...}``.

This file needs only the standard library and NumPy (torch is imported where tensors are met), and
runs on both sides: the grader's copy is never the worker's copy.
"""
from __future__ import annotations

import json
import math
import os
import select
import struct
import time

MAGIC = b"ACG1"
MAX_HEADER = 8 * 2**20  # bytes of JSON in one frame
MAX_ARRAYS_BYTES = 512 * 2**20  # bytes of array data in one frame
MAX_DEPTH = 64  # nesting of the JSON header
MAX_ARRAYS = 4096
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
          "complex64", "complex128")


class WireError(Exception):
    """A malformed, oversized or missing frame (the other side broke the protocol or went away)."""


class WireTimeout(WireError):
    """No complete frame arrived before the deadline."""


# --------------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------------
def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout("no answer before the deadline")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
        chunk = os.read(fd, min(n - got, 4 * 2**20))
        if not chunk:
            raise WireError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _depth_ok(text: str) -> bool:
    """Nesting depth of a JSON text at most MAX_DEPTH (checked before json.loads can recurse)."""
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def send(fd: int, header: dict, arrays: list[tuple[str, list[int], bytes]] = ()) -> None:
    """Send ``header`` (JSON-able) and the raw ``(dtype, shape, bytes)`` arrays it refers to by index."""
    header = dict(header)
    header["_arrays"] = [[d, list(s), len(b)] for d, s, b in arrays]
    text = json.dumps(header, allow_nan=True, separators=(",", ":")).encode("utf-8")
    _write_all(fd, MAGIC + struct.pack(">I", len(text)) + text + b"".join(b for _, _, b in arrays))


def recv(fd: int, deadline: float | None = None) -> tuple[dict, list]:
    """Read one frame: ``(header, arrays)``; arrays are NumPy arrays (copies), checked against limits."""
    import numpy as np

    head = _read_exact(fd, 8, deadline)
    if head[:4] != MAGIC:
        raise WireError("not a frame of this protocol")
    (size,) = struct.unpack(">I", head[4:])
    if size > MAX_HEADER:
        raise WireError(f"header of {size} bytes is over the limit")
    text = _read_exact(fd, size, deadline).decode("utf-8", "replace")
    if not _depth_ok(text):
        raise WireError("header nested too deeply")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise WireError(f"header is not JSON: {err}") from None
    specs = header.pop("_arrays", []) if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise WireError("malformed header")
    total, arrays = 0, []
    for spec in specs:
        if not (isinstance(spec, list) and len(spec) == 3 and spec[0] in DTYPES and isinstance(spec[1], list)
                and all(isinstance(d, int) and 0 <= d < 2**31 for d in spec[1]) and len(spec[1]) <= 16
                and isinstance(spec[2], int)):
            raise WireError("malformed array description")
        dtype, shape, nbytes = spec
        item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if math.prod(shape) * item != nbytes:
            raise WireError("array byte count does not match its shape")
        total += nbytes
        if total > MAX_ARRAYS_BYTES:
            raise WireError("arrays over the size limit")
        raw = _read_exact(fd, nbytes, deadline)
        if dtype == "bfloat16":
            arrays.append(("bfloat16", shape, raw))
        else:
            arrays.append(np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy())
    return header, arrays


# --------------------------------------------------------------------------------------------------
# tensors <-> raw arrays
# --------------------------------------------------------------------------------------------------
def tensor_to_raw(t) -> tuple[str, list[int], bytes]:
    """A torch tensor's values as ``(dtype, shape, bytes)``: a plain tensor, whatever subclass it was."""
    import torch

    t = torch.Tensor.detach(t)
    t = torch.Tensor.cpu(t)
    t = torch.Tensor.contiguous(t)
    t = t.as_subclass(torch.Tensor) if type(t) is not torch.Tensor else t
    name = str(t.dtype).replace("torch.", "")
    if name == "bfloat16":
        return name, list(t.shape), t.view(torch.int16).numpy().tobytes()
    if name not in DTYPES:
        t = t.to(torch.float64)
        name = "float64"
    return name, list(t.shape), t.numpy().tobytes()


def raw_to_tensor(arr):
    """A NumPy array (or a bfloat16 triple) from :func:`recv` as a new plain torch tensor."""
    import numpy as np
    import torch

    if isinstance(arr, tuple):
        _, shape, raw = arr
        return torch.from_numpy(np.frombuffer(raw, dtype=np.int16).reshape(shape).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(arr))
