"""Forward+backward time and peak memory of the non-local block: efficient vs naive vs timm, side by side.

Every arm computes the same function on the same input (timm ``NonLocalAttn`` configuration: inner width
``make_divisible(C/8, 8)``, scale ``C**-0.5``, BN, residual; our blocks get timm's weights):

* ``efficient``      ``NonLocal2d(implementation="efficient")``: SDPA on q/k/v contiguous in the last dim;
* ``sdpa_noncontig`` the same SDPA call on plain ``transpose`` views (non-contiguous): what happens when
                     the layout is not prepared (only the math kernel can run);
* ``naive``          ``NonLocal2d(implementation="naive")``: the explicit N×N matrix;
* ``timm``           ``timm.layers.NonLocalAttn``.

Time: median of ``--repeats`` forward+backward passes after ``--warmup`` (CUDA events on a GPU), the arms
taking turns (round-robin) so that a shared machine's changing load hits every arm alike.
Memory: :func:`attncourse.cost.peak_memory` of one forward+backward (CPU: profiler allocation events;
CUDA: the allocator's peak), above what was live before.

    python benchmarks/attention_blocks.py                       # 32, 64, 96; batch 8; 64 channels
    python benchmarks/attention_blocks.py --sizes 64 128 --device cuda
    python benchmarks/attention_blocks.py --sizes 96 --repeats 1 --warmup 1

Writes ``results/attention_blocks_<device>.md`` and ``.json`` (``--no-write`` to skip).
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attncourse.blocks import nonlocal_ as nl  # noqa: E402
from attncourse.blocks.nonlocal_ import NonLocal2d, sdpa_backends  # noqa: E402
from attncourse.config import device_name  # noqa: E402
from attncourse.cost import measure_latency, peak_memory  # noqa: E402

ARMS = ("efficient", "sdpa_noncontig", "naive", "timm")


class _NonContiguousSDPA(NonLocal2d):
    """NonLocal2d whose SDPA gets plain transposed views (non-contiguous in the last dim)."""

    def _aggregate_efficient(self, q, k, v):
        view = lambda t: t.flatten(2).transpose(1, 2).unsqueeze(1)  # noqa: E731
        out = F.scaled_dot_product_attention(view(q), view(k), view(v), scale=self._s)
        return out.squeeze(1).transpose(1, 2)


def build(arm: str, channels: int, seed: int = 0):
    """The four arms with identical weights (timm's, randomised BN so nothing is trivially zero)."""
    from timm.layers import NonLocalAttn

    torch.manual_seed(seed)
    ref = NonLocalAttn(channels)
    with torch.no_grad():
        ref.norm.weight.uniform_(0.5, 1.5)
        ref.norm.bias.uniform_(-0.1, 0.1)
    if arm == "timm":
        return ref
    cls = _NonContiguousSDPA if arm == "sdpa_noncontig" else NonLocal2d
    ours = cls(channels, inner_channels=ref.t.out_channels, scale=channels ** -0.5,
               implementation="naive" if arm == "naive" else "efficient")
    with torch.no_grad():
        for mine, theirs in [(ours.theta, ref.t), (ours.phi, ref.p), (ours.g, ref.g), (ours.W, ref.z)]:
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    ours.bn.load_state_dict(ref.norm.state_dict())
    return ours


def mem_fwd_bwd(model, x) -> int:
    def step():
        model.zero_grad(set_to_none=True)
        model(x).float().sum().backward()

    model.zero_grad(set_to_none=True)
    return peak_memory(step, x.device)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _slug(device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    m = re.search(r"(h100|h200|a100|l4|t4|v100|a10g?|rtx ?\d+)", name)
    return (m.group(1) if m else device.type).replace(" ", "")


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB" if b >= 2**20 else f"{b / 2**10:,.0f} kB"


def _s(ms: float) -> str:
    return f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


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
             f"- input: batch {env['batch']}, {env['channels']} channels, square maps; {input_desc}",
             f"- time: median and fastest of the repeats (n per row, arms taking turns) after {env['warmup']} warm-up "
             f"pass(es); memory: `attncourse.cost.peak_memory` of one forward+backward "
             f"({'profiler allocation events' if cpu else 'CUDA allocator peak'})",
             "- SDPA backends able to run: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in env["sdpa_backends"].items()),
             ]
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


def render(env: dict, rows: list[dict]) -> str:
    """The Markdown table (with ratios against timm, on the median and on the fastest repeat) of one run."""
    return render_comparison(
        env, rows, title="Non-local block", reference="timm",
        input_desc=(f"timm `NonLocalAttn` configuration (inner width {env['inner']}, scale C^-0.5, BN, residual), "
                    "identical weights in every arm"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96], help="square map sizes H = W")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--repeats-large", type=int, default=None,
                   help="repeats for sizes >= --large (a slow CPU): default = --repeats")
    p.add_argument("--large", type=int, default=96)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--note", default="", help="a note stored with the table (e.g. 'CPU shared with other jobs')")
    p.add_argument("--out-dir", default=str(ROOT / "results"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--render", metavar="JSON", help="only re-render the Markdown table of an earlier run's JSON")
    args = p.parse_args(argv)
    if args.render:
        data = json.loads(Path(args.render).read_text())
        data["env"].setdefault("inner", build("timm", data["env"]["channels"]).t.out_channels)
        table = render(data["env"], data["rows"])
        print(table)
        if not args.no_write:
            Path(args.render).with_suffix(".md").write_text(table)
            Path(args.render).write_text(json.dumps(data, indent=1))
        return 0

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    env = {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
           "python": platform.python_version(), "threads": torch.get_num_threads(),
           "cpu": _cpu_model(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "batch": args.batch, "channels": args.channels, "dtype": args.dtype, "warmup": args.warmup,
           "note": args.note, "inner": build("timm", args.channels).t.out_channels}
    print(f"# non-local block, forward+backward — {env['device']} ({env['cpu']}), torch {env['torch']}, "
          f"{env['threads']} threads, {env['date']}")

    # which SDPA kernels can run on the layout each arm hands over
    t = torch.randn(args.batch, 8, 64, device=device, dtype=dtype)
    view = t.transpose(1, 2).unsqueeze(1)
    env["sdpa_backends"] = {"contiguous q/k/v (efficient)": sdpa_backends(*(view.contiguous(),) * 3, 1.0),
                            "transposed views (sdpa_noncontig)": sdpa_backends(view, view, view, 1.0)}
    for k, v in env["sdpa_backends"].items():
        print(f"SDPA backends that run on {k}: {', '.join(v)}")

    rows = []
    for size in args.sizes:
        repeats = args.repeats_large if (args.repeats_large and size >= args.large) else args.repeats
        x = torch.randn(args.batch, args.channels, size, size, device=device, dtype=dtype)
        models = {arm: build(arm, args.channels).to(device=device, dtype=dtype).train() for arm in args.arms}
        outputs = {}
        if size == min(args.sizes):
            with torch.no_grad():
                outputs = {arm: m(x).float().cpu() for arm, m in models.items()}
        # round-robin: repeat r runs every arm once, so a shared machine's load hits all arms alike
        times = {arm: [] for arm in models}
        for arm, m in models.items():
            measure_latency(m, x, warmup=args.warmup, repeats=1, backward=True)  # warm-up
        for _ in range(repeats):
            for arm, m in models.items():
                times[arm] += measure_latency(m, x, warmup=0, repeats=1, backward=True)["times_ms"]
        for arm, m in models.items():
            mem = mem_fwd_bwd(m, x)
            ts = times[arm]
            row = {"size": size, "tokens": size * size, "arm": arm, "median_ms": statistics.median(ts),
                   "min_ms": min(ts), "max_ms": max(ts), "times_ms": ts, "repeats": repeats, "peak_mem_bytes": mem}
            rows.append(row)
            print(f"{size:>4}×{size:<4} {arm:15s} {_s(row['median_ms']):>10} (min {_s(row['min_ms'])}, max "
                  f"{_s(row['max_ms'])}, n={repeats})  peak {_mb(mem):>10}", flush=True)
            gc.collect()
        del models
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if outputs:  # every arm computes the same function
            base = outputs[args.arms[0]]
            tol = 1e-4 if dtype == torch.float32 else 5e-2
            for arm, out in outputs.items():
                torch.testing.assert_close(out, base, atol=tol, rtol=tol, msg=f"{arm} differs from {args.arms[0]}")
            print(f"     outputs of {', '.join(outputs)} agree (atol {tol})")
        del x

    publish(render(env, rows), env, rows, None if args.no_write else Path(args.out_dir) / f"attention_blocks_{_slug(device)}")
    return 0


def publish(table: str, env: dict, rows: list[dict], stem: Path | None) -> None:
    """Print the table; unless ``stem`` is None, write it to ``<stem>.md`` and the raw numbers to ``<stem>.json``."""
    print()
    print(table)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(table)
        stem.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
        print(f"wrote {stem}.md and {stem}.json")


if __name__ == "__main__":
    sys.exit(main())
