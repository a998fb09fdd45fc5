"""The capstone's time column: one training step (forward + backward) of every arm of ``capstone_blocks``.

Each arm is the network the experiment trains (the course backbone with one block, sized for cluttered digits,
40×40, 10 classes), timed on one resident batch with the speed settings ``attncourse.fit`` picks on this device
(bf16 autocast where the hardware has bf16, channels_last): forward, the cross-entropy loss, backward. The arms take
turns (round-robin, ``--repeats`` rounds after ``--warmup``), so a changing load hits every arm alike; the table
gives the median, the fastest repeat and the ratio to the plain baseline. Peak memory is that of one step.

    python benchmarks/capstone_cost.py                     # batch 128, 2 warm-up, 7 repeats
    python benchmarks/capstone_cost.py --record            # the table the package ships (capstone_cost_<device>.json)

``attncourse.benchmark_table("capstone_cost")`` reads the recorded table; the capstone's table and Pareto plot read
its per-arm medians (``step_ms``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (_mb, _s, add_output_args, device_and_dtype, environment, finish_environment,  # noqa: E402
                      machine_line, slug, write_outputs)

from attncourse.config import get_profile  # noqa: E402
from attncourse.cost import count_params, measure_latency, peak_memory  # noqa: E402
from attncourse.data import make_task  # noqa: E402
from attncourse.experiments import CAPSTONE_ARMS, get_experiment  # noqa: E402
from attncourse.speed import autocast, memory_format, speed_settings, to_channels_last  # noqa: E402


def training_step(model, x, y, device, settings):
    """``step(x) -> loss``: the forward pass and the loss as ``fit`` computes them (backward is the caller's)."""
    def step(inputs):
        with autocast(device, settings["amp"]):
            logits = model(inputs)
        return F.cross_entropy(logits.float(), y)
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--arms", nargs="+", default=list(CAPSTONE_ARMS), choices=list(CAPSTONE_ARMS))
    p.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    add_output_args(p)
    args = p.parse_args(argv)
    args.dtype, args.channels = "float32 weights (bf16 autocast where fit uses it)", None
    device, _ = device_and_dtype(argparse.Namespace(device=args.device, dtype="float32"))
    settings = speed_settings(device)
    exp = get_experiment("capstone_blocks")
    task = make_task(exp.task, get_profile("smoke").with_(n_train=args.batch, n_test=8))
    torch.manual_seed(0)
    x = memory_format(task.float_images(task.x_train[:args.batch]).to(device), settings["channels_last"])
    y = task.y_train[:args.batch].to(device)
    env = environment(device, args, settings=settings, task=exp.task, input=list(x.shape))
    print(f"# capstone training step — {env['device']} ({env['cpu']}), torch {env['torch']}, {env['threads']} "
          f"threads, batch {args.batch}, settings {settings}")

    models, steps = {}, {}
    for arm in args.arms:
        torch.manual_seed(0)
        model = exp.arms[arm](task).to(device).train()
        if settings["channels_last"]:
            to_channels_last(model)
        models[arm], steps[arm] = model, training_step(model, x, y, device, settings)
    times = {arm: [] for arm in args.arms}
    for arm in args.arms:
        measure_latency(steps[arm], x, warmup=args.warmup, repeats=1, backward=True)
    for _ in range(args.repeats):
        for arm in args.arms:
            models[arm].zero_grad(set_to_none=True)
            times[arm] += measure_latency(steps[arm], x, warmup=0, repeats=1, backward=True)["times_ms"]
    rows = []
    for arm in args.arms:
        def one_step(arm=arm):
            models[arm].zero_grad(set_to_none=True)
            steps[arm](x).backward()
        ts = times[arm]
        rows.append({"arm": arm, "block": exp.arms[arm].attention, "params": count_params(models[arm]),
                     "median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "times_ms": ts,
                     "repeats": args.repeats, "peak_mem_bytes": peak_memory(one_step, device)})
        print(f"{arm:12s} {_s(rows[-1]['median_ms']):>9} (fastest {_s(rows[-1]['min_ms'])})  "
              f"peak {_mb(rows[-1]['peak_mem_bytes'])}", flush=True)
    finish_environment(env)
    write_outputs(args, "capstone_cost", slug(device), render(env, rows), env, rows)
    return 0


def render(env: dict, rows: list[dict]) -> str:
    """The Markdown table: per arm its median and fastest step time, its ratio to the baseline and its peak memory."""
    base = next((r for r in rows if r["arm"] == "baseline"), None)
    cpu = env["device_type"] == "cpu"
    lines = [f"# Capstone: one training step of every block ({env['device']})", "",
             f"- device: {env['device']} — {env['cpu']}" if cpu else f"- device: {env['device']}",
             f"- torch {env['torch']}, Python {env['python']}, {env['threads']} threads; speed settings of "
             f"`fit`: {env['settings']}",
             f"- date: {env['date']}", f"- command: `{env['command']}`", machine_line(env),
             f"- input: batch {env['batch']} of {env['task']} {env['input'][1:]}; one step = forward, cross-entropy, "
             f"backward; median and fastest of {rows[0]['repeats'] if rows else 0} repeats (arms taking turns) after "
             f"{env['warmup']} warm-up step(s)"]
    if env.get("note"):
        lines.append(f"- note: {env['note']}")
    lines += ["", "| arm | block | parameters | step: median (fastest) | × baseline (median) | peak memory |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        r["ratio_vs_baseline"] = r["median_ms"] / base["median_ms"] if base else None
        ratio = "1 (reference)" if r is base else (f"{r['ratio_vs_baseline']:.2f}×" if base else "")
        lines.append(f"| {r['arm']} | {r['block']} | {r['params']:,} | {_s(r['median_ms'])} ({_s(r['min_ms'])}) | "
                     f"{ratio} | {_mb(r['peak_mem_bytes'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
