"""The training loop's safety properties, moved out of the DDPM lesson (chapter 04d): an interrupted run resumes bit for bit,
runs are never clobbered, divergence keeps the last good checkpoint, and two processes follow one."""
import json, os, signal, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

os.environ.setdefault("DIFFUSION_COURSE_DEVICE", "cpu")
from diffusion_course.unet import UNet
from diffusion_course.checkpoints import read_checkpoint, load_model, SAMPLES_DIR, STATE_FILE
from diffusion_course.training import TrainConfig, TrainingDiverged, RunExistsError, train

TINY = TrainConfig(dataset="digits", steps=40, batch_size=16, lr=2e-3, warmup_steps=5, lr_schedule="cosine", checkpoint_every=7,
                   sample_every=20, sample_inference_steps=10, model=dict(base_channels=8, channel_mults=[1, 2], attention_levels=[False, True]))


class CtrlCAt(nn.Module):
    "Wraps a model; presses Ctrl-C (sends SIGINT to this process) during forward call number `at` (None: never)."
    def __init__(self, model, at=None):
        super().__init__(); self.model, self.at, self.calls = model, at, 0
    def forward(self, x, t, **kw):
        self.calls += 1
        if self.calls == self.at: signal.raise_signal(signal.SIGINT)
        return self.model(x, t, **kw)


def wrapped_unet(at=None):
    torch.manual_seed(0)                     # the same initial weights for both runs
    return CtrlCAt(UNet(**TINY.model, sample_size=8), at)


def test_ctrl_c_then_resume_equals_uninterrupted(tmp_path):
    whole = train(TINY, tmp_path / "whole", model=wrapped_unet(), progress=False, log=None)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "halves", model=wrapped_unet(at=18), progress=False, log=None)
    assert load_model(tmp_path / "halves", model=wrapped_unet())[2] == 18       # the step in progress was finished and saved
    halves = train(TINY, tmp_path / "halves", resume=True, model=wrapped_unet(), progress=False, log=None)
    for a, b in [(whole.model, halves.model), (whole.ema_model, halves.ema_model)]:
        for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
            assert k == k2 and torch.equal(v, v2), k
    assert whole.losses == halves.losses
    ta, tb = read_checkpoint(tmp_path / "whole")[0], read_checkpoint(tmp_path / "halves")[0]
    assert sorted(ta) == sorted(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)      # the optimizer state too
    assert sorted(p.name for p in (tmp_path / "whole" / SAMPLES_DIR).iterdir()) == ["step_000020.png", "step_000040.png"]


def test_existing_runs_are_never_clobbered(tmp_path):
    flat = TINY.replace(lr_schedule="constant")
    train(flat, tmp_path / "run", progress=False, log=None)
    with pytest.raises(RunExistsError, match="--overwrite"):
        train(flat, tmp_path / "run", log=None)
    with pytest.raises(ValueError, match="exclude each other"):
        train(flat, tmp_path / "run", resume=True, overwrite=True, log=None)
    (tmp_path / "run" / "my_notes.txt").write_text("not ours")
    train(flat.replace(steps=3, sample_every=0), tmp_path / "run", overwrite=True, progress=False, log=None)
    assert (tmp_path / "run" / "my_notes.txt").read_text() == "not ours"
    assert load_model(tmp_path / "run")[2] == 3
    assert not (tmp_path / "run" / SAMPLES_DIR).exists()              # the old run's sample grids are gone
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        train(flat, tmp_path / "nothing-here", resume=True, log=None)
    with pytest.raises(ValueError, match="fewer than the 3 steps"):
        train(flat.replace(steps=2, sample_every=0), tmp_path / "run", resume=True, log=None)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged):
        train(TINY.replace(lr=1e30, warmup_steps=0, checkpoint_every=1), tmp_path / "nan", progress=False, log=None)
    m, _, step = load_model(tmp_path / "nan")
    assert all(torch.isfinite(p).all() for p in m.parameters())


class NaNModel(nn.Module):
    def __init__(self): super().__init__(); self.w = nn.Parameter(torch.ones(1))
    def forward(self, x, t, **kw): return x * self.w * float("nan")


def test_nan_model_is_caught_at_step_0(tmp_path):
    with pytest.raises(TrainingDiverged, match="at step 0"):
        train(TINY, tmp_path / "nan2", model=NaNModel(), progress=False, log=None)
    assert read_checkpoint(tmp_path / "nan2")[1]["step"] == "0"


def test_two_processes_follow_one(tmp_path):
    "torchrun with 2 CPU processes (gloo): each computes the loss of its half of the global batch; the losses match one process."
    flat = TINY.replace(lr_schedule="constant", sample_every=0, steps=10)
    script = tmp_path / "ddp_train.py"
    script.write_text("import sys, torch\nfrom diffusion_course.training import TrainConfig, train\ntorch.set_num_threads(1)\n"
                      f"cfg = TrainConfig.from_json({flat.to_json()!r})\ntrain(cfg, sys.argv[1], progress=False)\n")
    single = train(flat, tmp_path / "ddp_1", progress=False, log=None)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", str(script), str(tmp_path / "ddp_2")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(l.startswith("training") for l in proc.stdout.splitlines()) == 1      # printed by the main process only
    state = json.loads((tmp_path / "ddp_2" / STATE_FILE).read_text())
    assert state["world_size"] == 2
    np.testing.assert_allclose(state["losses"], single.losses, atol=2e-5)             # achieved 1.7e-6 (losses about 1)
