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

Writes ``results/attention_blocks_<device>.md`` and ``.json`` (``--no-write`` to skip); ``--record`` writes
the table the package ships instead (``attncourse/recorded/benchmarks/attention_blocks_<device>.json``, shown by
``attncourse.benchmark_table("attention_blocks")``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (add_common_args, device_and_dtype, environment, finish_environment,  # noqa: E402
                      measure_arms, render_comparison, slug, write_outputs)

from attncourse.blocks.nonlocal_ import NonLocal2d, sdpa_backends  # noqa: E402

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


def render(env: dict, rows: list[dict]) -> str:
    """The Markdown table (with ratios against timm, on the median and on the fastest repeat) of one run."""
    return render_comparison(
        env, rows, title="Non-local block", reference="timm",
        input_desc=(f"timm `NonLocalAttn` configuration (inner width {env['inner']}, scale C^-0.5, BN, residual), "
                    "identical weights in every arm"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p, sizes=[32, 64, 96], batch=8)
    p.add_argument("--repeats-large", type=int, default=None,
                   help="repeats for sizes >= --large (a slow CPU): default = --repeats")
    p.add_argument("--large", type=int, default=96)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--render", metavar="JSON", help="only re-render the Markdown table of an earlier run's JSON")
    args = p.parse_args(argv)
    if args.render:
        data = json.loads(Path(args.render).read_text())
        data["env"].setdefault("inner", build("timm", data["env"]["channels"]).t.out_channels)
        table = render(data["env"], data["rows"])
        print(table)
        if not args.no_write and "markdown" in data:  # a table the package ships
            data["markdown"] = table
            Path(args.render).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        elif not args.no_write:
            Path(args.render).with_suffix(".md").write_text(table)
            Path(args.render).write_text(json.dumps(data, indent=1))
        return 0

    device, dtype = device_and_dtype(args)
    env = environment(device, args, inner=build("timm", args.channels).t.out_channels)
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
        rows += measure_arms(models, x, size, warmup=args.warmup, repeats=repeats)
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

    finish_environment(env)
    write_outputs(args, "attention_blocks", slug(device), render(env, rows), env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
