"""The grader's side of the channel: proxies for a learner's objects, and module mirrors.

The checkers of :mod:`attncourse.exercises` run here, in the grader's own process, on proxies:

* a learner's function or class is a :class:`~.peer.RemoteCallable`: calling it runs it in the worker
  on the grader's inputs and returns plain values (tensors rebuilt from raw bytes);
* a learner's ``nn.Module`` instance is **mirrored**: the same tree of submodules, parameters,
  buffers and training flags, built here from plain data. Submodules of ``torch.nn``'s own classes
  (``Conv2d``, ``BatchNorm2d``, ``Sequential``…) are real instances of those classes, so checkers find
  them by type and read or edit their weights; calling a learner-defined (sub)module sends the
  mirror's current state to the worker, runs its ``forward`` there and brings back updated buffers
  (BatchNorm statistics). Gradients flow both ways through :class:`~.peer._Attach`.

The worker can only ever answer with values; it never sees a checker, a reference or a comparison.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn

from . import peer as _peer
from . import wire

_CLASS_CACHE: dict[tuple[str, str], type] = {}


class _RemoteModule(nn.Module):
    """A learner-defined module: its forward runs in the worker."""

    def forward(self, *args, **kwargs):
        info = self.__dict__["_acg"]
        return info.peer.call_module(info.hid, info.path, info.root, args, kwargs)


class _RemoteOpaque:
    """A learner's value that is neither plain data nor callable (only its type name is known)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object>"


class _Info:  # not an nn.Module: nn.Module.__setattr__ stores it as a plain attribute
    """Where a mirrored module lives in the worker. A deep copy of a mirror (checkers copy modules to try
    weights on them) shares the worker's module, which is only an engine: every call sends the state of
    the mirror being called."""

    def __init__(self, peer, hid: int, path: str, root=None):
        self.peer, self.hid, self.path, self.root = peer, hid, path, root

    def __deepcopy__(self, memo):
        import copy

        return _Info(self.peer, self.hid, self.path, copy.deepcopy(self.root, memo))


def _safe_name(name, default: str) -> str:
    name = str(name)[:80] if isinstance(name, str) else default
    name = "".join(ch for ch in name if ch.isalnum() or ch == "_")
    return name if name and not name[0].isdigit() else default


def _subclass(base: type, name: str) -> type:
    key = (base.__name__, name)
    if key not in _CLASS_CACHE:
        _CLASS_CACHE[key] = type(name, (base,), {"__module__": "learner"})
    return _CLASS_CACHE[key]


def _torch_class(module: str, qualname: str):
    """The ``torch.nn`` class a learner's submodule reports, when it is exactly one of torch's own."""
    if not (isinstance(module, str) and isinstance(qualname, str) and module.startswith("torch.nn.modules.")):
        return None
    cls = getattr(nn, qualname, None)
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module:
        return cls
    return None


