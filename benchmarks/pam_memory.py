"""Forward+backward time and peak memory of DANet's position attention module: efficient vs naive.

Both arms are :class:`attncourse.blocks.dual.PositionAttention` with identical weights (query/key width
C/8, no scale, γ·out + x) and compute the same function on the same input:

* ``efficient``  the block's default: SDPA with ``scale=1.0`` on contiguous q/k/v, q and k zero-padded from
                 C/8 to C wide so that a fused kernel (CPU flash attention) can run — no N×N matrix;
* ``sdpa_unpadded`` the same SDPA call without the padding (q/k C/8 wide, v C wide): only the math kernel
                 accepts unequal widths, and it materialises the N×N matrix;
* ``naive``      the explicit ``N × N`` energy and attention matrices (``torch.bmm`` + ``softmax``), as the
                 authors' code.

Time: median (and fastest) of ``--repeats`` forward+backward passes after ``--warmup``, the arms taking
turns so a shared machine's load hits both alike. Memory: :func:`attncourse.cost.peak_memory` of one
forward+backward (CPU: profiler allocation events; CUDA: the allocator's peak), above what was live before.

    python benchmarks/pam_memory.py                        # 64×64 and 96×96 maps, batch 2, 64 channels
    python benchmarks/pam_memory.py --sizes 64 96 128 --device cuda

Writes ``results/pam_memory_<device>.md`` and ``.json`` (``--no-write`` to skip); ``--record`` writes the table
the package ships instead (``attncourse/recorded/benchmarks/pam_memory_<device>.json``, shown by
``attncourse.benchmark_table("pam_memory")``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (add_common_args, device_and_dtype, environment, finish_environment,  # noqa: E402
                      measure_arms, render_comparison, slug, write_outputs)

from attncourse.blocks.dual import PositionAttention  # noqa: E402
from attncourse.blocks.nonlocal_ import sdpa_backends  # noqa: E402

ARMS = ("efficient", "sdpa_unpadded", "naive")


def build(arm: str, channels: int, seed: int = 0) -> PositionAttention:
    torch.manual_seed(seed)
    block = PositionAttention(channels, implementation="naive" if arm == "naive" else "efficient",
                              pad_from_tokens=None if arm == "sdpa_unpadded" else 1)
    with torch.no_grad():
        block.gamma.fill_(0.5)  # a trained-looking γ: the attention path counts in the output and the gradient
    return block


def render(env: dict, rows: list[dict]) -> str:
    """The Markdown table (with ratios against the naive arm) of one run."""
    return render_comparison(
        env, rows, title="DANet position attention (PAM)", reference="naive",
        input_desc=f"PAM with query/key width {env['inner']} (C/8), no scale, γ = 0.5, identical weights in both arms")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p, sizes=[64, 96], batch=2)
    args = p.parse_args(argv)

    device, dtype = device_and_dtype(args)
    env = environment(device, args, inner=build("efficient", args.channels).inner_channels)
    inner = env["inner"]
    print(f"# PAM, forward+backward — {env['device']} ({env['cpu']}), torch {env['torch']}, {env['threads']} threads")
    t = torch.randn(args.batch, 1, 256, inner, device=device, dtype=dtype)
    v = torch.randn(args.batch, 1, 256, args.channels, device=device, dtype=dtype)
    wide = torch.nn.functional.pad(t, (0, args.channels - inner))
    env["sdpa_backends"] = {"q/k zero-padded to C (efficient)": sdpa_backends(wide, wide, v, 1.0),
                            "q/k C/8 wide (sdpa_unpadded)": sdpa_backends(t, t, v, 1.0)}

    rows = []
    for size in args.sizes:
        x = torch.randn(args.batch, args.channels, size, size, device=device, dtype=dtype)
        models = {arm: build(arm, args.channels).to(device=device, dtype=dtype).train() for arm in ARMS}
        with torch.no_grad():
            outs = {arm: m(x).float() for arm, m in models.items()}
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        for arm in ARMS:
            torch.testing.assert_close(outs[arm], outs["naive"], atol=tol, rtol=tol)
        del outs
        rows += measure_arms(models, x, size, warmup=args.warmup, repeats=args.repeats)
        del models, x
        if device.type == "cuda":
            torch.cuda.empty_cache()

    finish_environment(env)
    write_outputs(args, "pam_memory", slug(device), render(env, rows), env, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
