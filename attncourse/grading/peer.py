"""One end of the grader <-> worker channel: calls across the process boundary, with autograd.

Both processes run a :class:`Peer`. A peer calls a callable of the other side with arguments encoded as
plain data (:mod:`.wire`), and serves the other side's requests while it waits (calls nest: the
grader calls a learner's function, which calls the ``stat_fn`` the checker passed in, which runs back
in the grader). Gradients cross the boundary too: an output of a remote call that requires grad is
attached to the local inputs by :class:`_Attach`, whose ``backward`` asks the other side to
back-propagate the incoming gradient through its own graph and return the inputs' gradients.

What may cross: ``None``, bools, ints, floats, strings, lists, tuples, dicts, torch tensors (their
values only: a tensor subclass arrives as a plain tensor), NumPy arrays and scalars, dtypes, and
handles. Each side decides what a handle means (``describe`` / ``make_proxy`` hooks): the worker
hands out its learner's functions, classes and modules; the grader hands out the callables a
checker passes as arguments. Nothing is unpickled and no code travels.

Standard library, NumPy and torch only: the worker runs a private copy of this file.
"""
from __future__ import annotations

import itertools
import math
import time

try:  # inside the package
    from . import wire
except ImportError:  # the worker's private copy, next to _acg_wire.py
    import _acg_wire as wire  # type: ignore[no-redef]

MAX_CONTAINER = 100_000  # items in one list/tuple/dict
MAX_DEPTH = 32  # nesting of values


class RemoteError(Exception):
    """The other side raised while serving a request (its message says what)."""


_BUILTIN_ERRORS = {e.__name__: e for e in (NotImplementedError, ValueError, TypeError, RuntimeError, KeyError,
                                           IndexError, AttributeError, ZeroDivisionError, AssertionError,
                                           NameError, OverflowError, ArithmeticError, LookupError, MemoryError,
                                           RecursionError, UnboundLocalError, ImportError, ModuleNotFoundError,
                                           OSError, FileNotFoundError, StopIteration, SystemExit)}


def exception_from(info: dict) -> BaseException:
    """The exception a remote error report stands for: the builtin class of that name, or an Exception
    subclass carrying the name (so hints read the same as when the code ran in-process)."""
    name = str(info.get("type", "RemoteError"))[:80]
    msg = str(info.get("msg", ""))[:2000]
    base = _BUILTIN_ERRORS.get(str(info.get("builtin", "")))
    if name == "SystemExit" or base is SystemExit:
        return SystemExit(msg)
    cls = _BUILTIN_ERRORS.get(name)
    if cls is None:
        safe = "".join(ch for ch in name if ch.isalnum() or ch == "_") or "RemoteError"
        bases = (base, RemoteError) if base is not None and base is not MemoryError else (RemoteError,)
        try:
            cls = type(safe, bases, {})
        except TypeError:
            cls = type(safe, (RemoteError,), {})
    return cls(msg) if msg else cls()


def _torch():
    import torch

    return torch


class _Attach:  # built lazily so this file imports without torch
    fn = None

    @classmethod
    def get(cls):
        if cls.fn is None:
            torch = _torch()

            class Attach(torch.autograd.Function):
                """Outputs computed on the other side, joined to the local inputs they came from."""

                @staticmethod
                def forward(ctx, link, n_in, *tensors):
                    ctx.link, ctx.n_in = link, n_in
                    ctx.in_meta = [(t.shape, t.dtype) for t in tensors[:n_in]]
                    return tuple(t.detach().clone() for t in tensors[n_in:])

                @staticmethod
                @torch.autograd.function.once_differentiable
                def backward(ctx, *grads):
                    got = ctx.link.peer.remote_backward(ctx.link.rec, list(grads), ctx.n_in)
                    out = []
                    for g, (shape, dtype) in zip(got, ctx.in_meta):
                        out.append(g.to(dtype) if g is not None and tuple(g.shape) == tuple(shape) else None)
                    out += [None] * (ctx.n_in - len(out))
                    return (None, None, *out, *([None] * (len(grads))))

            cls.fn = Attach
        return cls.fn


