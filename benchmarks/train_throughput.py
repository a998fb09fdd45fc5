"""Training and evaluation throughput of ``attncourse.fit``'s speed settings, as interleaved ratios.

Two settings train the same model on the same resident batches:

* ``before`` — float32, contiguous (NCHW) tensors: what ``fit`` did on a CPU before it detected bf16;
* ``after``  — what ``fit`` picks now on this device (:func:`attncourse.train.speed_settings`): bf16
  autocast where the hardware has bf16, channels_last memory format.

The two settings take turns (``--rounds`` rounds of ``--steps`` training steps each, in one process), so
a change in the machine's load hits both alike; the table gives the median images/s of each and their
ratio. Evaluation is timed the same way, and the two settings' predictions on the test images are
compared. ``--accuracy`` also trains each setting for a short real run (``--accuracy-profile``, one seed
per arm) and reports both test accuracies, so the speed-up is shown at equal accuracy.

    python benchmarks/train_throughput.py [--arms none se cbam] [--threads 1] [--accuracy] [--out results/...]

Writes ``results/train_throughput_<device>.json`` and ``.md``; ``--record`` writes the table the package ships
instead (``attncourse/recorded/benchmarks/train_throughput_cpu.json``, shown by
``attncourse.benchmark_table("train_throughput")``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (_cpu_model, command_line, cpu_snapshot, finish_environment, load_average,  # noqa: E402
                      machine_line, record)

import attncourse as ac  # noqa: E402
from attncourse.train import _autocast, _memory_format, speed_settings  # noqa: E402

BEFORE = {"amp": False, "channels_last": False}


def make_stepper(attention: str, task, settings: dict, batch: int):
    """A closure running one training step of a fresh model with ``settings`` on a resident batch."""
    ac.seed_everything(0)
    model = ac.AttnResNet(task.in_channels, task.num_classes, attention=attention)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = _memory_format(ac.float_images(task.x_train[:batch]), settings["channels_last"])
    y = task.y_train[:batch]
    device = torch.device("cpu")

    def step():
        with _autocast(device, settings["amp"]):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, step


def interleaved(fns: dict, rounds: int, reps: int) -> dict:
    """Median seconds per call of each fn, measured in alternating rounds (after one warm-up round)."""
    times = {k: [] for k in fns}
    for r in range(rounds + 1):
        for k, fn in (fns.items() if r % 2 == 0 else reversed(list(fns.items()))):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            if r > 0:
                times[k].append((time.perf_counter() - t0) / reps)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cluttered_digits")
    p.add_argument("--arms", nargs="*", default=["none", "se", "cbam"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="training steps per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1, help="torch threads (run-all gives each process cores/jobs)")
    p.add_argument("--accuracy", action="store_true", help="also train each setting for a short real run")
    p.add_argument("--accuracy-profile", default="cpu")
    p.add_argument("--note", default="", help="what the machine was doing (e.g. its measured load)")
    p.add_argument("--out", default=None, help="JSON file (default results/train_throughput_<device>.json; .md beside)")
    p.add_argument("--record", action="store_true",
                   help="write the table the package ships (attncourse/recorded/benchmarks/) instead of results/")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    command, load_before, cpu_start = command_line(), load_average(), cpu_snapshot()
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    after = speed_settings("cpu")
    task = ac.make_task(args.task, ac.get_profile("smoke").with_(n_train=max(512, args.batch_size), n_test=512))
    rows = []
    for arm in args.arms:
        m_before, s_before = make_stepper(arm, task, BEFORE, args.batch_size)
        m_after, s_after = make_stepper(arm, task, after, args.batch_size)
        train = interleaved({"before": s_before, "after": s_after}, args.rounds, args.steps)
        m_after.load_state_dict(m_before.state_dict())  # same weights: compare predictions
        xt = task.x_test
        evals = interleaved({"before": lambda: ac.predict(m_before, xt, amp=False, channels_last=False),
                             "after": lambda: ac.predict(m_after, xt, amp=after["amp"],
                                                         channels_last=after["channels_last"])}, args.rounds, 1)
        agree = (ac.predict(m_before, xt, amp=False, channels_last=False).argmax(1)
                 == ac.predict(m_after, xt, amp=after["amp"], channels_last=after["channels_last"]).argmax(1))
        row = {"arm": arm, "train_ips_before": args.batch_size / train["before"],
               "train_ips_after": args.batch_size / train["after"], "train_ratio": train["before"] / train["after"],
               "eval_ips_before": len(xt) / evals["before"], "eval_ips_after": len(xt) / evals["after"],
               "eval_ratio": evals["before"] / evals["after"], "eval_same_prediction": float(agree.float().mean())}
        if args.accuracy:
            prof = ac.get_profile(args.accuracy_profile)
            acc_task = ac.make_task(args.task, prof)
            for name, s in (("before", BEFORE), ("after", after)):
                ac.seed_everything(0)
                model = ac.AttnResNet(acc_task.in_channels, acc_task.num_classes, attention=arm)
                hist = ac.fit(model, acc_task, epochs=prof.epochs, batch_size=prof.batch_size, seed=0, device="cpu",
                              amp=s["amp"], channels_last=s["channels_last"], progress=False)
                row[f"acc_{name}"] = hist.final_test_acc
                row[f"fit_s_{name}"] = sum(hist.seconds)
        rows.append(row)
        print(f"{arm:8s} train ×{row['train_ratio']:.2f}  eval ×{row['eval_ratio']:.2f}  same predictions "
              f"{100 * row['eval_same_prediction']:.1f} %", flush=True)

    env = finish_environment({"threads": args.threads, "load_before": load_before, "_cpu_start": cpu_start})
    out = {"device": ac.device_name("cpu"), "device_type": "cpu", "cpu": _cpu_model(), "cores": os.cpu_count(),
           "torch": torch.__version__, "python": platform.python_version(), "command": command,
           "load_before": load_before, "load_after": env["load_after"], "others_cpu_cores": env["others_cpu_cores"],
           "waited_for_cpu": env["waited_for_cpu"],
           "machine": env["machine"],
           "date": started, "task": args.task, "image_shape": list(task.x_train.shape[1:]),
           "batch_size": args.batch_size, "threads": args.threads, "before": BEFORE, "after": after,
           "rounds": args.rounds, "steps_per_round": args.steps, "accuracy_profile": args.accuracy_profile if args.accuracy else None,
           "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "note": args.note, "rows": rows}
    md = [f"# Training throughput: {out['device']}", "",
          f"`fit`'s speed settings on `{args.task}` {tuple(out['image_shape'])}, batch {args.batch_size}, "
          f"{args.threads} thread(s), torch {out['torch']}. *Before*: float32, NCHW. *After*: bf16 autocast = "
          f"{after['amp']}, channels_last = {after['channels_last']} (what `fit` picks on this machine). Medians of "
          f"{args.rounds} interleaved rounds. {args.note}".strip(), "",
          f"- device: {out['device']} — {out['cpu']}", f"- date: {out['date']}", f"- command: `{command}`",
          machine_line(out), "",
          "| arm | train img/s before | after | ratio | eval img/s before | after | ratio | same predictions |"
          + (" test acc before | after |" if args.accuracy else ""),
          "|---|---|---|---|---|---|---|---|" + ("---|---|" if args.accuracy else "")]
    for r in rows:
        line = (f"| {r['arm']} | {r['train_ips_before']:.0f} | {r['train_ips_after']:.0f} | **{r['train_ratio']:.2f}×** | "
                f"{r['eval_ips_before']:.0f} | {r['eval_ips_after']:.0f} | {r['eval_ratio']:.2f}× | "
                f"{100 * r['eval_same_prediction']:.1f} % |")
        if args.accuracy:
            line += f" {100 * r['acc_before']:.1f} % | {100 * r['acc_after']:.1f} % |"
        md.append(line)
    if args.accuracy:
        md += ["", f"Test accuracy: one seed per setting, `{args.accuracy_profile}` profile, same seed and data order."]
    text = "\n".join(md) + "\n"
    print(text)
    if args.record:
        record("train_throughput", "cpu", text, {k: v for k, v in out.items() if k != "rows"}, rows)
        return
    slug = re.sub(r"[^a-z0-9]+", "_", out["device"].lower()).strip("_")
    path = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "results" / f"train_throughput_{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    path.with_suffix(".md").write_text(text)
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
