#!/usr/bin/env python3
"""Collect measured `make demo` runs into nbs/results/05c_demo.json, the file README's demo table and chapter 05c's comparison
of recipes are generated from.

A run is a folder written by `diffusion-course demo --out DIR ...` (its results.json: the demo's own evaluation, at the demo's
sampling seed 1) plus any evaluations of the same weights at other sampling seeds, written next to it by

    diffusion-course evaluate --checkpoint DIR/model --sampler S --steps N --count 500 --seed K --json DIR/eval_seedK.json

usage: tools/demo_results.py NAME=DIR [NAME=DIR ...]     e.g. tools/demo_results.py edm_demo=runs/demo_edm demo=runs/demo_lsimple
Each NAME replaces that recipe's entry in the file; other entries are kept."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "nbs" / "results" / "05c_demo.json"
KEEP = ("fid", "kid_mean", "kid_std", "inception_score", "count", "num_inference_steps")


def scores(ev: dict) -> dict:
    return {k: (round(ev[k], 6) if isinstance(ev[k], float) else ev[k]) for k in KEEP}


def collect(folder: Path) -> dict:
    r = json.loads((folder / "results.json").read_text())
    model = r["evaluations"]["model"]
    seeds = {str(model.get("seed", 1)): scores(model)}
    evals = []
    for f in sorted(folder.glob("eval_seed*.json")):
        ev = json.loads(f.read_text())
        if ev["count"] != model["count"] or ev["num_inference_steps"] != model["num_inference_steps"] or ev["sampler"] != model.get("sampler", ev["sampler"]):
            raise SystemExit(f"demo_results: {f} is not the demo's evaluation (count, steps or sampler differ)")
        seeds[str(ev["seed"])] = scores(ev)
        evals.append(f"diffusion-course evaluate --checkpoint {folder}/model --sampler {r['recipe']['sampler']} --steps {ev['num_inference_steps']} "
                     f"--count {ev['count']} --seed {ev['seed']} --json {folder}/{f.name}")
    fids = [s["fid"] for s in seeds.values()]
    return dict(command=r["command"], evaluate_commands=evals, recipe=r["recipe"], mixed_precision=r["mixed_precision"], device=r["device"],
                steps=r["runs"]["model"]["steps"], train_seconds=r["runs"]["model"]["train_seconds"], total_seconds=r.get("total_seconds"),
                sampling_seconds=round(model["seconds"]["sampling"], 1), budget=r.get("budget"),
                baseline=dict(steps=r["runs"]["baseline_1pct"]["steps"], fid=round(r["runs"]["baseline_1pct"]["fid"], 6)),
                floor=dict(fid=round(model["fid_floor"], 6), kid=round(model["kid_floor"], 6), inception_score=round(model["inception_score_floor"], 6)),
                seeds=dict(sorted(seeds.items())), fid_mean=round(sum(fids) / len(fids), 6), fid_min=round(min(fids), 6), fid_max=round(max(fids), 6))


def main(argv) -> int:
    if not argv or any("=" not in a for a in argv): print(__doc__); return 2
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    recipes = data.setdefault("recipes", {})
    for a in argv:
        name, folder = a.split("=", 1)
        recipes[name] = collect(Path(folder))
        print(f"demo_results: {name}: FID {recipes[name]['fid_mean']:.2f} ({recipes[name]['fid_min']:.2f}-{recipes[name]['fid_max']:.2f}) "
              f"over sampling seeds {', '.join(recipes[name]['seeds'])}")
    data["_reproduce"] = "each recipe's command and evaluate_commands, then tools/demo_results.py NAME=DIR"
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"demo_results: wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
