"""Command line: ``python -m attncourse list | run NAME | run-all [--only NAME…] [--jobs N] | report | release … | grade …``."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attncourse", description="attncourse experiments and grading")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the registered experiments")
    run = sub.add_parser("run", help="run an experiment and write results/<name>.json")
    run.add_argument("name")
    run.add_argument("--profile", default=None, help="smoke | full (default: $ATTNCOURSE_PROFILE or full)")
    run.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    run.add_argument("--arms", nargs="*", default=None, help="only these arms")
    run.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    run.add_argument("--out-dir", default=None, help="folder for the JSON (default: the package's recorded results)")
    run_all = sub.add_parser("run-all", help="run every experiment (or --only some), resumably, on --jobs processes")
    run_all.add_argument("--only", nargs="*", default=None, metavar="NAME", help="only these experiments")
    run_all.add_argument("--profile", default=None, help="smoke | cpu | full (default: $ATTNCOURSE_PROFILE or full)")
    run_all.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    run_all.add_argument("--jobs", type=int, default=1, help="worker processes (each gets cores/jobs threads)")
    run_all.add_argument("--device", default=None, help="cpu | cuda (default: CUDA when present)")
    run_all.add_argument("--store", default=None, help="run store for resumable runs (default $ATTNCOURSE_RUNS "
                                                       "or ~/.cache/attncourse/runs)")
    run_all.add_argument("--out-dir", default=None, help="folder for results and checkpoints (default: the package's)")
    run_all.add_argument("--merge-only", action="store_true", help="train nothing: record and merge what has finished")
    run_all.add_argument("--arms", nargs="*", default=None,
                         help="only these arms (with --only NAME); the results still merge every arm that has finished")
    items = sub.add_parser("items", help="re-evaluate existing weights to record per-item test outcomes (no training)")
    items.add_argument("names", nargs="*", help="experiments (default: every recorded one)")
    items.add_argument("--profile", default="full")
    items.add_argument("--store", default=None, help="run store (default $ATTNCOURSE_RUNS or results/runs)")
    shift = sub.add_parser("shift", help="test finished runs on a harder variant of their task (no training)")
    shift.add_argument("name", help="a registered shift evaluation, e.g. clutter_shift")
    shift.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of every source run (default 3)")
    shift.add_argument("--arms", nargs="*", default=None, help="only these arms")
    shift.add_argument("--profile", default="full", help="the profile the source runs trained with (default full)")
    shift.add_argument("--store", nargs="*", default=None, help="run stores holding the finished runs, searched in order "
                                                                "(default $ATTNCOURSE_RUNS or ~/.cache/attncourse/runs)")
    shift.add_argument("--out-dir", default=None, help="folder for shifts/<name>.json (default: the package's)")
    rep = sub.add_parser("report", help="write the book's results page from results/*.json")
    rep.add_argument("--out", default="book/results.md", help="markdown file to write (default book/results.md)")
    rep.add_argument("--results", default=None, help="folder of results (default results/)")
    try:
        from .grading import add_grade_parser  # the instructor's batch grader (issue: graded exercises)
    except ImportError:
        add_grade_parser = None
    if add_grade_parser is not None:
        add_grade_parser(sub)
        from .grading.release import add_release_parser  # student copies of the module notebooks

        add_release_parser(sub)
    args = parser.parse_args(argv)
    if getattr(args, "profile", "") is None:  # experiments: $ATTNCOURSE_PROFILE, else the full profile (not the demo)
        import os

        args.profile = os.environ.get("ATTNCOURSE_PROFILE") or "full"

    if args.cmd == "list":
        from .experiments import EXPERIMENTS

        for name in sorted(EXPERIMENTS):
            exp = EXPERIMENTS[name]
            print(f"{name:32s} {exp.task:20s} arms: {', '.join(exp.arms)}")
        return 0
    if args.cmd == "run":
        from .experiments import run_experiment

        try:
            res = run_experiment(args.name, args.profile, args.seeds, arms=args.arms, device=args.device, out_dir=args.out_dir)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for arm, a in res["arms"].items():
            print(f"{arm:24s} test acc {a['mean_test_acc']:.4f} ± {a['std_test_acc']:.4f}  (n={len(a['runs'])})")
        print(f"wrote {res['path']}  [{res['device']}, profile {res['profile']}, {res['wall_s']:.0f}s]")
        return 0
    if args.cmd == "shift":
        from .experiments import record_shift

        try:
            res = record_shift(args.name, seeds=tuple(range(args.seeds)), profile=args.profile, store=args.store,
                               out_dir=args.out_dir, arms=args.arms)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for arm, a in res["arms"].items():
            accs = "  ".join(f"{lvl}: {100 * sum(v) / len(v):5.1f}" for lvl, v in a["values"].items())
            print(f"{arm:14s} mean test {res['metric']} (%) by {res['vary']}  {accs}")
        print(f"[{res['device']}, profile {res['profile']}, seeds {res['seeds']}, {res['n_test']} images per level]")
        return 0
    if args.cmd == "run-all":
        from .experiments import run_all

        try:
            out = run_all(args.only, args.profile, args.seeds, arms=args.arms, jobs=args.jobs, device=args.device,
                          store=args.store, out_dir=args.out_dir, train=not args.merge_only)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for label, err in out["failed"]:
            print(f"failed: {label}: {err}", file=sys.stderr)
        return 1 if out["failed"] else 0
    if args.cmd == "items":
        from .experiments.items import record_items

        try:
            record_items(args.names or None, args.profile, store=args.store)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "report":
        from pathlib import Path

        from .report import render_results_page, write_capstone_figure

        Path(args.out).write_text(render_results_page(args.results))
        print(f"wrote {args.out}")
        figure = write_capstone_figure(Path(args.out).parent, args.results)
        if figure is not None:
            print(f"wrote {figure}")
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
