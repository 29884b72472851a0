"""`make bench-speed`: which CPU speed levers pay for the demo model's training step? One training step (forward, backward,
AdamW) of the demo UNet at batch 64 on 28x28 images, under each variant below, timed in turn (round-robin, so that every variant
sees the same load) in one process; the median over rounds, and the ratio to float32 measured in the same rounds.

  float32             the course loop's arithmetic today (mixed_precision "no")
  bf16                torch.autocast(bfloat16): pays only where the CPU multiplies bf16 natively (avx512_bf16 / amx_bf16)
  channels_last       the network and its input in channels-last memory order (NHWC), float32
  channels_last+bf16  both
  adamw foreach       AdamW(foreach=True): one multi-tensor kernel per update instead of a loop over parameters
  adamw fused         AdamW(fused=True): the whole update in one fused kernel (CPU support since torch 2.4)
  compile             torch.compile(network), float32: its compile time is reported separately (the first steps)
  compile+bf16        torch.compile under bf16 autocast
  1 thread            float32 with torch.set_num_threads(1): what the second core adds

Writes <out>.json and <out>.md (default bench/results/speed).
"""
from __future__ import annotations
import argparse, contextlib, statistics, sys, time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

VARIANTS = ("float32", "bf16", "channels_last", "channels_last+bf16", "adamw foreach", "adamw fused", "compile", "compile+bf16", "1 thread")


class Variant:
    "The demo UNet, its optimizer and one batch, set up for one way of running the step."
    def __init__(self, name: str, batch_size: int, threads: int):
        import torch
        import torch.nn.functional as F
        from diffusion_course.training import demo_config
        self.name, self.threads, self.F, self.torch = name, (1 if name == "1 thread" else threads), F, torch
        torch.manual_seed(0)
        self.net = demo_config().build_model().train()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch_size, 1, 28, 28, generator=g)
        self.noise = torch.randn(batch_size, 1, 28, 28, generator=g)
        self.t = torch.randint(0, 1000, (batch_size,), generator=g)
        if "channels_last" in name:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.x, self.noise = (a.contiguous(memory_format=torch.channels_last) for a in (self.x, self.noise))
        opt_kw = {"foreach": True} if name == "adamw foreach" else {"fused": True} if name == "adamw fused" else {"foreach": False}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4, **opt_kw)
        self.bf16 = "bf16" in name
        self.forward = self.net
        self.compile_s = None
        if name.startswith("compile"):
            self.forward = torch.compile(self.net)
            t0 = time.perf_counter()
            for _ in range(2): self.step()          # compiles forward and backward
            self.compile_s = time.perf_counter() - t0

    def step(self) -> float:
        torch = self.torch
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            t0 = time.perf_counter()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with ctx: loss = self.F.mse_loss(self.forward(self.x, self.t), self.noise)
            loss.backward()
            self.opt.step(); self.opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0
        finally:
            torch.set_num_threads(old)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all logical CPUs)")
    p.add_argument("--rounds", type=int, default=5, help="rounds over all variants (default 5)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per variant and round (after 2 untimed; default 6)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--out", default=str(B.RESULTS / "speed"), help="output path without extension (default bench/results/speed)")
    args = p.parse_args(argv)
    import torch
    if args.threads: torch.set_num_threads(args.threads)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown: p.error(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    threads = torch.get_num_threads()
    m, load_start, t_start = B.machine(), B.loadavg(), time.perf_counter()
    variants, errors = {}, {}
    for n in names:
        try: variants[n] = Variant(n, args.batch_size, threads)
        except Exception as e:                          # e.g. a torch without fused AdamW on the CPU: a result, not the end
            errors[n] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            print(f"  {n}: not available ({errors[n]})", flush=True)
    times = {n: [] for n in variants}
    for r in range(args.rounds):
        for n, v in variants.items():
            for _ in range(2): v.step()
            times[n].append(statistics.median(v.step() for _ in range(args.steps)))
        print(f"  round {r + 1}: " + ", ".join(f"{n} {times[n][-1] * 1000:.0f}" for n in variants) + " ms/step", flush=True)
    base = times.get("float32")
    rows, res = [], {"machine": m, "threads": threads, "batch_size": args.batch_size, "rounds": args.rounds, "steps": args.steps,
                     "load_start": load_start, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "variants": {}, "errors": errors}
    for n, ts in times.items():
        ratio = B.median_spread([b / t for b, t in zip(base, ts)]) if base else None
        res["variants"][n] = {"ms_per_step": [t * 1000 for t in ts], "median_ms": statistics.median(ts) * 1000, "speedup_vs_float32": ratio,
                              "compile_s": variants[n].compile_s}
        rows.append([n, f"{statistics.median(ts) * 1000:.0f}", B.spread(ratio) if ratio else "",
                     f"{variants[n].compile_s:.1f}" if variants[n].compile_s is not None else ""])
    for n, e in errors.items(): rows.append([n, "not available", "", e])
    res["load_end"], res["seconds"] = B.loadavg(), time.perf_counter() - t_start
    md = [f"# CPU speed levers for the demo model's training step ({m.get('cpu_model', '?')}, {threads} threads, batch {args.batch_size}; "
          f"load {load_start:.2f} -> {res['load_end']:.2f}; {res['date']}; {res['seconds']:.0f} s)", "",
          f"Forward + backward + AdamW of the demo UNet, median over {args.rounds} rounds run in turn ({args.steps} timed steps each); "
          "speed-up = float32's time / the variant's, per round, median [min, max]. A load above the thread count makes the times invalid.", "",
          B.md_table(["variant", "ms/step", "speed-up vs float32", "compile s (first 2 steps)"], rows), "",
          "Command: `python bench/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`"]
    B.write_report(args.out, res, md)


if __name__ == "__main__":
    main()