class _Link:
    def __init__(self, peer: "Peer", rec: int):
        self.peer, self.rec = peer, rec


class Peer:
    """``rfd``/``wfd``: file descriptors to read frames from and write frames to."""

    def __deepcopy__(self, memo):  # a copied proxy or mirror still talks through this channel
        return self

    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd
        self.deadline: float | None = None  # for reads: set by the grader around each exercise
        self.handles: dict[int, object] = {}  # id -> local object handed to the other side
        self.records: dict[int, tuple[list, list]] = {}  # id -> (input leaves, rg outputs) for backward
        self._ids = itertools.count(1)
        self._depth = 0
        self.broken = ""  # why the channel can no longer be used

    # ---- hooks for the two sides ---------------------------------------------------------------
    def describe(self, value, arrays: list, tensors: list):
        """Encode a local object that is not plain data (default: a handle to a callable)."""
        hid = next(self._ids)
        self.handles[hid] = value
        return {"t": "obj", "id": hid, "kind": "callable" if callable(value) else "other",
                "name": _type_name(value)}

    def make_proxy(self, desc: dict):
        """Decode a handle of the other side (default: a callable proxy)."""
        return RemoteCallable(self, desc)

    def handle_request(self, header: dict, arrays: list) -> tuple[dict, list]:
        """Side-specific requests (``op`` other than call / backward)."""
        raise RemoteError(f"unknown request {header.get('op')!r}")

    def before_call(self, target, header: dict, arrays: list) -> list:
        """Called before serving a call (the worker syncs module state here); returns extra leaves."""
        return []

    def after_call(self, target, header: dict, reply: dict, arrays: list) -> None:
        pass

    # ---- encoding ------------------------------------------------------------------------------
    def encode(self, value, arrays: list, tensors: list, depth: int = 0):
        torch = _torch()
        import numpy as np

        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply to send")
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool):
            return {"t": "bool", "v": bool(value)}
        if isinstance(value, np.generic) and not isinstance(value, np.ndarray):
            value = value.item()
            if isinstance(value, bool):
                return {"t": "bool", "v": value}
        if isinstance(value, int):
            return {"t": "int", "v": str(int(value))}
        if isinstance(value, float):
            return {"t": "float", "v": repr(float(value))}
        if isinstance(value, complex):
            return {"t": "complex", "v": [repr(value.real), repr(value.imag)]}
        if isinstance(value, str):
            return {"t": "str", "v": str(value)}
        if isinstance(value, torch.Tensor):
            arrays.append(wire.tensor_to_raw(value))
            tensors.append(value)
            return {"t": "tensor", "a": len(arrays) - 1, "rg": bool(value.requires_grad)}
        if isinstance(value, np.ndarray):
            if value.dtype.name not in wire.DTYPES:
                value = value.astype(np.float64)
            value = np.ascontiguousarray(value)
            arrays.append((value.dtype.name, list(value.shape), value.tobytes()))
            return {"t": "ndarray", "a": len(arrays) - 1}
        if isinstance(value, torch.dtype):
            return {"t": "dtype", "v": str(value).replace("torch.", "")}
        if isinstance(value, torch.device):
            return {"t": "device", "v": str(value)}
        if isinstance(value, (list, tuple)) and type(value) in (list, tuple, torch.Size):
            if len(value) > MAX_CONTAINER:
                raise ValueError("container too large to send")
            kind = "list" if isinstance(value, list) else "tuple"
            return {"t": kind, "v": [self.encode(v, arrays, tensors, depth + 1) for v in value]}
        if type(value) is dict:
            if len(value) > MAX_CONTAINER:
                raise ValueError("container too large to send")
            return {"t": "dict", "v": [[self.encode(k, arrays, tensors, depth + 1),
                                        self.encode(v, arrays, tensors, depth + 1)] for k, v in value.items()]}
        return self.describe(value, arrays, tensors)

    def decode(self, enc, arrays: list, leaves: list | None = None, depth: int = 0):
        """Plain values from an encoding; tensors flagged ``rg`` become new leaves (listed in ``leaves``)."""
        torch = _torch()

        if depth > MAX_DEPTH or not isinstance(enc, dict):
            raise wire.WireError("malformed value")
        t = enc.get("t")
        v = enc.get("v")
        if t == "none":
            return None
        if t == "bool":
            return v is True
        if t == "int":
            if not isinstance(v, str) or len(v) > 4000:
                raise wire.WireError("malformed int")
            return int(v)
        if t == "float":
            return float(str(v)[:64])
        if t == "complex":
            return complex(float(str(v[0])[:64]), float(str(v[1])[:64]))
        if t == "str":
            return str(v)
        if t in ("tensor", "ndarray"):
            idx = enc.get("a")
            if not isinstance(idx, int) or not 0 <= idx < len(arrays):
                raise wire.WireError("bad array index")
            if t == "ndarray":
                arr = arrays[idx]
                return wire.raw_to_tensor(arr).numpy() if isinstance(arr, tuple) else arr
            tensor = wire.raw_to_tensor(arrays[idx])
            if enc.get("rg") is True and (tensor.is_floating_point() or tensor.is_complex()):
                tensor.requires_grad_(True)
                if leaves is not None:
                    leaves.append(tensor)
            return tensor
        if t == "dtype":
            dt = getattr(torch, str(v), None)
            return dt if isinstance(dt, torch.dtype) else None
        if t == "device":
            return torch.device("cpu")
        if t in ("list", "tuple"):
            if not isinstance(v, list) or len(v) > MAX_CONTAINER:
                raise wire.WireError("malformed container")
            items = [self.decode(x, arrays, leaves, depth + 1) for x in v]
            return items if t == "list" else tuple(items)
        if t == "dict":
            if not isinstance(v, list) or len(v) > MAX_CONTAINER:
                raise wire.WireError("malformed container")
            out = {}
            for pair in v:
                k = self.decode(pair[0], arrays, leaves, depth + 1)
                try:
                    out[k] = self.decode(pair[1], arrays, leaves, depth + 1)
                except TypeError:
                    raise wire.WireError("unhashable key") from None
            return out
        if t in ("obj", "module"):
            return self.make_proxy(enc)
        raise wire.WireError(f"unknown value type {t!r}")

    # ---- the channel ---------------------------------------------------------------------------
    def _send(self, header: dict, arrays: list = ()) -> None:
        if self.broken:
            raise RemoteError(self.broken)
        try:
            wire.send(self.wfd, header, arrays)
        except OSError as err:
            self.broken = f"the channel is closed ({type(err).__name__})"
            raise RemoteError(self.broken) from None

    def request(self, header: dict, arrays: list = ()) -> tuple[dict, list]:
        """Send a request and serve the other side's requests until its reply arrives."""
        self._send(header, arrays)
        self._depth += 1
        try:
            while True:
                try:
                    msg, arrs = wire.recv(self.rfd, self.deadline)
                except wire.WireTimeout:
                    self.broken = "no answer before the time limit"
                    raise RemoteError(self.broken) from None
                except (wire.WireError, OSError) as err:
                    self.broken = f"the other side broke the channel ({err})"
                    raise RemoteError(self.broken) from None
                if msg.get("op") == "reply":
                    if "error" in msg:
                        raise exception_from(msg["error"] if isinstance(msg["error"], dict) else {})
                    return msg, arrs
                self.serve_one(msg, arrs)
        finally:
            self._depth -= 1

    def serve_one(self, msg: dict, arrs: list) -> None:
        """Answer one request of the other side (errors are answered, never raised)."""
        out_arrays: list = []
        try:
            op = msg.get("op")
            if op == "call":
                reply = self._serve_call(msg, arrs, out_arrays)
            elif op == "backward":
                reply = self._serve_backward(msg, arrs, out_arrays)
            elif op == "release":
                for rid in msg.get("recs", []) if isinstance(msg.get("recs"), list) else []:
                    self.records.pop(rid, None)
                reply = {}
            else:
                reply, out_arrays = self.handle_request(msg, arrs)
        except RemoteError:
            raise
        except BaseException as err:  # noqa: BLE001 — learner code may raise anything, even SystemExit
            if isinstance(err, KeyboardInterrupt) and getattr(err, "_attncourse_hard", False):
                raise
            reply, out_arrays = {"error": error_info(err)}, []
        reply["op"] = "reply"
        self._send(reply, out_arrays)

    # ---- calls -----------------------------------------------------------------------------------
    def remote_call(self, target: dict, args: tuple, kwargs: dict, extra_inputs: list = (), extra=None):
        """Call the other side's ``target`` (a handle description) with ``args``/``kwargs``; ``extra(arrays)``
        returns more header fields (module state), ``extra_inputs`` more local tensors the result depends on."""
        torch = _torch()
        arrays: list = []
        tensors: list = []
        enc_args = self.encode(list(args), arrays, tensors)
        enc_kwargs = self.encode(dict(kwargs), arrays, tensors)
        header = {"op": "call", "target": target, "args": enc_args, "kwargs": enc_kwargs}
        if extra is not None:
            header.update(extra(arrays))
        reply, arrs = self.request(header, arrays)
        rg_out: list = []
        result = self.decode(reply.get("result"), arrs, rg_out)
        mutated = reply.get("mutated")
        if isinstance(mutated, list):
            with torch.no_grad():
                for item in mutated[:len(tensors)]:
                    try:
                        i, new = int(item[0]), self.decode(item[1], arrs)
                        if isinstance(new, torch.Tensor) and new.shape == tensors[i].shape:
                            tensors[i].copy_(new)
                    except (TypeError, ValueError, IndexError, RuntimeError):
                        continue
        for t in rg_out:  # decoded as leaves; re-detached and attached below
            t.requires_grad_(False)
        self.after_remote_call(target, reply, arrs)
        rec = reply.get("rec")
        if not rg_out or not isinstance(rec, int):
            return result
        inputs = [t for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad] + list(extra_inputs)
        if not inputs:  # e.g. parameters living only on the other side: an anchor keeps the graph
            inputs = [torch.zeros((), requires_grad=True)]
        attached = _Attach.get().apply(_Link(self, rec), len(inputs), *inputs, *rg_out)
        swap = {id(a): b for a, b in zip(rg_out, attached)}
        return _replace(result, swap)

    def after_remote_call(self, target, reply: dict, arrays: list) -> None:
        pass

    def remote_backward(self, rec: int, grads: list, n_in: int) -> list:
        arrays: list = []
        enc = [self.encode(g.detach() if g is not None else None, arrays, []) for g in grads]
        reply, arrs = self.request({"op": "backward", "rec": rec, "grads": enc}, arrays)
        got = reply.get("grads")
        if not isinstance(got, list):
            return [None] * n_in
        out = []
        for g in got[:n_in]:
            val = self.decode(g, arrs)
            out.append(val if isinstance(val, _torch().Tensor) else None)
        return out

    def resolve_target(self, target: dict):
        obj = self.handles.get(target.get("id")) if isinstance(target, dict) else None
        if obj is None:
            raise RemoteError("unknown handle")
        return obj

    def _serve_call(self, msg: dict, arrs: list, out_arrays: list) -> dict:
        torch = _torch()
        target = self.resolve_target(msg.get("target"))
        leaves: list = []
        args = self.decode(msg.get("args"), arrs, leaves)
        kwargs = self.decode(msg.get("kwargs"), arrs, leaves)
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise RemoteError("malformed call")
        leaves += self.before_call(target, msg, arrs)
        given = _tensors_in([args, kwargs])
        versions = [t._version for t in given]
        with torch.enable_grad():
            result = target(*args, **kwargs)
        tensors: list = []
        reply = {"result": self.encode(result, out_arrays, tensors)}
        changed = [i for i, (t, v) in enumerate(zip(given, versions)) if t._version != v]
        if changed:  # arguments changed in place: the caller's tensors change the same way
            reply["mutated"] = [[i, self.encode(given[i].detach(), out_arrays, [])] for i in changed]
        outs = [t for t in tensors if t.requires_grad]
        if outs:
            rid = next(self._ids)
            self.records[rid] = (leaves, outs)
            reply["rec"] = rid
        self.after_call(target, msg, reply, out_arrays)
        return reply

    def _serve_backward(self, msg: dict, arrs: list, out_arrays: list) -> dict:
        torch = _torch()
        rec = self.records.get(msg.get("rec"))
        if rec is None:
            raise RemoteError("unknown record")
        leaves, outs = rec
        grads = msg.get("grads") if isinstance(msg.get("grads"), list) else []
        pairs = []
        for t, g in zip(outs, grads):
            g = self.decode(g, arrs)
            if isinstance(g, torch.Tensor) and tuple(g.shape) == tuple(t.shape):
                pairs.append((t, g.to(t.dtype)))
        for leaf in leaves:
            leaf.grad = None
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs], retain_graph=True)
        return {"grads": [self.encode(leaf.grad, out_arrays, []) for leaf in leaves]}


