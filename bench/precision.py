"""`make bench-precision`: does bf16 autocast pay on this CPU? The course demo model's training step in float32 and in bf16 autocast
(`TrainConfig.mixed_precision="bf16"`), timed in turn (A B A B ...) in one process, and the loss both reach after the same steps.

bf16 autocast only helps where the CPU multiplies bf16 natively (the `avx512_bf16` or `amx_bf16` flags); elsewhere it emulates it
and is slower. Writes <out>.json and <out>.md (default bench/results/precision).
"""
from __future__ import annotations
import argparse, statistics, sys, time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all logical CPUs)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of (float32, bf16) timing runs (default 5)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per timing run (after 2 untimed; default 8)")
    p.add_argument("--quality-steps", type=int, default=300, help="steps of the equal-steps loss comparison (default 300; 0 skips it)")
    p.add_argument("--out", default=str(B.RESULTS / "precision"), help="output path without extension (default bench/results/precision)")
    args = p.parse_args(argv)
    import torch
    if args.threads: torch.set_num_threads(args.threads)
    m = B.machine()
    native = any(f in m.get("simd_flags", []) for f in ("avx512_bf16", "amx_bf16"))
    modes = {"float32": {"mixed_precision": "no"}, "bf16 autocast": {"mixed_precision": "bf16"}}
    loops = {k: B.CourseLoop(k, k, overrides=v) for k, v in modes.items()}
    times = {k: [] for k in modes}
    for batch in (64, 128):
        for r in range(args.rounds):
            for k, c in loops.items():
                times[k].append((batch, statistics.median(B.step_times(c, batch, n_steps=args.steps)["times"])))
            print(f"  batch {batch} round {r + 1}: " + ", ".join(f"{k} {times[k][-1][1] * 1000:.0f} ms/step" for k in modes), flush=True)
    rows, res = [], {"machine": m, "native_bf16": native, "threads": torch.get_num_threads(), "load_start": B.loadavg(),
                     "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "timing": {}, "quality": {}}
    for batch in (64, 128):
        med = {k: statistics.median([t for b, t in times[k] if b == batch]) for k in modes}
        ratios = [a / b for (ba, a), (bb, b) in zip(times["float32"], times["bf16 autocast"]) if ba == batch]
        res["timing"][batch] = {"ms_per_step": {k: v * 1000 for k, v in med.items()}, "speedup": B.median_spread(ratios)}
        rows.append([batch, f"{med['float32'] * 1000:.0f}", f"{med['bf16 autocast'] * 1000:.0f}", B.spread(B.median_spread(ratios))])
    if args.quality_steps:
        for k, c in loops.items():
            t0 = time.perf_counter()
            out, _ = c.run(args.quality_steps, c.lr_default, 0)
            res["quality"][k] = {"final_loss": c.final_loss(out), "seconds": time.perf_counter() - t0}
            print(f"  {k}: {args.quality_steps} steps, loss over the last 10% {res['quality'][k]['final_loss']:.4f}", flush=True)
    res["load_end"] = B.loadavg()
    md = [f"# bf16 autocast against float32 on this CPU ({m.get('cpu_model', '?')}, {res['threads']} threads; native bf16: "
          f"{'yes' if native else 'no'}; load {res['load_start']:.2f} -> {res['load_end']:.2f}; {res['date']})", "",
          "Course demo UNet, the course loop's whole step (forward, backward, AdamW, EMA), median over rounds run in turn:", "",
          B.md_table(["batch", "float32 ms/step", "bf16 ms/step", "speed-up (float32 / bf16), median [min, max] over pairs"], rows)]
    if res["quality"]:
        md += ["", f"Loss over the last 10% of {args.quality_steps} steps (seed 0, same batches): " +
               ", ".join(f"{k} {v['final_loss']:.4f}" for k, v in res["quality"].items())]
    B.write_report(args.out, res, md)


if __name__ == "__main__":
    main()
