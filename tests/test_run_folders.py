"""A run folder says what it is (issue 21): every kind of training run (plain, class-conditional, hybrid, ControlNet, text-to-image) loads with
`DDPMPipeline.from_pretrained` as its own pipeline class, with empty caches (nothing is trained or downloaded while loading), and samples exactly
what `load_pipeline` samples; a part changed after saving is refused."""
import json, os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("DIFFUSION_COURSE_DEVICE", "cpu")
from diffusion_course.core import UsageError, MissingFileError
from diffusion_course.pipelines import DDPMPipeline, MODEL_INDEX, PART_HASHES, WEIGHTS_NAME
from diffusion_course.checkpoints import load_pipeline
from diffusion_course.training import TrainConfig, train

TINY = TrainConfig(dataset="digits", steps=4, batch_size=16, lr=2e-3, warmup_steps=1, checkpoint_every=4, sample_every=0,
                   model=dict(base_channels=8, channel_mults=[1, 2], attention_levels=[False, True]))


def run(cfg, folder):
    train(cfg, folder, progress=False, log=None)
    return folder


def kinds(tmp: Path) -> dict:
    "name -> (run folder, pipeline class name, keyword arguments of a call)"
    from diffusion_course.controlnet import controlnet_config, sobel_edges
    from diffusion_course.latent import text2img_config
    import diffusion_course.improved  # noqa: F401  (registers the hybrid objective)
    plain = run(TINY, tmp / "plain")
    out = {"plain": (plain, "DDPMPipeline", {}),
           "class-conditional": (run(TINY.replace(conditional=True, label_dropout=0.2), tmp / "cond"), "DDPMPipeline", dict(class_labels=3, guidance_scale=2.0)),
           "hybrid": (run(TINY.replace(objective="hybrid", variance_type="learned_range"), tmp / "hybrid"), "DDPMPipeline", {})}
    cn_cfg = controlnet_config(base_run=plain, steps=2, batch_size=8, checkpoint_every=2, warmup_steps=1)
    edges = sobel_edges(torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    out["controlnet"] = (run(cn_cfg, tmp / "controlnet"), "ControlNetPipeline", dict(image=edges))
    t2i = text2img_config(dataset="fashion_mnist_latents_small", steps=2, batch_size=8, subset=256, checkpoint_every=2, warmup_steps=1)
    out["text-to-image"] = (run(t2i, tmp / "text2img"), "LatentTextPipeline", dict(prompt="an ankle boot", guidance_scale=3.0))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return kinds(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("kind", ["plain", "class-conditional", "hybrid", "controlnet", "text-to-image"])
def test_run_folder_loads_as_its_own_class(runs, kind, tmp_path, monkeypatch):
    folder, class_name, kw = runs[kind]
    index = json.loads((folder / MODEL_INDEX).read_text())
    assert index["_class_name"] == class_name and set(index[PART_HASHES]) >= {"unet"}
    expected = load_pipeline(folder, device="cpu")(4, 3, generator=torch.Generator().manual_seed(1), **kw).images
    monkeypatch.setenv("DIFFUSION_COURSE_DATA", str(tmp_path / "empty-cache" / "data"))   # nothing cached: loading must not need (or train) anything
    import diffusion_course.autoencoder as autoencoder
    monkeypatch.setattr(autoencoder, "train_autoencoder", lambda *a, **k: pytest.fail("an autoencoder was trained while loading"))
    pipe = DDPMPipeline.from_pretrained(folder)
    assert type(pipe).__name__ == class_name
    assert torch.equal(pipe(4, 3, generator=torch.Generator().manual_seed(1), **kw).images, expected)
    assert torch.equal(load_pipeline(folder, device="cpu")(4, 3, generator=torch.Generator().manual_seed(1), **kw).images, expected)
    made = sorted(p.relative_to(tmp_path / "empty-cache").parts[:2] for p in (tmp_path / "empty-cache").rglob("*") if p.is_file())
    assert all(m == ("models", "caption_embeddings") for m in made), made      # only the prompts' embeddings were cached, by sampling


def test_controlnet_is_its_own_part(runs):
    folder = runs["controlnet"][0]
    index = json.loads((folder / MODEL_INDEX).read_text())
    assert index["unet"] == ["diffusion_course", "UNet"] and index["controlnet"] == ["diffusion_course", "ControlNet"]
    base_cfg = json.loads((runs["plain"][0] / "unet" / "config.json").read_text())
    assert json.loads((folder / "unet" / "config.json").read_text()) == base_cfg       # unet/ is the frozen base, alone


def test_latent_run_has_its_vae(runs):
    folder = runs["text-to-image"][0]
    index = json.loads((folder / MODEL_INDEX).read_text())
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    assert index["vae"] == ["diffusion_course", "KLAutoencoder"] and index["text_encoder"][1] == "all-MiniLM-L6-v2"
    assert vae_cfg["scaling_factor"] != 1.0 and vae_cfg["latent_channels"] == 4


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_tampered_part_is_refused(runs, part, tmp_path):
    import shutil
    folder = shutil.copytree(runs["text-to-image"][0], tmp_path / "copy")
    w = folder / part / WEIGHTS_NAME
    data = bytearray(w.read_bytes()); data[-1] ^= 1; w.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="sha256"):
        DDPMPipeline.from_pretrained(folder)


def test_subclass_refuses_other_kinds(runs):
    from diffusion_course.controlnet import ControlNetPipeline
    with pytest.raises(UsageError, match="not a ControlNetPipeline"):
        ControlNetPipeline.from_pretrained(runs["plain"][0])


def test_cli_refuses_tampered_vae(runs, tmp_path):
    "`sample` loads a text run's autoencoder from its folder: a changed vae/ is one line and exit 2, and no PNG is written."
    import shutil, subprocess, sys
    folder = shutil.copytree(runs["text-to-image"][0], tmp_path / "copy")
    w = folder / "vae" / WEIGHTS_NAME
    data = bytearray(w.read_bytes()); data[-1] ^= 1; w.write_bytes(bytes(data))
    cli = str(Path(sys.executable).parent / "diffusion-course")
    p = subprocess.run([cli, "sample", "--checkpoint", str(folder), "--prompt", "a bag", "--steps", "2", "--count", "2", "--no-progress",
                        "--out", str(tmp_path / "x.png")], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2 and "sha256" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "x.png").exists()


def test_pipeline_folders_with_chapter_14_samplers(tmp_path):
    "A pipeline saved with a chapter-14 scheduler loads with it (pipelines.SCHEDULER_CLASSES, schedulers' lazy names) and samples the same images."
    import torch
    from diffusion_course.pipelines import DDPMPipeline
    from diffusion_course.samplers import EulerDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler
    from diffusion_course.unet import UNet
    for S in (EulerDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler):
        torch.manual_seed(0)
        unet = UNet(in_channels=1, out_channels=1, sample_size=8, base_channels=8, channel_mults=[1], num_res_blocks=1, attention_levels=[False])
        pipe = DDPMPipeline(unet, S(num_train_timesteps=1000))
        pipe.save_pretrained(tmp_path / S.__name__)
        loaded = DDPMPipeline.from_pretrained(tmp_path / S.__name__)
        assert type(loaded.scheduler) is S and dict(loaded.scheduler.config) == dict(pipe.scheduler.config)
        a = pipe(2, 4, generator=torch.Generator().manual_seed(0)).images
        b = loaded(2, 4, generator=torch.Generator().manual_seed(0)).images
        assert torch.equal(a, b), S.__name__
