"""Recorded benchmark tables: the timings and memory the course's benchmark scripts measured, shipped with the
package so that a ``pip install`` (Colab) shows them too::

    attncourse/recorded/benchmarks/<name>_<device>.json     e.g. attention_blocks_cpu.json, pam_memory_cpu.json

Each file is what ``python benchmarks/<name>.py --record`` wrote: ``{"name", "device", "env", "rows",
"markdown"}``. ``env`` names the machine and the run: device, CPU model, torch threads, torch and Python versions,
date, the command that produced the table, the machine's load average (1, 5, 15 min) just before and just after
the run, the CPU cores other processes kept busy during it (``others_cpu_cores``), the fraction of the run the
benchmark waited for a CPU (``waited_for_cpu``) and the verdict (``machine``: ``"quiet"`` when other processes used
under 0.1 core on average, else ``"loaded"``). ``rows`` are the raw
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

    ``str(table)`` is a headline (device, quiet or loaded machine) followed by the Markdown table, which names the
    CPU, threads, torch, date, the command that measured it and the machine's load.
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

    def headline(self) -> str:
        """One line: which table, on what device, and whether the machine was quiet (with the measured load)."""
        e = self.env
        others = e.get("others_cpu_cores")
        load = ("" if others is None else
                f" (other processes kept {others:.2f} of {e.get('cores', '?')} cores busy on average during the run)")
        state = ("a quiet machine" + load if self.quiet else
                 "a LOADED machine" + load + ": absolute times are inflated and noisy; compare the ratios between "
                 "arms, which were measured in turn")
        return f"Recorded benchmark '{self.name}' ({e.get('device', self.device)}), measured on {state}."

    def __str__(self) -> str:
        """The headline, then the recorded table (device, CPU, threads, torch, date, command, load, settings, rows)."""
        return f"{self.headline()}\n\n{self.markdown.strip()}\n"


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
