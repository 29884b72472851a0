"""`make bench`: quality per wall-clock budget, throughput, and the hardware limit, for the course's demo model and two peers (issue 13).

Writes <out>.json (every number, the machine, the settings) and <out>.md (the tables), and prints the tables.
See bench/README.md for what each table holds.
"""
from __future__ import annotations
import argparse, json, math, statistics, sys, time, warnings
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    B.add_budget_args(p, 90, "the same N for all; ", "the same for all; ")
    p.add_argument("--seeds", type=int, default=3, help="seeds for the course model and the best peer (the other peer: seed 0 only); default 3")
    p.add_argument("--all-seeds", action="store_true", help="run every seed for all three contenders")
    B.add_common_args(p)
    p.add_argument("--ddpm-batch", type=int, default=4, help="batch of the DDPM-1000 sampling throughput row (default 4: 1,000 steps)")
    p.add_argument("--ddim-batch", type=int, default=64, help="batch of the DDIM sampling throughput rows (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of each throughput measurement (default 5)")
    p.add_argument("--contenders", default="course,hf,ddp", help="which contenders (default all three; course must be one)")
    p.add_argument("--course-overrides", default="", help='TrainConfig changes for the course model, as JSON, e.g. \'{"ema_decay": 0.99}\' (a lever at equal budget)')
    p.add_argument("--lrs", default=str(B.RESULTS / "sweep.json"), help="the learning rates chosen by `make bench-sweep` (used if the file exists)")
    p.add_argument("--sections", default="throughput,headline", help="comma-separated: throughput (incl. hardware), headline")
    p.add_argument("--out", default=str(B.RESULTS / "bench"), help="output path without extension (default bench/results/bench)")
    p.add_argument("--note", default="", help="a line to put in the report (e.g. 'smoke test')")
    # (also: bench.py --render bench/results/bench.json writes the .md again from the .json)
    return p.parse_args(argv)


class Identity(B.nn.Module):
    "The model replaced by an identity (one dummy parameter, so that the pipeline finds a device and dtype): what is left of a sampling step is the scheduler and the loop."
    def __init__(self):
        super().__init__(); self.w = B.nn.Parameter(B.torch.zeros(()))
    def forward(self, x, t, **kw): return x


