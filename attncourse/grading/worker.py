"""The learner's side of grading: the only process that runs a submission's code.

Started by the grader inside the sandbox (``python -I -B _acg_worker.py``) with a private copy of
this file, :mod:`.peer`, :mod:`.wire` and the package **without** the exercises' checkers and reference
solutions (``attncourse.exercises`` there is a stub whose ``check`` does nothing). It reads requests on
fd 3 and answers on fd 4:

* ``exec``: run one cell (IPython syntax) with a time limit (SIGALRM -> KeyboardInterrupt);
* ``resolve``: evaluate an answer expression (``channel_stat``) in the notebook's namespace;
* ``answer``: evaluate a question's answer expression (``q_gain``) and return it as plain data only;
* ``seed``: seed Python, NumPy and torch before an exercise, so answers are reproducible;
* ``call`` / ``backward`` (:mod:`.peer`): run a learner's function, class or module on the grader's
  inputs, and back-propagate through it.

Everything it returns is plain data. It never sees a checker, a reference or an expected value; what it
answers is only ever the learner's answer. Nothing here is trusted by the grader.
"""
from __future__ import annotations

import os
import signal
import sys

try:  # inside the package (tests drive a worker peer in-process)
    from . import peer, wire
except ImportError:  # the sandbox's private copy, next to _acg_peer.py and _acg_wire.py
    HERE = os.path.dirname(os.path.abspath(__file__))
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import _acg_peer as peer  # type: ignore[no-redef]
    import _acg_wire as wire  # type: ignore[no-redef]

_SIMPLE = (int, float, bool, str, type(None))


def _simple(v, depth=0) -> bool:
    if isinstance(v, _SIMPLE):
        return True
    return isinstance(v, tuple) and depth < 3 and all(_simple(x, depth + 1) for x in v)


class WorkerPeer(peer.Peer):
    def describe(self, value, arrays, tensors):
        import torch.nn as nn

        hid = next(self._ids)
        self.handles[hid] = value
        if isinstance(value, nn.Module):
            return {"t": "module", "id": hid, "tree": self._tree(value, arrays)}
        kind = "class" if isinstance(value, type) else "callable" if callable(value) else "other"
        name = getattr(value, "__name__", None) if kind != "other" else None
        return {"t": "obj", "id": hid, "kind": kind, "name": name if isinstance(name, str) else peer._type_name(value)}

    def _tree(self, root, arrays) -> list:
        seen: dict[int, str] = {}
        out: list = []

        def visit(m, path):
            seen[id(m)] = path
            entry = {"path": path, "cls": [type(m).__module__, type(m).__qualname__], "training": bool(m.training),
                     "attrs": [[k, self.encode(v, arrays, [])] for k, v in vars(m).items()
                               if k != "training" and _simple(v)],
                     "params": [[k, self._tensor(p, arrays)] for k, p in m._parameters.items() if p is not None],
                     "buffers": [[k, self._tensor(b, arrays)] for k, b in m._buffers.items() if b is not None],
                     "none_params": [k for k, p in m._parameters.items() if p is None],
                     "none_buffers": [k for k, b in m._buffers.items() if b is None],
                     "children": []}
            out.append(entry)
            for name, child in m._modules.items():
                if child is None:
                    continue
                if id(child) in seen:
                    entry["children"].append([name, seen[id(child)], True])
                    continue
                sub = f"{path}.{name}" if path else name
                entry["children"].append([name, sub, False])
                visit(child, sub)

        visit(root, "")
        return out

    @staticmethod
    def _tensor(t, arrays):
        arrays.append(wire.tensor_to_raw(t))
        return {"t": "tensor", "a": len(arrays) - 1, "rg": bool(t.requires_grad)}

    def resolve_target(self, target):
        obj = super().resolve_target(target)
        path = target.get("path") or ""
        return obj.get_submodule(path) if path else obj

    def before_call(self, target, msg, arrs):
        import torch

        state = msg.get("state")
        if not isinstance(state, list):
            return []
        root = self.handles.get(msg["target"].get("id"))
        with torch.no_grad():
            for path, training, params, buffers in state:
                try:
                    mod = root.get_submodule(path) if path else root
                except Exception:  # noqa: BLE001
                    continue
                mod.training = bool(training)
                for name, enc in params:
                    p = mod._parameters.get(name)
                    if p is not None:
                        p.data = self.decode(enc, arrs)
                for name, enc in buffers:
                    b = mod._buffers.get(name)
                    if b is not None:
                        b.data = self.decode(enc, arrs)
        leaves = []
        for path, name in msg.get("grad_params", []):
            try:
                p = (root.get_submodule(path) if path else root)._parameters.get(name)
            except Exception:  # noqa: BLE001
                p = None
            leaves.append(p if p is not None and p.requires_grad else torch.zeros((), requires_grad=True))
        return leaves

    def after_call(self, target, msg, reply, out_arrays):
        if not isinstance(msg.get("state"), list):
            return
        root = self.handles.get(msg["target"].get("id"))
        reply["buffers"] = [[path, name, self._tensor(b, out_arrays)] for path, m in root.named_modules()
                            for name, b in m._buffers.items() if b is not None]

    def handle_request(self, msg, arrs):
        op = msg.get("op")
        if op == "exec":
            return self.shell_exec(str(msg.get("cell", ""))), []
        if op == "resolve":
            value = eval(compile(str(msg.get("expr")), "<answer>", "eval"), self.shell.user_ns)  # noqa: S307
            arrays: list = []
            return {"result": self.encode(value, arrays, [])}, arrays
        if op == "answer":  # a question's answer: plain data only, never a handle
            value = eval(compile(str(msg.get("expr")), "<answer>", "eval"), self.shell.user_ns)  # noqa: S307
            arrays = []
            return {"result": plain_answer(self, value, arrays)}, arrays
        if op == "seed":
            import random

            import numpy as np
            import torch

            seed = int(msg.get("seed", 0))
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            return {}, []
        if op == "reset":
            self.handles.clear()
            self.records.clear()
            return {}, []
        if op == "ping":
            return {}, []
        raise peer.RemoteError(f"unknown request {op!r}")

    def shell_exec(self, source: str) -> dict:
        result = self.shell.run_cell(source, store_history=True, silent=False)
        err = result.error_in_exec or result.error_before_exec
        if err is None:
            return {"status": "ok"}
        return {"status": "error", "ename": peer._type_name(err), "evalue": str(err)[:300]}


