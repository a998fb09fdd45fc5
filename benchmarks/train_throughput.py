"""Images per second of ``attncourse.fit`` against the compute-only bound.

The bound trains the same model with the same batch size, optimiser, AMP and memory format on ONE batch
that is already on the device (no indexing, no augmentation, no evaluation): the fastest the training
step itself can go. ``fit`` additionally slices batches from the resident dataset, augments on the
device and evaluates once per epoch. The ratio fit / bound says how much of the step time the data path
costs (goal on a GPU: ≥ 0.9).

    python benchmarks/train_throughput.py [--task cluttered_digits] [--n 4096] [--epochs 3] [--batch-size 256]
        [--out results/train_throughput_<device>.json]
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import attncourse as ac
from attncourse.train import _autocast


def compute_bound(model, x, y, steps: int, device, amp: bool, channels_last: bool) -> float:
    """Images/s of forward+backward+AdamW step on one resident batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with _autocast(device) if amp else torch.autocast(device.type, enabled=False):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cluttered_digits")
    p.add_argument("--attention", default="none")
    p.add_argument("--n", type=int, default=4096, help="training images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--note", default="", help="free text stored with the numbers (e.g. what else ran on the machine)")
    p.add_argument("--out", default=None, help="JSON file (default results/train_throughput_<device>.json)")
    args = p.parse_args()

    device = ac.pick_device(args.device)
    task = ac.data.TASKS[args.task](args.n, 512, seed=0)
    amp = channels_last = device.type == "cuda"

    ac.seed_everything(0)
    model = ac.AttnResNet(task.in_channels, task.num_classes, attention=args.attention)
    hist = ac.fit(model, task, epochs=args.epochs, batch_size=args.batch_size, device=device, progress=False)
    # fit's own per-epoch time covers the training steps (slicing, augmentation, step); evaluation is timed apart
    fit_ips = args.n * (len(hist.seconds) - 1) / sum(hist.seconds[1:]) if len(hist.seconds) > 1 else args.n / hist.seconds[0]

    ac.seed_everything(0)
    model = ac.AttnResNet(task.in_channels, task.num_classes, attention=args.attention).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    xb = ac.float_images(task.x_train[: args.batch_size]).to(device)
    yb = task.y_train[: args.batch_size].to(device)
    steps = max(5, (args.n // args.batch_size) * (args.epochs - 1))
    bound_ips = compute_bound(model, xb, yb, steps, device, amp, channels_last)

    row = {"device": ac.device_name(device), "torch": torch.__version__, "task": args.task, "attention": args.attention,
           "image_shape": list(task.x_train.shape[1:]), "n_train": args.n, "batch_size": args.batch_size,
           "epochs_timed": max(1, args.epochs - 1), "amp_bf16": amp, "channels_last": channels_last,
           "fit_images_per_s": round(fit_ips, 1), "bound_images_per_s": round(bound_ips, 1),
           "ratio": round(fit_ips / bound_ips, 3), "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "note": args.note}
    print(f"{'device':22s} {row['device']}")
    print(f"{'task / batch':22s} {args.task} {tuple(row['image_shape'])}, batch {args.batch_size}, AMP={amp}, channels_last={channels_last}")
    print(f"{'fit()':22s} {fit_ips:10.1f} images/s  (epochs after the first)")
    print(f"{'compute-only bound':22s} {bound_ips:10.1f} images/s")
    print(f"{'ratio fit / bound':22s} {row['ratio']:10.3f}")
    slug = re.sub(r"[^a-z0-9]+", "_", row["device"].lower()).strip("_")
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "results" / f"train_throughput_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
