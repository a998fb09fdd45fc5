"""The harness the benchmarks share: command-line options, the environment record (with the machine's load
average before and after the run), round-robin timing with peak memory per arm, the Markdown comparison table
and writing ``results/<name>_<device>.md`` / ``.json`` — or, with ``--record``, the table the package ships,
``attncourse/recorded/benchmarks/<name>_<device>.json`` (read by ``attncourse.benchmark_table``).

A block benchmark builds its arms (modules computing the same function on the same input) and hands them to
:func:`measure_arms` for each map size; :func:`render_comparison` and :func:`publish` do the rest.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attncourse.benchmark_tables import benchmark_tables_dir  # noqa: E402
from attncourse.config import device_name  # noqa: E402
from attncourse.cost import measure_latency, peak_memory  # noqa: E402


def add_common_args(p: argparse.ArgumentParser, *, sizes: list[int], batch: int) -> None:
    """The options every block benchmark takes (map sizes, batch, channels, repeats, device, dtype, output)."""
    p.add_argument("--sizes", type=int, nargs="+", default=sizes, help="square map sizes H = W")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    add_output_args(p)


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--note``, ``--out-dir``, ``--no-write`` and ``--record`` (write the table the package ships)."""
    p.add_argument("--note", default="", help="a note stored with the table (e.g. what the machine was doing)")
    p.add_argument("--out-dir", default=str(ROOT / "results"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--record", action="store_true",
                   help=f"write the JSON table into the package ({benchmark_tables_dir().relative_to(ROOT)}/) "
                        "instead of results/")


def device_and_dtype(args) -> tuple[torch.device, torch.dtype]:
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu")), getattr(torch, args.dtype)


def environment(device: torch.device, args, **extra) -> dict:
    """What a result table must name: device, CPU model, torch, Python, threads, date, the command, the load
    average before the run (:func:`finish_environment` adds the one after) and the run's options."""
    return {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu": _cpu_model(),
            "cores": os.cpu_count(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(), "load_before": load_average(), "_cpu_start": cpu_snapshot(), "batch": args.batch,
            "channels": args.channels, "dtype": args.dtype, "warmup": args.warmup, "note": args.note, **extra}


def command_line() -> str:
    """The command that ran this benchmark, as a learner would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else script.name
    return " ".join(["python", shown, *sys.argv[1:]])


def load_average() -> list[float] | None:
    """The machine's load average over 1, 5 and 15 minutes (``None`` where the OS does not report it)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_snapshot() -> list[float] | None:
    """``[wall s, busy CPU s of the whole machine, CPU s of this process, s it waited for a CPU]`` (``None``
    without ``/proc/stat``)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
    busy -= sum(fields[8:10])  # guest time is already counted in user time
    own = os.times()
    return [time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, _run_queue_wait()]


def _run_queue_wait() -> float:
    """Seconds this process's threads spent ready to run but waiting for a CPU (``/proc/self/task/*/schedstat``)."""
    total = 0.0
    for stat in Path("/proc/self/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
    return total


def others_cpu(start: list[float] | None) -> tuple[float | None, float | None]:
    """Since ``start`` (a :func:`cpu_snapshot`): the CPU cores other processes kept busy on average, and the
    fraction of the time this process waited, ready to run, for a CPU."""
    end = cpu_snapshot()
    if not start or not end or end[0] <= start[0]:
        return None, None
    wall, busy, own, wait = (b - a for a, b in zip(start, end))
    return round(max(0.0, (busy - own) / wall), 3), round(max(0.0, wait / wall), 4)


def machine_verdict(env: dict) -> str:
    """``"quiet"`` when other processes kept less than 0.1 core busy on average during the run (measured from
    ``/proc/stat`` and this process's own CPU time); else ``"loaded"`` (also when it could not be measured).
    The load averages are recorded beside it; they lag the run by a minute and count this benchmark too."""
    others = env.get("others_cpu_cores")
    return "quiet" if others is not None and others < 0.1 else "loaded"


def finish_environment(env: dict) -> dict:
    """Add the load average after the run, the CPU that other processes used during it and the verdict on the
    machine (``machine``: quiet or loaded)."""
    env["load_after"] = load_average()
    env["others_cpu_cores"], env["waited_for_cpu"] = others_cpu(env.pop("_cpu_start", None))
    env["machine"] = machine_verdict(env)
    return env


def machine_line(env: dict) -> str:
    """The table's line on the machine's load: quiet, or loaded (the times then are inflated and noisy)."""
    fmt = lambda v: " ".join(f"{x:.2f}" for x in v) if v else "unknown"  # noqa: E731
    others = env.get("others_cpu_cores")
    head = (f"- machine: {env['machine']} — other processes kept {'?' if others is None else f'{others:.2f}'} of "
            f"{env.get('cores', '?')} cores busy on average during the run; load average (1, 5, 15 min) "
            f"{fmt(env.get('load_before'))} before, {fmt(env.get('load_after'))} after")
    if env.get("waited_for_cpu") is not None:
        head += f"; the benchmark waited for a CPU {100 * env['waited_for_cpu']:.1f} % of the time"
    if env["machine"] != "quiet":
        head += "; measured under load: absolute times are inflated and noisy, compare arms only"
    return head


def mem_fwd_bwd(model, x) -> int:
    """Peak memory (bytes) of one forward+backward of ``model`` on ``x``, above what was live before."""
    def step():
        model.zero_grad(set_to_none=True)
        model(x).float().sum().backward()

    model.zero_grad(set_to_none=True)
    return peak_memory(step, x.device)


def measure_arms(models: dict, x: torch.Tensor, size: int, *, warmup: int, repeats: int) -> list[dict]:
    """One row per arm: forward+backward times of ``repeats`` passes after ``warmup`` and the peak memory.

    The arms take turns (round-robin): repeat r runs every arm once, so a shared machine's changing load hits
    every arm alike.
    """
    times = {arm: [] for arm in models}
    for m in models.values():
        measure_latency(m, x, warmup=warmup, repeats=1, backward=True)  # warm-up
    for _ in range(repeats):
        for arm, m in models.items():
            times[arm] += measure_latency(m, x, warmup=0, repeats=1, backward=True)["times_ms"]
    rows = []
    for arm, m in models.items():
        mem = mem_fwd_bwd(m, x)
        ts = times[arm]
        row = {"size": size, "tokens": size * size, "arm": arm, "median_ms": statistics.median(ts),
               "min_ms": min(ts), "max_ms": max(ts), "times_ms": ts, "repeats": repeats, "peak_mem_bytes": mem}
        rows.append(row)
        print(f"{size:>4}×{size:<4} {arm:15s} {_s(row['median_ms']):>10} (min {_s(row['min_ms'])}, max "
              f"{_s(row['max_ms'])}, n={repeats})  peak {_mb(mem):>10}", flush=True)
        gc.collect()
    return rows


def render_comparison(env: dict, rows: list[dict], *, title: str, input_desc: str, reference: str) -> str:
    """The Markdown table of one benchmark run: every arm's time and peak memory, with ratios against the
    ``reference`` arm of the same map size (on the median and on the fastest repeat). Adds the ratios to ``rows``
    (``speedup_vs_<reference>``, ``speedup_vs_<reference>_fastest``, ``memory_ratio_vs_<reference>``)."""
    by = {(r["size"], r["arm"]): r for r in rows}
    cpu = env["device_type"] == "cpu"
    lines = [f"# {title}: forward+backward time and peak memory ({env['device']})", "",
             f"- device: {env['device']} — {env['cpu']}" if cpu else f"- device: {env['device']}",
             f"- torch {env['torch']}, Python {env['python']}, {env['threads']} threads, dtype {env['dtype']}",
             f"- date: {env['date']}",
             f"- command: `{env['command']}`" if env.get("command") else "",
             machine_line(env) if env.get("machine") else "",
             f"- input: batch {env['batch']}, {env['channels']} channels, square maps; {input_desc}",
             f"- time: median and fastest of the repeats (n per row, arms taking turns) after {env['warmup']} warm-up "
             f"pass(es); memory: `attncourse.cost.peak_memory` of one forward+backward "
             f"({'profiler allocation events' if cpu else 'CUDA allocator peak'})",
             "- SDPA backends able to run: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in env["sdpa_backends"].items()),
             ]
    lines = [line for i, line in enumerate(lines) if line or i == 1]  # drop the lines an older record lacks
    if env.get("note"):
        lines.append(f"- note: {env['note']}")
    lines += ["", f"| map | tokens N | arm | time: median (fastest) | peak memory | faster than {reference}: median "
              f"(fastest) | less memory than {reference} |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = by.get((r["size"], reference))
        speed, fastest, memory = (f"speedup_vs_{reference}", f"speedup_vs_{reference}_fastest",
                                  f"memory_ratio_vs_{reference}")
        r[speed] = ref["median_ms"] / r["median_ms"] if ref else None
        r[fastest] = ref["min_ms"] / r["min_ms"] if ref else None
        r[memory] = ref["peak_mem_bytes"] / r["peak_mem_bytes"] if ref and r["peak_mem_bytes"] else None
        if r["arm"] == reference:
            ts = ms = "1 (reference)"
        else:
            ts = f"{r[speed]:.2f}× ({r[fastest]:.2f}×)" if ref else ""
            ms = f"{r[memory]:.1f}×" if r[memory] else ""
        lines.append(f"| {r['size']}×{r['size']} | {r['tokens']:,} | {r['arm']} | {_s(r['median_ms'])} "
                     f"({_s(r['min_ms'])}), n={r['repeats']} | {_mb(r['peak_mem_bytes'])} | {ts} | {ms} |")
    return "\n".join(lines) + "\n"


def publish(table: str, env: dict, rows: list[dict], stem: Path | None) -> None:
    """Print the table; unless ``stem`` is None, write it to ``<stem>.md`` and the raw numbers to ``<stem>.json``."""
    print()
    print(table)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(table)
        stem.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
        print(f"wrote {stem}.md and {stem}.json")


def record(name: str, device_slug: str, table: str, env: dict, rows: list[dict], folder: Path | None = None) -> Path:
    """Write the table the package ships: ``{"name", "device", "env", "rows", "markdown"}`` in
    ``<folder or the package's recorded benchmarks>/<name>_<device>.json``."""
    path = Path(folder or benchmark_tables_dir()) / f"{name}_{device_slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "device": device_slug, "env": env, "rows": rows, "markdown": table}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def write_outputs(args, name: str, device_slug: str, table: str, env: dict, rows: list[dict]) -> None:
    """Print the table, then write it: into the package with ``--record``, else ``results/`` (unless ``--no-write``)."""
    if args.record and not args.no_write:
        print()
        print(table)
        record(name, device_slug, table, env, rows)
    else:
        publish(table, env, rows, None if args.no_write else Path(args.out_dir) / f"{name}_{device_slug}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(device: torch.device) -> str:
    """``cpu``, or the GPU's short name (``h100``, ``a100``, …) for result file names."""
    if device.type == "cpu":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    m = re.search(r"(h100|h200|a100|l4|t4|v100|a10g?|rtx ?\d+)", name)
    return (m.group(1) if m else device.type).replace(" ", "")


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB" if b >= 2**20 else f"{b / 2**10:,.0f} kB"


def _s(ms: float) -> str:
    return f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"
