"""Levers for the demo model (issue 13): train chapter 04e's configuration with `changes` (e.g. bf16, a wider network, another
learning rate; the warm-up scaled to the run as the demo's) for a fixed number of steps, then score
the EMA model with several samplers by the shared evaluation at one N. Steps, not seconds: the quality of a setting does not
depend on how busy the machine is, so several settings can train side by side (one thread each); the step rate of each setting
is measured separately on a quiet machine (`--time-steps`), and steps x seconds/step gives its wall clock.

    .venv/bin/python bench/levers.py --name base --steps 4700 --changes '{"mixed_precision": "bf16"}'
    .venv/bin/python bench/levers.py --name base --score-only --samplers ddim:100      # score a kept run again
    .venv/bin/python bench/levers.py --time-steps --changes '{"model": {"base_channels": 24}}'
    .venv/bin/python bench/levers.py --table                                          # the results so far, as markdown

Every result is appended, with its command line and the machine's load, to bench/results/levers.jsonl."""
import argparse, json, os, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = Path(os.environ.get("LEVER_RUNS", "/tmp/levers"))


def merged(base: dict, changes: dict) -> dict:
    "demo_config's fields with `changes`; a dict value (the model's settings) is merged key by key."
    out = dict(base)
    for k, v in changes.items(): out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(steps: int, seed: int, changes: dict):
    "Chapter 04e's run (`fashion_mnist_config()`: 16 base channels, float32), scheduled like the demo (warm-up scaled to `steps`), with `changes`."
    from diffusion_course.training import demo_config, fashion_mnist_config
    base = fashion_mnist_config()
    fields = {"model": base.model, "mixed_precision": "no"}
    return demo_config(**merged(fields, {k: v for k, v in changes.items() if k in fields}),
                       **{k: v for k, v in changes.items() if k not in fields}, steps=steps, seed=seed)


def time_steps(cfg, n: int = 30) -> dict:
    "Median seconds per training step of `cfg` and the steps that fit 10 minutes, from the course loop itself (`training.steps_in_budget`)."
    from diffusion_course.training import steps_in_budget
    b = steps_in_budget(cfg, 600, calibration_steps=n, warm_steps=5)
    return {"s_per_step": b["s_per_step"], "overhead_s": b["overhead_s"], "steps_in_10_min": b["steps"], "timed": n}


def sampler_pipeline(pipe, sampler: str):
    "`pipe` with the sampler `ddpm`, `ddim`, or `ddpm-large` (ancestral with sigma^2 = beta, the upper bound, instead of beta_tilde)."
    import copy
    from diffusion_course.pipelines import with_sampler
    from diffusion_course.schedulers import DDPMScheduler
    if sampler != "ddpm-large": return with_sampler(pipe, sampler)
    new = copy.copy(with_sampler(pipe, "ddpm"))
    new.scheduler = DDPMScheduler.from_config({**dict(new.scheduler.config), "variance_type": "fixed_large"})
    return new


def table(path) -> str:
    "The scored runs of `path` (the last record per run name; its samplers merged across re-scorings) as a markdown table, with each setting's step time where timed."
    runs, timing = {}, {}
    key = lambda changes: json.dumps(changes, sort_keys=True)
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "timing": timing[key(r["changes"])] = r; continue
        if r.get("kind") != "score": continue
        old = runs.get(r["name"], {})
        retrained = "train_s" in r and r.get("started") != old.get("started")      # a new training under the same name replaces the old one
        if old and not retrained: r = {**old, "scores": {**old.get("scores", {}), **r["scores"]}}    # more samplers for the same run
        runs[r["name"]] = r
    rows = ["| run | steps | changes to chapter 04e's run | ms/step, 2 threads (steps in 10 min) | FID by sampler:steps (x the floor) |",
            "|---|---|---|---|---|"]
    for name, r in runs.items():
        sc = "; ".join(f"{k} **{v['fid']:.2f}** ({v['fid'] / v['fid_floor']:.1f}x)" for k, v in r["scores"].items())
        floor = next(iter(r["scores"].values()))["fid_floor"] if r["scores"] else float("nan")
        t = timing.get(key(r["changes"]))
        speed = f"{t['s_per_step'] * 1000:.0f} ({int(600 / t['s_per_step'])})" if t and t.get("threads") == 2 else ""
        rows.append(f"| {name} | {r['steps']} | `{json.dumps(r['changes'])}` | {speed} | {sc}; floor {floor:.2f} at N = {r['n']} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=None, help="run folder name under $LEVER_RUNS (default /tmp/levers)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--changes", default="{}", help="JSON: TrainConfig fields to change (model: merged key by key)")
    p.add_argument("--samplers", default="ddpm:50,ddim:50", help="comma-separated sampler:steps to score the EMA model with")
    p.add_argument("--n", type=int, default=500, help="images per score (the floor at the same N)")
    p.add_argument("--score-only", action="store_true", help="score the kept run folder again, do not train")
    p.add_argument("--no-ema", action="store_true", help="score the trained weights instead of their EMA")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the sampled images (the evaluation's generator; default 0)")
    p.add_argument("--time-steps", action="store_true", help="only time the training step of these settings (a quiet machine!)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--out", default=str(HERE / "results" / "levers.jsonl"))
    p.add_argument("--table", action="store_true", help="print the results in --out as a markdown table, and stop")
    a = p.parse_args(argv)
    if a.table: return print(table(a.out))
    import torch
    torch.set_num_threads(a.threads)
    changes = json.loads(a.changes)
    cfg = make_config(a.steps, a.seed, changes)
    record = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "name": a.name, "steps": a.steps, "seed": a.seed,
              "changes": changes, "threads": a.threads, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_start": os.getloadavg()[0]}
    if a.time_steps:
        record.update(time_steps(cfg), kind="timing", load_end=os.getloadavg()[0])
        print(json.dumps(record))
        with open(a.out, "a") as f: f.write(json.dumps(record) + "\n")
        return
    if not a.name: p.error("--name is needed to train or score")
    from diffusion_course.training import train
    from diffusion_course.checkpoints import load_pipeline
    from diffusion_course.evaluate import evaluate_pipeline
    run = RUNS / a.name
    if not a.score_only:
        t0 = time.perf_counter()
        res = train(cfg, run, overwrite=True, progress=False, log=None)
        tail = res.losses[-max(1, len(res.losses) // 10):]
        record.update(train_s=round(time.perf_counter() - t0, 1), final_loss=sum(tail) / len(tail))
    pipe = load_pipeline(run, use_ema=not a.no_ema)
    for spec in a.samplers.split(","):              # one record per sampler, written at once: a stopped run keeps what it scored
        sampler, steps = spec.split(":")
        spec = spec + (" (no EMA)" if a.no_ema else "") + (f" (sampling seed {a.sample_seed})" if a.sample_seed else "")
        ev = evaluate_pipeline(sampler_pipeline(pipe, sampler), count=a.n, num_inference_steps=int(steps), seed=a.sample_seed, progress=False)
        score = {"fid": ev["fid"], "fid_floor": ev["fid_floor"], "kid": ev["kid_mean"], "sampling_s": ev["seconds"]["sampling"]}
        print(f"{a.name} {spec}: FID {ev['fid']:.3f} (floor {ev['fid_floor']:.3f}, {ev['fid'] / ev['fid_floor']:.1f}x)", flush=True)
        with open(a.out, "a") as f: f.write(json.dumps({**record, "kind": "score", "n": a.n, "scores": {spec: score}, "load_end": os.getloadavg()[0]}) + "\n")


if __name__ == "__main__":
    main()