class GraderPeer(_peer.Peer):
    def __init__(self, rfd: int, wfd: int):
        super().__init__(rfd, wfd)
        self.mirrors: dict[int, nn.Module] = {}
        self._roots: list[nn.Module] = []  # the mirror whose call is in flight (for its buffer updates)

    def request(self, header, arrays=()):
        if self._depth == 0 and self.deadline is not None and "limit" not in header:  # the worker's own alarm
            header = dict(header, limit=max(0.5, self.deadline - time.monotonic() - 3))
        return super().request(header, arrays)

    def describe(self, value, arrays, tensors):
        hid = next(self._ids)
        self.handles[hid] = value
        return {"t": "obj", "id": hid, "kind": "callable" if callable(value) else "other", "name": "object"}

    def make_proxy(self, desc: dict):
        if desc.get("t") == "module":
            return self._mirror(desc)
        kind = desc.get("kind")
        if kind in ("callable", "class"):
            return _peer.RemoteCallable(self, desc)
        return _subclass(_RemoteOpaque, _safe_name(desc.get("name"), "object"))()

    # ---- mirrors -------------------------------------------------------------------------------
    def _mirror(self, desc: dict) -> nn.Module:
        hid = desc.get("id")
        tree = desc.get("tree")
        arrays = self._arrays
        if not isinstance(hid, int) or not isinstance(tree, list) or not tree or len(tree) > 10_000:
            raise wire.WireError("malformed module")
        by_path: dict[str, nn.Module] = {}
        pending: list = []
        for entry in tree:
            path = entry.get("path")
            cls_mod, cls_name = (entry.get("cls") or ["", ""])[:2]
            torch_cls = _torch_class(cls_mod, cls_name)
            if torch_cls is not None:
                m = torch_cls.__new__(torch_cls)
                nn.Module.__init__(m)
                for k, v in entry.get("attrs", []):
                    if isinstance(k, str) and k not in m.__dict__ and not k.startswith("__"):
                        m.__dict__[k] = self.decode(v, arrays)
            else:
                last = str(cls_name).split(".")[-1] if isinstance(cls_name, str) else "Module"
                m = _subclass(_RemoteModule, _safe_name(last, "Module"))()
                m.__dict__["_acg"] = _Info(self, hid, path)
            m.training = entry.get("training") is True
            for k, v in entry.get("params", []):
                t = self.decode(v, arrays)
                if isinstance(k, str) and isinstance(t, torch.Tensor) and "." not in k and k:
                    m._parameters[k] = nn.Parameter(t.detach(), requires_grad=t.requires_grad)
            for k, v in entry.get("buffers", []):
                t = self.decode(v, arrays)
                if isinstance(k, str) and isinstance(t, torch.Tensor) and "." not in k and k:
                    m._buffers[k] = t.detach()
            for k in entry.get("none_params", []):
                if isinstance(k, str) and k and "." not in k:
                    m._parameters[k] = None
            for k in entry.get("none_buffers", []):
                if isinstance(k, str) and k and "." not in k:
                    m._buffers[k] = None
            by_path[path] = m
            pending.append((m, entry.get("children", [])))
        for m, children in pending:
            for name, target, _shared in children:
                child = by_path.get(target)
                if isinstance(name, str) and name and "." not in name and child is not None:
                    m._modules[name] = child
        root = by_path.get("")
        if root is None:
            raise wire.WireError("module without a root")
        for m in by_path.values():
            info = m.__dict__.get("_acg")
            if info is not None:
                info.root = root
        self.mirrors[hid] = root
        return root

    def decode(self, enc, arrays, leaves=None, depth=0):
        self._arrays = arrays  # make_proxy needs the frame's arrays
        return super().decode(enc, arrays, leaves, depth)

    def _state(self, root: nn.Module):
        """(state entries, grad-param paths, their tensors) of a mirror, in ``named_modules`` order."""
        entries, grad_paths, grad_tensors = [], [], []
        for path, m in root.named_modules():
            entries.append((path, m))
            for name, p in m._parameters.items():
                if p is not None and p.requires_grad:
                    grad_paths.append([path, name])
                    grad_tensors.append(p)
        return entries, grad_paths, grad_tensors

    def call_module(self, hid: int, path: str, root, args, kwargs):
        if root is None:
            raise _peer.RemoteError("the module is no longer available")
        entries, grad_paths, grad_tensors = self._state(root)

        def extra(arrays):
            state = []
            for p, m in entries:
                params = []
                for name, t in m._parameters.items():
                    if t is not None:
                        arrays.append(wire.tensor_to_raw(t))
                        params.append([name, {"t": "tensor", "a": len(arrays) - 1, "rg": False}])
                buffers = []
                for name, t in m._buffers.items():
                    if t is not None:
                        arrays.append(wire.tensor_to_raw(t))
                        buffers.append([name, {"t": "tensor", "a": len(arrays) - 1, "rg": False}])
                state.append([p, bool(m.training), params, buffers])
            return {"state": state, "grad_params": grad_paths}

        self._roots.append(root)
        try:
            return self.remote_call({"id": hid, "path": path}, args, kwargs, extra_inputs=grad_tensors, extra=extra)
        finally:
            self._roots.pop()

    def after_remote_call(self, target, reply, arrays):
        root = self._roots[-1] if self._roots and isinstance(target, dict) and "path" in target else None
        updates = reply.get("buffers")
        if root is None or not isinstance(updates, list):
            return
        with torch.no_grad():
            for item in updates[:10_000]:
                if not (isinstance(item, list) and len(item) == 3):
                    continue
                path, name, enc = item
                try:
                    m = root.get_submodule(path) if path else root
                except (AttributeError, TypeError):
                    continue
                old = m._buffers.get(name) if isinstance(name, str) else None
                new = self.decode(enc, arrays)
                if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
                    m._buffers[name] = new.to(old.dtype) if new.shape == old.shape else old
