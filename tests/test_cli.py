"""The `diffusion-course` console script, run as a user runs it: a separate process, real files.

Small runs on the 8x8 digits keep this fast; the properties checked are the ones the command promises:
one-line errors with exit code 2, nothing overwritten, exact resume after a kill, NaN handling.
"""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

BIN = Path(sys.executable).parent
CLI = str(BIN / "diffusion-course")
ENV = {**os.environ, "DIFFUSION_COURSE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
SMALL = ["--dataset", "digits", "--batch-size", "32", "--base-channels", "8", "--no-progress", "--seed", "3"]


def cli(*args, check=None, timeout=600):
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}"
    return p


def weights(run_dir):
    return load_file(str(Path(run_dir) / "checkpoint.safetensors"))


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def test_console_script_installed():
    assert Path(CLI).exists(), "pip install did not create the diffusion-course console script"
    p = cli("--help", check=0)
    for sub in ("train", "sample", "evaluate", "demo"):
        assert sub in p.stdout


@pytest.mark.parametrize("args, words", [
    (["train", "--dataset", "cifar10", "--out", "{tmp}/r"], ["unknown dataset", "fashion_mnist"]),
    (["train", "--steps", "0", "--out", "{tmp}/r"], ["--steps", "positive"]),
    (["train", "--steps", "-3", "--out", "{tmp}/r"], ["--steps", "positive"]),
    (["train", "--batch-size", "abc", "--out", "{tmp}/r"], ["--batch-size"]),
    (["sample", "--checkpoint", "{tmp}/nope", "--out", "{tmp}/s.png"], ["nope"]),
    (["evaluate", "--checkpoint", "{tmp}/nope"], ["nope"]),
    (["sample", "--checkpoint", "{tmp}/nope", "--out", "{tmp}/s.png", "--sampler", "magic"], ["--sampler"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, words):
    p = cli(*[a.format(tmp=tmp_path) for a in args])
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words: assert w in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []          # a refused command creates nothing


def test_train_sample_and_refusals(tmp_path):
    run = tmp_path / "run"
    cli("train", *SMALL, "--steps", "12", "--checkpoint-every", "5", "--out", run, check=0)
    for f in ("config.json", "state.json", "checkpoint.safetensors"):
        assert (run / f).exists(), f
    before = snapshot(run)
    # an existing run is never clobbered by accident
    p = cli("train", *SMALL, "--steps", "12", "--out", run)
    assert p.returncode == 2 and "--resume" in p.stderr and "--overwrite" in p.stderr
    assert snapshot(run) == before
    # sampling writes a PNG grid, and refuses to overwrite it
    png = tmp_path / "grid.png"
    cli("sample", "--checkpoint", run, "--steps", "10", "--count", "9", "--seed", "1", "--out", png, check=0)
    from PIL import Image
    im = Image.open(png)
    assert im.size[0] >= 256 and im.size[1] >= 256, im.size          # 3 x 3 digits of 8x8 pixels, scaled so a person can see them
    first = png.read_bytes()
    p = cli("sample", "--checkpoint", run, "--steps", "10", "--count", "9", "--out", png)
    assert p.returncode == 2 and "already exists" in p.stderr and png.read_bytes() == first
    # same seed, same images; --overwrite is explicit
    cli("sample", "--checkpoint", run, "--steps", "10", "--count", "9", "--seed", "1", "--out", png, "--overwrite", check=0)
    assert png.read_bytes() == first
    p = cli("sample", "--checkpoint", run, "--steps", "5000", "--count", "4", "--out", tmp_path / "x.png")
    assert p.returncode == 2 and "--steps" in p.stderr
    # chapter 14's samplers: each writes its grid, deterministic ones depend on the seed only; heun counts its network calls
    grids = {}
    for sampler in ("euler", "euler_churn", "heun", "dpmpp_2m"):
        png_s = tmp_path / f"{sampler}.png"
        p = cli("sample", "--checkpoint", run, "--sampler", sampler, "--steps", "4", "--count", "4", "--seed", "2", "--out", png_s, check=0)
        assert f"({sampler}, 4 steps" in p.stdout and (sampler != "heun" or "7 network calls" in p.stdout), p.stdout
        grids[sampler] = png_s.read_bytes()
    assert len(set(grids.values())) == 4                               # four different solvers, four different grids
    p = cli("sample", "--checkpoint", run, "--sampler", "lms", "--count", "4", "--out", tmp_path / "lms.png")
    assert p.returncode == 2 and "--sampler" in p.stderr and "dpmpp_2m" in p.stderr and not (tmp_path / "lms.png").exists()
    p = cli("sample", "--checkpoint", run, "--sampler", "heun", "--eta", "0.5", "--count", "4", "--out", tmp_path / "eta.png")
    assert p.returncode == 2 and "--eta" in p.stderr and not (tmp_path / "eta.png").exists()
    # --overwrite starts a fresh run
    cli("train", *SMALL, "--steps", "4", "--checkpoint-every", "2", "--out", run, "--overwrite", check=0)
    assert json.loads((run / "state.json").read_text())["step"] == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused(tmp_path, damage):
    run = tmp_path / "run"
    cli("train", *SMALL, "--steps", "3", "--out", run, check=0)
    ck = run / "checkpoint.safetensors"
    data = ck.read_bytes()
    ck.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    p = cli("sample", "--checkpoint", run, "--count", "2", "--steps", "2", "--out", tmp_path / "s.png")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "corrupt" in p.stderr or "truncated" in p.stderr, p.stderr
    assert not (tmp_path / "s.png").exists()


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    "Kill training mid-run, resume it: the final weights equal those of a run that was never interrupted."
    steps, every = 60, 10
    ref = tmp_path / "ref"
    cli("train", *SMALL, "--steps", steps, "--checkpoint-every", every, "--out", ref, check=0)
    run = tmp_path / "killed"
    proc = subprocess.Popen([CLI, "train", *SMALL, "--steps", str(steps), "--checkpoint-every", str(every), "--out", str(run)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= every: break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["step"]
    assert every <= done <= steps and done % every == 0 or done == steps
    cli("train", *SMALL, "--steps", steps, "--checkpoint-every", every, "--out", run, "--resume", check=0)
    a, b = weights(ref), weights(run)
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k
    assert json.loads(state.read_text())["losses"] == json.loads((ref / "state.json").read_text())["losses"]


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    p = cli("train", *SMALL, "--steps", "200", "--checkpoint-every", "1", "--lr", "1e38", "--out", run)
    assert p.returncode == 1 and "diverged" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    state = json.loads((run / "state.json").read_text())
    assert 1 <= state["step"] < 200                      # stopped early, after at least one good checkpoint
    kept = weights(run)
    assert all(torch.isfinite(v).all() for v in kept.values() if v.is_floating_point())


def test_evaluate_end_to_end_and_json_is_never_overwritten(tmp_path):
    "The shared evaluation through the command line, on a tiny Fashion-MNIST run: JSON written once, then refused."
    run = tmp_path / "fm"
    cli("train", "--dataset", "fashion_mnist", "--subset", "256", "--batch-size", "16", "--base-channels", "8", "--steps", "3",
        "--no-progress", "--out", run, check=0)
    out = tmp_path / "fid.json"
    p = cli("evaluate", "--checkpoint", run, "--count", "20", "--steps", "5", "--json", out, check=0)
    res = json.loads(out.read_text())
    for key in ("fid", "fid_floor", "inception_score", "count", "num_inference_steps", "is_splits", "reference"):
        assert key in res, key
    assert res["count"] == 20 and res["num_inference_steps"] == 5 and res["fid"] > res["fid_floor"] >= 0
    assert "FID" in p.stdout and "floor" in p.stdout, p.stdout
    before = out.read_bytes()
    p = cli("evaluate", "--checkpoint", run, "--count", "20", "--steps", "5", "--json", out)
    assert p.returncode == 2 and "already exists" in p.stderr and out.read_bytes() == before, p.stderr
    p = cli("evaluate", "--checkpoint", run, "--sampler", "ddim", "--eta", "0", "--count", "20", "--steps", "5", check=0)
    assert "FID" in p.stdout
    p = cli("evaluate", "--checkpoint", run, "--sampler", "dpmpp_2m", "--count", "20", "--steps", "5", check=0)    # chapter 14's solvers evaluate too
    assert "FID" in p.stdout
    # chapter 14b: EDM's preset trains the wrapped UNet (--base-channels sets the wrapped network's width) and samples with any sampler
    edm = tmp_path / "edm"
    cli("train", "--preset", "edm", "--subset", "256", "--batch-size", "16", "--base-channels", "8", "--steps", "3", "--no-progress", "--out", edm, check=0)
    saved = json.loads((edm / "config.json").read_text())
    assert saved["objective"] == "edm" and saved["model_class"] == "EDMPrecond" and saved["model"]["network_config"]["base_channels"] == 8, saved
    for sampler in ("ddpm", "heun"):
        cli("sample", "--checkpoint", edm, "--sampler", sampler, "--steps", "3", "--count", "4", "--out", tmp_path / f"edm_{sampler}.png", check=0)


def test_conditional_train_and_guided_sample_refuse_unknown_labels(tmp_path):
    "`train --conditional` then `sample --label K --guidance W`; a label the run does not have, or a label on an unconditional run, exits 2."
    cli("train", *SMALL, "--steps", "6", "--conditional", "--checkpoint-every", "6", "--out", tmp_path / "cond", check=0)
    cli("sample", "--checkpoint", tmp_path / "cond", "--label", "3", "--guidance", "2", "--steps", "5", "--count", "4",
        "--out", tmp_path / "three.png", check=0)
    assert (tmp_path / "three.png").exists()
    p = cli("sample", "--checkpoint", tmp_path / "cond", "--label", "10", "--steps", "5", "--count", "4", "--out", tmp_path / "ten.png", check=2)
    assert "not a class of this run" in p.stderr and "0..9" in p.stderr and not (tmp_path / "ten.png").exists()
    cli("train", *SMALL, "--steps", "3", "--checkpoint-every", "3", "--out", tmp_path / "plain", check=0)
    p = cli("sample", "--checkpoint", tmp_path / "plain", "--label", "1", "--steps", "5", "--count", "4", "--out", tmp_path / "x.png", check=2)
    assert "class-conditional" in p.stderr


def test_text_to_image_preset_and_prompts(tmp_path):
    "`train --preset text2img` (here on chapter 13's small autoencoder, for speed) then `sample --prompt ... --prompt ...`: one row per prompt; a text run refuses to sample without a prompt or to be evaluated."
    run = tmp_path / "text"
    cli("train", "--preset", "text2img", "--dataset", "fashion_mnist_latents_small", "--steps", "3", "--batch-size", "8",
        "--checkpoint-every", "3", "--subset", "256", "--no-progress", "--out", run, check=0)
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["objective"], cfg["model_class"], cfg["dataset"]) == ("text", "TextUNet", "fashion_mnist_latents_small")
    p = cli("sample", "--checkpoint", run, "--prompt", "an ankle boot", "--prompt", "a pair of jeans", "--guidance", "3",
            "--steps", "4", "--count", "3", "--no-progress", "--out", tmp_path / "rows.png", check=0)
    assert "wrote 6 samples" in p.stdout
    from PIL import Image
    w, h = Image.open(tmp_path / "rows.png").size
    assert w > h, (w, h)                           # 2 rows of 3
    p = cli("sample", "--checkpoint", run, "--steps", "4", "--out", tmp_path / "none.png", check=2)
    assert "--prompt" in p.stderr and not (tmp_path / "none.png").exists()
    p = cli("evaluate", "--checkpoint", run, "--steps", "4", "--count", "10", check=2)
    assert "LatentTextPipeline, whose samples need prompt" in p.stderr


def test_controlnet_preset_and_control_image(tmp_path):
    "`train --preset controlnet --base-run RUN` then `sample --control edges.png`; the base's weights are untouched and a ControlNet run needs --control."
    base = tmp_path / "base"
    cli("train", *SMALL, "--steps", "4", "--checkpoint-every", "4", "--out", base, check=0)
    before = weights(base)
    cli("train", "--preset", "controlnet", "--base-run", base, "--steps", "3", "--batch-size", "8", "--no-progress", "--out", tmp_path / "cn", check=0)
    after = weights(base)
    assert all(torch.equal(before[k], after[k]) for k in before)
    cn = weights(tmp_path / "cn")
    base_ema = {k[len("ema/"):]: v for k, v in before.items() if k.startswith("ema/")}
    assert all(torch.equal(cn[f"model/unet.{k}"], v) for k, v in base_ema.items())   # the frozen base is inside the ControlNet run, unchanged
    from PIL import Image
    Image.fromarray(__import__("numpy").eye(8, dtype="uint8") * 255).save(tmp_path / "edges.png")
    cli("sample", "--checkpoint", tmp_path / "cn", "--control", tmp_path / "edges.png", "--steps", "4", "--count", "2", "--no-progress",
        "--out", tmp_path / "c.png", check=0)
    p = cli("sample", "--checkpoint", tmp_path / "cn", "--steps", "4", "--out", tmp_path / "d.png", check=2)
    assert "--control" in p.stderr and not (tmp_path / "d.png").exists()
