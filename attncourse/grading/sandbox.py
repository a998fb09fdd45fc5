"""Where a submission's code runs: a sandboxed worker process per submission, killed and checked empty.

Modes, strongest first (``detect_mode``; the report header names the one in force):

``bwrap``
    Debian's bubblewrap: a new user (no capabilities), PID, mount, network, IPC and UTS namespace. The
    whole file system is mounted read-only; ``/tmp`` is a fresh tmpfs; the worker's working directory
    (a private copy of its one notebook) is the only writable place; the package's real folder
    (reference solutions included), the submissions' folders and the report's folder are hidden
    behind empty tmpfs mounts. It cannot see or signal any process outside its namespace; when the
    slot ends the namespace's init is killed and the kernel kills every process left in it.
``uid``
    (bubblewrap missing, grader running as root) a user id of its own per slot: no write access to
    root's files, cannot signal the grader or other slots; every process of that uid is killed at
    the end of the slot.
``sequential``
    neither: own session and process group, private working directory, minimal environment, one
    submission at a time. A submission can still write wherever the grader's user can.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = "/tmp/acg/work"  # the worker's working directory inside the sandbox
PKG = "/tmp/acg/pkg"  # the worker's private package copy and protocol files inside the sandbox
UID_BASE = 61000

_MODE_CACHE: dict = {}


def _bwrap_base(bwrap: str) -> list[str]:
    return [bwrap, "--unshare-user", "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm",
            "--tmpfs", "/run", "--tmpfs", "/var/tmp"]


def detect_mode(python: str = sys.executable) -> str:
    """``bwrap`` | ``uid`` | ``sequential``: the strongest sandbox that runs ``python`` on this machine."""
    if python in _MODE_CACHE:
        return _MODE_CACHE[python]
    mode = "sequential"
    bwrap = shutil.which("bwrap")
    probe = [python, "-I", "-c", "import os; open('/proc/self/status').read()"]
    if bwrap and os.environ.get("ATTNCOURSE_GRADE_SANDBOX") != "uid":
        try:
            ok = subprocess.run(_bwrap_base(bwrap) + ["--", *probe], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            mode = "bwrap"
    if mode == "sequential" and hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            ok = subprocess.run(probe, capture_output=True, timeout=60, user=UID_BASE, group=UID_BASE,
                                extra_groups=[]).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            mode = "uid"
    if os.environ.get("ATTNCOURSE_GRADE_SANDBOX") == "sequential":
        mode = "sequential"
    _MODE_CACHE[python] = mode
    return mode


def describe_mode(mode: str) -> str:
    return {"bwrap": "bwrap: own user/PID/mount/network namespaces, read-only file system, no capabilities",
            "uid": "uid: own unprivileged user id per slot, own session; no file-system isolation",
            "sequential": "sequential: own session and process group, one submission at a time; NO privilege "
                          "separation (a submission can write wherever the grader can)"}[mode]


def _hideable(path: Path, keep: list[Path]) -> bool:
    """A folder may be hidden unless it holds something the worker needs (python, the venv)."""
    if str(path) in ("/", "/tmp") or not path.is_dir():
        return False
    return not any(k == path or path in k.parents for k in keep)


class Worker:
    """One sandboxed worker process, with the two pipe ends the grader talks through."""

    def __init__(self, *, mode: str, slot: int, run_dir: str, pkg_dir: str, notebook: Path, hide: list[Path],
                 env: dict, memory_mb: int):
        self.mode, self.slot = mode, slot
        self.uid = UID_BASE + slot if mode == "uid" else None
        self.work = tempfile.mkdtemp(prefix=f"slot{slot}-", dir=run_dir)
        shutil.copyfile(notebook, os.path.join(self.work, "submission.ipynb"))
        if self.uid is not None:
            for root, dirs, files in os.walk(self.work):
                for name in [root, *(os.path.join(root, f) for f in files)]:
                    os.chown(name, self.uid, self.uid)
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        python = sys.executable
        keep = [Path(python).resolve().parent, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                Path(pkg_dir).resolve(), Path(run_dir).resolve()]
        worker_cmd = [python, "-I", "-B", os.path.join(PKG if mode == "bwrap" else pkg_dir, "_acg_worker.py"),
                      str(req_r), str(rep_w), str(memory_mb)]
        env = dict(env, HOME=WORK if mode == "bwrap" else self.work, TMPDIR="/tmp")
        if mode == "bwrap":
            cmd = _bwrap_base(shutil.which("bwrap"))
            self.hidden = []
            for h in hide:
                if _hideable(h, keep):
                    cmd += ["--tmpfs", str(h)]
                    self.hidden.append(str(h))
            cmd += ["--ro-bind", pkg_dir, PKG, "--bind", self.work, WORK, "--chdir", WORK, "--", *worker_cmd]
            cwd = "/"
        else:
            cmd, cwd = worker_cmd, self.work
            env["HOME"] = self.work
            self.hidden = []
        kwargs = {"user": self.uid, "group": self.uid, "extra_groups": []} if self.uid is not None else {}
        debug = os.environ.get("ATTNCOURSE_GRADE_DEBUG")  # a file for the workers' stderr (developers only)
        err = open(debug, "ab") if debug else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err, pass_fds=(req_r, rep_w), start_new_session=True,
                                     close_fds=True, **kwargs)
        if debug:
            err.close()
        os.close(req_r)
        os.close(rep_w)
        self.ns = None  # the PID namespace of the bwrap sandbox, once known

    def note_namespace(self) -> None:
        """Remember the sandbox's PID namespace (to find anything left in it at the end)."""
        if self.mode != "bwrap":
            return
        for pid in _pids():
            try:
                if _ppid(pid) == self.proc.pid:
                    self.ns = os.readlink(f"/proc/{pid}/ns/pid")
                    return
            except OSError:
                continue

    def _members(self) -> list[int]:
        """Processes of this slot still alive: by PID namespace (bwrap), uid (uid) or session (sequential)."""
        found = []
        me = os.getpid()
        for pid in _pids():
            if pid == me:
                continue
            try:
                if self.mode == "bwrap" and self.ns is not None:
                    hit = os.readlink(f"/proc/{pid}/ns/pid") == self.ns
                elif self.uid is not None:
                    hit = os.stat(f"/proc/{pid}").st_uid == self.uid
                else:
                    hit = os.getsid(pid) == self.proc.pid
            except OSError:
                continue
            if hit and _state(pid) != "Z":
                found.append(pid)
        return found

    def stop(self) -> int:
        """Kill everything of this slot; return how many processes were still alive after the kill (0)."""
        for fd in (self.req_w, self.rep_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        left = []
        for _ in range(50):
            left = self._members()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        shutil.rmtree(self.work, ignore_errors=True)
        return len(left)


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        data = fh.read()
    return data[data.rindex(")") + 2:].split()


def _ppid(pid: int) -> int:
    return int(_stat_fields(pid)[1])


def _state(pid: int) -> str:
    try:
        return _stat_fields(pid)[0]
    except (OSError, ValueError, IndexError):
        return "Z"