def plain_answer(p, value, arrays: list) -> dict:
    """A question's answer as plain data: ``None``, a bool, number or string, or an array (the grader takes
    one-element arrays as numbers); anything else only by its type name. Never a handle."""
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str, np.generic, np.ndarray, torch.Tensor)):
        return p.encode(value, arrays, [])
    return {"t": "unplain", "type": peer._type_name(value)}


def _alarm(signum, frame):
    raise KeyboardInterrupt("time limit of the cell or call")


def _make_shell():
    from IPython.core.interactiveshell import InteractiveShell

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):
            return None

        def system(self, cmd):  # `!cmd` does nothing while grading (no network, nothing to install)
            return None

        def showtraceback(self, *args, **kwargs):
            return None

    shell = Shell.instance()
    for name in ("matplotlib", "pip", "conda", "mamba", "load_ext"):
        shell.register_magic_function(lambda line="", cell=None: None, "line_cell", name)
    shell.system = lambda cmd: None
    return shell


def _limits(memory_mb: int) -> None:
    import resource

    if memory_mb > 0:
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.getuid() != 0:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (512, 512))
        except (ValueError, OSError):
            pass


def main() -> int:
    rfd, wfd, memory_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    _limits(memory_mb)
    signal.signal(signal.SIGALRM, _alarm)
    import numpy  # noqa: F401  (imported before any learner code: a cell's time limit never cuts an import of these)
    import torch

    torch.set_num_threads(1)
    p = WorkerPeer(rfd, wfd)
    p.shell = _make_shell()
    wire.send(wfd, {"op": "hello", "pid": os.getpid()})
    while True:
        try:
            msg, arrs = wire.recv(rfd)
        except wire.WireError:
            return 0
        limit = msg.get("limit")
        if isinstance(limit, (int, float)) and limit > 0:
            signal.setitimer(signal.ITIMER_REAL, float(limit))
        try:
            p.serve_one(msg, arrs)
        except peer.RemoteError:
            return 0
        except KeyboardInterrupt:  # the alarm struck outside learner code: answer that it timed out
            try:
                wire.send(wfd, {"op": "reply", "error": {"type": "TimeoutError", "msg": "time limit"}})
            except OSError:
                return 0
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if msg.get("op") == "exit":
            return 0


if __name__ == "__main__":
    sys.exit(main())