def throughput(C, args, report):
    import torch
    from diffusion_course.training import demo_config
    from diffusion_course.checkpoints import make_scheduler
    from diffusion_course.pipelines import DDPMPipeline, with_sampler
    from diffusers import DDPMScheduler as TheirDDPM, DDIMScheduler as TheirDDIM
    R = args.repeats
    out = {}

    # 1. training images/s of each contender's real loop, batch 64 and 128 (interleaved, so drift hits all alike)
    rows = {}
    for bs in (64, 128):
        for name, c in C.items():
            r = B.step_times(c, bs, n_steps=R)
            rows[(name, bs)] = r
            print(f"  train {name} batch {bs}: median {statistics.median(r['times']):.3f} s/step", flush=True)
    train = []
    for (name, bs), r in rows.items():
        ips = [bs / t for t in r["times"]]
        base = statistics.median([bs / t for t in rows[("course", bs)]["times"]])
        train.append({"contender": name, "batch": bs, "images_per_s": B.median_spread(ips), "s_per_step": B.median_spread(r["times"]),
                      "ratio_to_course": statistics.median(ips) / base, "peak_mem_mib": r["peak_mem_mib"], "memory_method": r["memory_method"]})
    out["train"] = train

    # 2. the hardware limit: FLOPs of one training step (forward + backward, FlopCounterMode) / the step's median time at batch 64
    m, dev = report["machine"], B.device()
    prec = B.course_precision(json.loads(args.course_overrides) if args.course_overrides else None)
    threads = torch.get_num_threads()
    if dev.type == "cuda":              # the datasheet's dense peak in the course model's precision (bf16 tensor cores, or fp32)
        g = m["gpu"] or {}
        tflops = g.get("peak_bf16_tflops") if prec == "bf16" else g.get("peak_fp32_tflops")
        peak = 1000 * tflops if tflops else None
    else:
        peak = m["peak_gflops_per_thread"] * threads if m["peak_gflops_per_thread"] else None
    hw = []
    for name, c in C.items():
        flops = c.flops(64)
        t = statistics.median(rows[(name, 64)]["times"])
        achieved = flops / t / 1e9
        hw.append({"contender": name, "gflop_per_step": flops / 1e9, "s_per_step": t, "achieved_gflops": achieved,
                   "peak_gflops": peak, "fraction_of_peak": achieved / peak if peak else None})
    out["hardware"] = {"rows": hw, "threads": threads, "peak_gflops": peak, "device": dev.type,
                       "note": "FLOPs counted by torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions, 2 per multiply-add; "
                               "elementwise ops, norms and the optimizer are not counted) for the loss's forward and backward; "
                               "time = the whole step of the real loop (optimizer, EMA, callbacks included)" +
                               (f"; the course model trains in bf16 autocast (the demo's mixed_precision='fastest' on this CPU) while the peak is "
                                "float32's, so its fraction compares with float32's limit, not bf16's; the peers train in float32" if prec == "bf16" and dev.type == "cpu" else "") +
                               (f"; peak: the GPU's datasheet dense {'bf16 tensor-core' if prec == 'bf16' else 'fp32'} throughput ({(m['gpu'] or {}).get('peak_key')}); "
                                f"all contenders train in {prec}" if dev.type == "cuda" else "")}

    # 3. sampling images/s: the same (untrained) demo UNet driven by the course's and diffusers' schedulers through the course pipeline,
    #    and the scheduler's share of a step with the model replaced by an identity
    torch.manual_seed(0)
    net = demo_config().build_model().eval().to(dev)
    net.image_shape = (1, 28, 28)
    ours_ddpm = make_scheduler(demo_config())
    ours_ddim = with_sampler(DDPMPipeline(net, ours_ddpm), "ddim").scheduler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = {"DDPM": TheirDDPM.from_config(dict(ours_ddpm.config)), "DDIM": TheirDDIM.from_config(dict(ours_ddim.config))}
    ours = {"DDPM": ours_ddpm, "DDIM": ours_ddim}
    cases = [("DDIM", 50, args.ddim_batch), ("DDIM", 20, args.ddim_batch), ("DDPM", 1000, args.ddpm_batch)]
    sampling = []
    for sampler, steps, bs in cases:
        for lib, scheds in (("course", ours), ("diffusers", theirs)):
            sched = scheds[sampler]
            pipe, ident = DDPMPipeline(net, sched), DDPMPipeline(Identity().to(dev), sched, image_shape=(1, 28, 28))
            call = lambda p: (lambda: p(bs, steps, generator=torch.Generator().manual_seed(0)))
            reps, warm = (max(1, R // 2), 0) if sampler == "DDPM" else (R, 1)      # 1,000 steps: no warm-up call needed
            with B.peak_memory() as mem:
                t_model = B.time_calls(call(pipe), reps, warm)
            t_id = B.time_calls(call(ident), reps, warm)
            share = statistics.median(t_id) / statistics.median(t_model)
            sampling.append({"sampler": f"{sampler}-{steps}", "scheduler": lib, "batch": bs, "images_per_s": B.median_spread([bs / t for t in t_model]),
                             "ms_per_step": B.median_spread([1000 * t / steps for t in t_model]),
                             "identity_us_per_step": 1e6 * statistics.median(t_id) / steps, "scheduler_share": share,
                             "peak_mem_mib": mem.mib})
            print(f"  sample {sampler}-{steps} {lib}: {bs / statistics.median(t_model):.1f} images/s, scheduler share {100 * share:.2f}%", flush=True)
    out["sampling"] = sampling

    # 4. time against image size for the course UNet: a training step (forward, backward, AdamW) and a sampling forward, batch 64
    sizes = []
    for size in (28, 32, 64):
        torch.manual_seed(0)
        net = demo_config().build_model().train().to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        x, t = torch.randn(64, 1, size, size, device=dev), torch.randint(0, 1000, (64,), device=dev)
        def step():
            loss = (net(x, t) - x).pow(2).mean(); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        def fwd():
            with torch.no_grad(): net(x, t)
        with B.peak_memory() as mem:
            ts = B.time_calls(step, R)
        tf = B.time_calls(fwd, R)
        sizes.append({"size": size, "train_s": B.median_spread(ts), "forward_s": B.median_spread(tf), "train_peak_mem_mib": mem.mib})
    base = sizes[0]
    for r in sizes:
        px = (r["size"] / 28) ** 2
        r["pixels_ratio"] = px
        r["train_time_ratio"] = r["train_s"]["median"] / base["train_s"]["median"]
        r["forward_time_ratio"] = r["forward_s"]["median"] / base["forward_s"]["median"]
    out["image_size"] = sizes
    return out


def load_lrs(C, path):
    p = Path(path)
    lrs = {name: (c.lr_default, c.lr_default_source + (" (not swept)" if p.exists() else " (no sweep file)")) for name, c in C.items()}
    if p.exists():
        sweep = json.loads(p.read_text())
        for name, lr in sweep.get("chosen", {}).items():
            if name in lrs: lrs[name] = (lr, f"make bench-sweep ({p.name}: budget {sweep['budget']:g} s, N={sweep['n']}, {sweep['created']})")
    else:
        print(f"bench: no {p}: the peers train at their default learning rates; run `make bench-sweep` first to tune them", flush=True)
    if "lr" in getattr(C["course"], "overrides", {}): lrs["course"] = (C["course"].overrides["lr"], "--course-overrides")
    return lrs


def headline(C, args, report):
    from diffusion_course.metrics import load_or_train_classifier
    clf = load_or_train_classifier(progress=False)
    lrs = load_lrs(C, args.lrs)
    cal_s = max(4.0, 0.04 * args.budget)
    cal = {}
    for name, c in C.items():
        cal[name] = B.calibrate(c, args.budget, cal_s, lrs[name][0])
        print(f"  calibration {name}: {cal[name]['s_per_step']:.3f} s/step -> {cal[name]['steps']} steps in {args.budget:g} s", flush=True)
    runs = []
    def one(name, seed):
        r = B.train_and_score(C[name], cal[name]["steps"], lrs[name][0], seed, args.n, args.steps, clf)
        if "error" in r: print(f"  {name} seed {seed}: FAILED after {r['train_s']:.1f} s: {r['error']}", flush=True); runs.append(r); return r
        print(f"  {name} seed {seed}: {r['steps']} steps in {r['train_s']:.1f} s, FID {r['fid']:.2f} (floor {r['fid_floor']:.2f}), "
              f"sampling {r['sample_s']:.1f} s", flush=True)
        runs.append(r)
        return r
    first = {name: one(name, 0) for name in C}
    peers = [n for n in C if n != "course"]
    fid_or_inf = lambda r: r["fid"] if math.isfinite(r["fid"]) else float("inf")
    best_peer = min(peers, key=lambda n: fid_or_inf(first[n])) if peers else None
    again = list(C) if args.all_seeds else ["course"] + ([best_peer] if best_peer else [])
    per_run = {n: first[n]["train_s"] + (first[n]["sample_s"] if math.isfinite(first[n]["sample_s"]) else 0) + first[n]["score_s"] for n in C}
    left = sum(per_run[n] for n in again) * (args.seeds - 1)
    print(f"  projected: the remaining {len(again) * (args.seeds - 1)} runs take about {left:.0f} s "
          f"(this run's total then about {time.perf_counter() - report['t0'] + left:.0f} s)", flush=True)
    for seed in range(1, args.seeds):
        for name in again: one(name, seed)
    floors = [r["fid_floor"] for r in runs if math.isfinite(r["fid_floor"])]
    floor = floors[0] if floors else float("nan")
    kid_floor = next((r["kid_floor"] for r in runs if math.isfinite(r["kid_floor"])), float("nan"))
    rows = []
    for name, c in C.items():
        rs = [r for r in runs if r["contender"] == name]
        fids = [r["fid"] for r in rs]
        fid = B.median_spread(fids)
        rows.append({"contender": name, "label": c.label, "params": c.params(), "lr": lrs[name][0], "lr_source": lrs[name][1],
                     "steps": cal[name]["steps"], "seeds": [r["seed"] for r in rs], "fid": fid, "errors": [r["error"] for r in rs if "error" in r],
                     "fid_over_floor": fid["median"] / floor, "kid": B.median_spread([r["kid"] for r in rs]),
                     "train_s": B.median_spread([r["train_s"] for r in rs]), "sample_s": B.median_spread([r["sample_s"] for r in rs]),
                     "final_loss": B.median_spread([r["final_loss"] for r in rs]), "describe": c.describe()})
    course = next(r for r in rows if r["contender"] == "course")
    for r in rows: r["fid_ratio_to_course"] = r["fid"]["median"] / course["fid"]["median"]
    demo = {"fid": course["fid"]["median"], "fid_floor": floor, "ratio": course["fid_over_floor"], "within_2x": course["fid_over_floor"] <= 2,
            "budget_s": args.budget, "at_most_10_min": args.budget <= 600}
    return {"calibration": cal, "calibration_seconds": cal_s, "runs": runs, "rows": rows, "best_peer": best_peer, "fid_floor": floor,
            "kid_floor": kid_floor, "demo_vs_floor": demo}


def _mem(r: dict, key: str = "peak_mem_mib"):
    "A peak-memory figure of a row (reports written before the CUDA mode called it peak_rss_mib)."
    return r.get(key, r.get(key.replace("mem", "rss")))

def markdown(report) -> str:
    a, m = report["args"], report["machine"]
    g = m.get("gpu") if report.get("device", "cpu").startswith("cuda") else None
    L = [f"# Benchmark: {report['created']}", ""]
    if a.get("note"): L += [f"**{a['note']}**", ""]
    L += [f"Command: `{report['command']}`; total {report['total_s']:.0f} s; load average (1 min) at start {report['load_start']:.2f}, "
          f"at end {report['load_end']:.2f} (a load above the thread count means other processes shared the CPUs: the timings are then not valid).", "",
          "## Machine", "",
          B.md_table(["CPU", "logical CPUs", "physical cores", "clock", "SIMD flags", "torch", "threads", "peak fp32 (threads used)"],
                     [[m["cpu_model"], m["logical_cpus"], m["physical_cores"], f"{m['ghz_used']} GHz", " ".join(m["simd_flags"]),
                       m["torch"], f"{m['torch_threads']} (OMP_NUM_THREADS={m['OMP_NUM_THREADS']})",
                       f"{B.fmt(m['peak_gflops_per_thread'] * a['threads'] if m['peak_gflops_per_thread'] else None, 1)} GFLOP/s"]]), "",
          *([B.md_table(["GPU (the device used)", "compute capability", "memory", "CUDA", "datasheet dense peak bf16 / fp32"],
                        [[g["name"], g["capability"], f"{g['memory_gib']:.0f} GiB", g["cuda"],
                          f"{g['peak_bf16_tflops']} / {g['peak_fp32_tflops']} TFLOP/s" if g["peak_key"] else "not in GPU_PEAK_TFLOPS"]]), ""] if g else []),
          f"Device: **{report.get('device', 'cpu')}**. Peak assumption (CPU): {m['peak_assumption']}. diffusers {m['diffusers']}, denoising-diffusion-pytorch {m['denoising-diffusion-pytorch']}, Python {m['python']}.", ""]
    h = report.get("headline")
    if h:
        L += [f"## Quality per budget (the headline)", "",
              f"Each contender trained for the same wall-clock budget of **{a['budget']:g} s** (steps = (budget - the loop's fixed overhead) / "
              f"the step time measured just before, {h['calibration_seconds']:.0f} s per contender), batch 64, {a['threads']} threads; then N = {a['n']} images "
              f"sampled with {a['steps']} steps of its own sampler and scored by the shared evaluation (`diffusion_course.evaluate.evaluate_images`: "
              f"FID of the course classifier's features against the 10,000 test images). Median [min, max] over the seeds listed; "
              + (f"the best peer (lower seed-0 FID: **{h['best_peer']}**) and the course model get {a['seeds']} seeds." if h["best_peer"] else
               f"{a['seeds']} seeds."), "",
              B.md_table(["contender", "params", "lr (source)", "steps", "train s", "FID", "FID / floor", "FID / course", "KID", "seeds", "sampling s", "final loss"],
                         [[r["label"], f"{r['params']:,}", f"{r['lr']:g} ({r['lr_source']})", r["steps"], B.spread(r["train_s"], 1), B.spread(r["fid"]),
                           B.fmt(r["fid_over_floor"]), B.fmt(r["fid_ratio_to_course"]), B.spread(r["kid"], 4), ",".join(map(str, r["seeds"])),
                           B.spread(r["sample_s"], 1), B.spread(r["final_loss"], 4)] for r in h["rows"]]
                         + [["held-out real images (the floor at this N)", "", "", "", "", B.fmt(h["fid_floor"]), "1.00", "", B.fmt(h["kid_floor"], 4), "", "", ""]]), "",
              "Final loss: mean of the last 10% of steps (the course loops' epsilon MSE; denoising-diffusion-pytorch's is a weighted v-MSE, not comparable).", ""]
        d = h["demo_vs_floor"]
        L += [f"**The demo model against the real-data floor:** FID {d['fid']:.2f} vs floor {d['fid_floor']:.2f} at N = {a['n']}: "
              f"{d['ratio']:.1f}x the floor after {d['budget_s']:g} s of training ({'within' if d['within_2x'] else 'not within'} 2x"
              f"{'' if d['at_most_10_min'] else '; budget above 10 minutes'}).", ""]
        errs = [f"- {r['contender']}: {e}" for r in h["rows"] for e in r.get("errors", [])]
        if errs: L += ["**Failed runs** (left out of the medians):", ""] + errs + [""]
        L += ["Contenders:", ""] + [f"- **{r['contender']}**: {r['describe']}" for r in h["rows"]] + [""]
    t = report.get("throughput")
    if t:
        L += ["## Training throughput", "", f"The real training loop of each contender, {a['repeats']} timed steps after {B.WARM} untimed; "
              "images/s median [min, max]; ratio to the course model at the same batch, measured in this run; peak memory: the peak of the steps "
              f"above the memory just before the first step (data and model not counted, the optimizer's state is; {t['train'][0]['memory_method']}).", "",
              B.md_table(["contender", "batch", "images/s", "s/step", "ratio to course", "peak memory MiB"],
                         [[r["contender"], r["batch"], B.spread(r["images_per_s"], 1), B.spread(r["s_per_step"], 3), B.fmt(r["ratio_to_course"]),
                           B.fmt(_mem(r), 0)] for r in t["train"]]), "",
              "## The hardware limit", "", t["hardware"]["note"] + (f"; peak = {t['hardware']['threads']} threads x {m['ghz_used']} GHz x {m['flops_per_cycle']} FLOP/cycle."
                                                              if t["hardware"].get("device", "cpu") == "cpu" else "."), "",
              B.md_table(["contender", "GFLOP per step (batch 64)", "s/step", "achieved GFLOP/s", "peak GFLOP/s", "fraction of peak"],
                         [[r["contender"], B.fmt(r["gflop_per_step"]), B.fmt(r["s_per_step"], 3), B.fmt(r["achieved_gflops"], 1), B.fmt(r["peak_gflops"], 1),
                           f"{100 * r['fraction_of_peak']:.1f}%" if r["fraction_of_peak"] else "-"] for r in t["hardware"]["rows"]]), "",
              "## Sampling throughput and the scheduler's share", "",
              "The same untrained demo UNet through the course's `DDPMPipeline`, with the course's schedulers and diffusers' (built from the same config). "
              "Scheduler share: the time of the same loop with the model replaced by an identity over the time with the model (goal < 2%). "
              f"Peak memory: the peak of the timed calls above the memory before them. DDPM-1000 with batch {a['ddpm_batch']} (fewer images: 1,000 steps), DDIM with batch {a['ddim_batch']}.", "",
              B.md_table(["sampler", "scheduler", "batch", "images/s", "ms/step", "identity loop us/step", "scheduler share", "< 2%", "peak memory MiB"],
                         [[r["sampler"], r["scheduler"], r["batch"], B.spread(r["images_per_s"], 2), B.spread(r["ms_per_step"], 2), B.fmt(r["identity_us_per_step"], 0),
                           f"{100 * r['scheduler_share']:.2f}%", "yes" if r["scheduler_share"] < 0.02 else "no", B.fmt(_mem(r), 0)] for r in t["sampling"]]), "",
              "## Time against image size (course UNet, batch 64)", "",
              "A training step (forward, backward, AdamW) and a sampling forward pass of the demo UNet on random images; median [min, max] seconds.", "",
              B.md_table(["size", "pixels vs 28x28", "train step s", "x 28x28", "forward s", "x 28x28", "train peak memory MiB"],
                         [[f"{r['size']}x{r['size']}", B.fmt(r["pixels_ratio"]), B.spread(r["train_s"], 3), B.fmt(r["train_time_ratio"]), B.spread(r["forward_s"], 3),
                           B.fmt(r["forward_time_ratio"]), B.fmt(_mem(r, "train_peak_mem_mib"), 0)] for r in t["image_size"]]), ""]
    L += ["## Phase times", "", B.md_table(["phase", "seconds", "load at end"], [[k, f"{v['seconds']:.0f}", f"{v['load']:.2f}"] for k, v in report["phases"].items()]), ""]
    return "\n".join(L)


def render(path):
    "Write <path>.md again from <path>.json (e.g. after changing the tables)."
    path = Path(path)
    report = json.loads(path.read_text())
    md = markdown(report)
    path.with_suffix(".md").write_text(md + "\n")
    print(md)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--render"]: return render(argv[1])
    args = parse_args(argv)
    report_device = B.setup(args, "bench")
    t_start = time.perf_counter()
    report = {"t0": t_start, "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": " ".join(["python"] + sys.argv),
              "args": vars(args), "machine": {**B.machine(), "gpu": B.gpu()}, "device": report_device, "load_start": B.loadavg(), "phases": {}}
    C = B.contenders(args.ddp_dim, json.loads(args.course_overrides) if args.course_overrides else None)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    if "course" not in names or any(n not in C for n in names): sys.exit(f"bench: --contenders must name course and any of hf, ddp, got {args.contenders!r}")
    C = {n: C[n] for n in C if n in names}
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for s in sections:
        if s not in ("throughput", "headline"): sys.exit(f"bench: unknown section {s!r}: choose from throughput, headline")
    print(f"bench: device {report_device}, {args.threads} threads, budget {args.budget:g} s, N={args.n}, {args.steps} sampling steps, {args.seeds} seeds; load {report['load_start']:.2f}", flush=True)
    for s in sections:
        t0 = time.perf_counter()
        print(f"bench: {s} ...", flush=True)
        report[s] = throughput(C, args, report) if s == "throughput" else headline(C, args, report)
        report["phases"][s] = {"seconds": time.perf_counter() - t0, "load": B.loadavg()}
    report["total_s"], report["load_end"] = time.perf_counter() - t_start, B.loadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")     # first: the numbers survive a rendering bug
    md = markdown(report)
    out.with_suffix(".md").write_text(md + "\n")
    print("\n" + md)
    print(f"bench: wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({report['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