def _tensors_in(value, out=None, depth=0) -> list:
    """The tensors inside decoded arguments, in the order they were encoded."""
    torch = _torch()
    out = [] if out is None else out
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        for v in value:
            _tensors_in(v, out, depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, dict):
        for k, v in value.items():
            _tensors_in(k, out, depth + 1)
            _tensors_in(v, out, depth + 1)
    return out


def _replace(value, swap: dict):
    if id(value) in swap:
        return swap[id(value)]
    if isinstance(value, list):
        return [_replace(v, swap) for v in value]
    if isinstance(value, tuple):
        return tuple(_replace(v, swap) for v in value)
    if isinstance(value, dict):
        return {k: _replace(v, swap) for k, v in value.items()}
    return value


def _type_name(value) -> str:
    name = getattr(type(value), "__name__", "object")
    return name if isinstance(name, str) else "object"


def error_info(err: BaseException) -> dict:
    """What a remote error report carries: the exception's type name and message (with the learner's line)."""
    try:
        msg = str(err)
    except Exception:  # noqa: BLE001
        msg = "<unprintable>"
    where = ""
    import os
    import traceback

    try:  # the innermost frame of the learner's code, as attncourse.exercises.core describes exceptions
        import torch

        skip = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(torch.__file__),
                os.path.dirname(os.__file__))
        for frame in traceback.extract_tb(err.__traceback__):
            name = frame.filename
            if not name.startswith(skip) and "site-packages" not in name and "dist-packages" not in name:
                where = f" (in {frame.name}, line {frame.lineno})"
    except Exception:  # noqa: BLE001
        pass
    if where and msg:
        msg = f"{msg}{where}"
    elif where:
        msg = where.strip()
    builtin = next((c.__name__ for c in type(err).__mro__ if _BUILTIN_ERRORS.get(c.__name__) is c), "")
    return {"type": _type_name(err), "builtin": builtin, "msg": msg[:1000]}


class RemoteCallable:
    """A learner's function or class, living in the worker: calling it runs it there."""

    def __init__(self, peer: Peer, desc: dict):
        self._peer = peer
        self._desc = {"id": desc.get("id")}
        self.__name__ = str(desc.get("name", "function"))[:80]

    def __call__(self, *args, **kwargs):
        return self._peer.remote_call(self._desc, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote {self.__name__}>"


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def now() -> float:
    return time.monotonic()
