"""Recorded benchmark tables: the timings and memory the course's benchmark scripts measured, shipped with the
package so that a ``pip install`` (Colab) shows them too::

    attncourse/recorded/benchmarks/<name>_<device>.json     e.g. attention_blocks_cpu.json, pam_memory_cpu.json

Each file is what ``python benchmarks/<name>.py --record`` wrote: ``{"name", "device", "env", "rows",
"markdown"}``. ``env`` names the machine and the run: device, CPU model, torch threads, torch and Python versions,
date, the command that produced the table, the machine's load average (1, 5, 15 min) just before and just after
the run, the CPU cores other processes kept busy during it (``others_cpu_cores``) and the verdict drawn from that
(``machine``: ``"quiet"`` or ``"loaded"``). ``rows`` are the raw
numbers; ``markdown`` is the table the script printed.

:func:`benchmark_table` loads one table; :func:`list_benchmark_tables` lists what is shipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BenchmarkTable", "benchmark_table", "list_benchmark_tables", "benchmark_tables_dir"]


def benchmark_tables_dir() -> Path:
    """The folder of recorded benchmark tables inside the installed package."""
    return Path(__file__).resolve().parent / "recorded" / "benchmarks"


def list_benchmark_tables() -> list[tuple[str, str]]:
    """Every shipped table as ``(name, device)``, sorted (e.g. ``("pam_memory", "cpu")``)."""
    out = []
    for path in sorted(benchmark_tables_dir().glob("*.json")):
        data = json.loads(path.read_text())
        out.append((data["name"], data["device"]))
    return sorted(out)


@dataclass(frozen=True)
class BenchmarkTable:
    """One recorded benchmark run: the raw ``rows``, the environment ``env`` and the printed ``markdown`` table.

    ``str(table)`` is a plain-text report: where and how it was measured, then the Markdown table.
    """

    name: str
    device: str
    env: dict
    rows: list = field(repr=False)
    markdown: str = field(repr=False)
    path: Path = field(repr=False)

    @property
    def quiet(self) -> bool:
        """Whether the machine was quiet during the run (other processes used under 0.1 core on average)."""
        return self.env.get("machine") == "quiet"

    def measured_on(self) -> str:
        """One paragraph: device, CPU, threads, torch, date, the machine's load and the command that measured it."""
        e = self.env
        load = lambda key: " ".join(f"{x:.2f}" for x in e[key]) if e.get(key) else "not recorded"  # noqa: E731
        cpu = f" ({e['cpu']})" if e.get("cpu") else ""
        verdict = ("a quiet machine" if self.quiet else
                   "a LOADED machine: the times are inflated and noisy; the ratios between arms measured in turn, "
                   "and the memory, are what the table is for")
        return (f"Measured on {e.get('device', self.device)}{cpu}, {e.get('threads', '?')} torch thread(s), "
                f"torch {e.get('torch', '?')}, on {e.get('date', '?')}, on {verdict}. "
                f"Other processes kept {e.get('others_cpu_cores', '?')} core(s) busy on average during the run; "
                f"load average (1, 5, 15 min) before it: {load('load_before')}, after: {load('load_after')}. "
                f"Command: {e.get('command', 'not recorded')}")

    def __str__(self) -> str:
        return f"{self.measured_on()}\n\n{self.markdown.strip()}\n"


def benchmark_table(name: str, device: str = "cpu") -> BenchmarkTable:
    """The recorded table of benchmark ``name`` measured on ``device`` (``"cpu"``, or a GPU's short name such as
    ``"h100"``). Raises ``ValueError`` naming the shipped tables when there is none."""
    if not (isinstance(name, str) and isinstance(device, str) and name.replace("_", "").isalnum()
            and device.replace("_", "").isalnum()):
        raise ValueError(f"benchmark_table: name and device are plain words (got {name!r}, {device!r})")
    path = benchmark_tables_dir() / f"{name}_{device}.json"
    if not path.is_file():
        have = ", ".join(f"{n} ({d})" for n, d in list_benchmark_tables()) or "none"
        raise ValueError(f"benchmark_table: no recorded table {name!r} for device {device!r}; "
                         f"the package ships: {have}. Measure it with: python benchmarks/{name}.py")
    data = json.loads(path.read_text())
    return BenchmarkTable(name=data["name"], device=data["device"], env=data["env"], rows=data["rows"],
                          markdown=data["markdown"], path=path)
