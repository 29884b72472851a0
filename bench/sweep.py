"""`make bench-sweep`: tune the two peers' learning rates fairly before the headline run (3 values each, a shorter budget, seed 0).

Each learning rate trains for the same wall-clock budget (steps from a calibration run, as in bench.py), then N images are sampled with
the headline's number of steps and scored by the shared evaluation; the lowest FID wins. Writes bench/results/sweep.json (its `chosen`
learning rates feed `make bench`) and sweep.md.
"""
from __future__ import annotations
import argparse, sys, time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    B.add_budget_args(p, 60, "as the headline; ", "as the headline; ")
    B.add_common_args(p)
    p.add_argument("--contenders", default="hf,ddp", help="which to sweep (default hf,ddp; add course to sweep it too)")
    p.add_argument("--grid", default="", help="override the grids, e.g. 'hf=5e-4,1e-3,2e-3;ddp=1e-4,3e-4,1e-3'")
    p.add_argument("--out", default=str(B.RESULTS / "sweep"), help="output path without extension (default bench/results/sweep)")
    args = p.parse_args(argv)
    dev = B.setup(args, "sweep")
    from diffusion_course.metrics import load_or_train_classifier
    C = B.contenders(args.ddp_dim)
    C["course"].lr_grid = (1e-3, 2e-3, 4e-3)
    grids = {name: C[name].lr_grid for name in args.contenders.split(",")}
    for part in filter(None, args.grid.split(";")):
        name, _, vals = part.partition("=")
        grids[name.strip()] = tuple(float(v) for v in vals.split(","))
    t_start, load_start = time.perf_counter(), B.loadavg()
    clf = load_or_train_classifier(progress=False)
    runs, chosen, cal = [], {}, {}
    for name, grid in grids.items():
        c = C[name]
        cal[name] = B.calibrate(c, args.budget, max(4.0, 0.04 * args.budget), grid[0])
        print(f"sweep {name}: {cal[name]['s_per_step']:.3f} s/step -> {cal[name]['steps']} steps in {args.budget:g} s", flush=True)
        for lr in grid:
            r = B.train_and_score(c, cal[name]["steps"], lr, 0, args.n, args.steps, clf)
            print(f"  lr {lr:g}: FID {r['fid']:.2f} (floor {r['fid_floor']:.2f}), {r['train_s']:.1f} s", flush=True)
            runs.append(r)
        best = min((r for r in runs if r["contender"] == name), key=lambda r: r["fid"])
        chosen[name] = best["lr"]
    edge = {n: chosen[n] in (min(g), max(g)) for n, g in grids.items()}
    report = {"created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": " ".join(["python"] + sys.argv),
              "budget": args.budget, "n": args.n, "steps": args.steps, "threads": args.threads, "grids": grids, "calibration": cal,
              "chosen": chosen, "chosen_at_grid_edge": edge, "runs": runs, "machine": {**B.machine(), "gpu": B.gpu()}, "device": dev,
              "total_s": time.perf_counter() - t_start, "load_start": load_start, "load_end": B.loadavg()}
    md = [f"# Learning-rate sweep: {report['created']}", "",
          f"Command: `{report['command']}`; {report['total_s']:.0f} s; load average at start {load_start:.2f}, at end {report['load_end']:.2f}.", "",
          f"Machine: {report['machine']['cpu_model']}, {report['machine']['logical_cpus']} logical CPUs, torch {report['machine']['torch']}, {args.threads} threads; "
          f"device {dev}" + (f" ({report['machine']['gpu']['name']})" if dev.startswith("cuda") else "") + ".", "",
          f"Each run: {args.budget:g} s of training (seed 0, batch 64, {args.threads} threads), N = {args.n} images with {args.steps} sampling steps, "
          "the shared evaluation's FID; the lowest FID is chosen and feeds `make bench`.", "",
          B.md_table(["contender", "lr", "steps", "train s", "FID", "floor", "final loss", "chosen"],
                     [[r["contender"], f"{r['lr']:g}", r["steps"], f"{r['train_s']:.1f}", f"{r['fid']:.2f}", f"{r['fid_floor']:.2f}", f"{r['final_loss']:.4f}",
                       "**yes**" if chosen[r["contender"]] == r["lr"] else ""] for r in runs]), ""]
    md += [f"Note: {n}'s best learning rate is at the edge of its grid: widen the grid (--grid)." for n, e in edge.items() if e]
    md += ["", "A short budget favours larger learning rates than a long one would; the chosen values are the best for this budget."]
    B.write_report(args.out, report, md)
    print(f"sweep: wrote {Path(args.out).with_suffix('.json')} and {Path(args.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
