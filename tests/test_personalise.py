"""Chapter 15 (personalisation) through the command line and on fake CUDA.

A tiny text-to-image base is trained once per session with `diffusion-course train --preset text2img` (3 steps on chapter 13's small
autoencoder); each preset (lora, textual_inversion, dreambooth) trains 2 steps on five upside-down boots and samples through `sample
--prompt "a <s> ..."`; each bad input gives one line on stderr, exit status 2, and writes nothing. The adapted networks' forward paths run
on fake CUDA tensors (`FakeTensorMode`), which raise on a device mix or a host read.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

BIN = Path(sys.executable).parent
CLI = str(BIN / "diffusion-course")
ENV = {**os.environ, "DIFFUSION_COURSE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
os.environ.setdefault("DIFFUSION_COURSE_DEVICE", "cpu")


def cli(*args, check=None, timeout=600):
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}"
    return p


@pytest.fixture(scope="module")
def base_and_concept(tmp_path_factory):
    "A tiny text-to-image run and a folder of five upside-down ankle boots (28x28 grey PNGs)."
    root = tmp_path_factory.mktemp("personalise")
    base = root / "base"
    cli("train", "--preset", "text2img", "--dataset", "fashion_mnist_latents_small", "--steps", "3", "--batch-size", "8",
        "--checkpoint-every", "3", "--subset", "256", "--base-channels", "8", "--no-progress", "--out", base, check=0)
    from diffusion_course.data import fashion_mnist
    from diffusion_course.personalise import save_concept_images, upside_down
    x, y = fashion_mnist("test", subset=300).tensors
    save_concept_images(upside_down(x[y == 9][:5]), root / "concept")
    return base, root / "concept"


@pytest.mark.parametrize("preset, extra", [("lora", []), ("textual_inversion", []), ("dreambooth", ["--class-prompt", "an ankle boot"])])
def test_presets_train_and_sample(tmp_path, base_and_concept, preset, extra):
    base, concept = base_and_concept
    base_files = {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    run = tmp_path / preset
    cli("train", "--preset", preset, "--base-run", base, "--concept-images", concept, "--token", "<s>", "--instance-prompt", "a <s> ankle boot",
        *extra, "--steps", "2", "--batch-size", "4", "--no-progress", "--out", run, check=0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["objective"] == "personalise" and cfg["objective_args"]["base_run"] == str(base.resolve())
    unet_part = load_file(str(run / "unet" / "diffusion_pytorch_model.safetensors"))
    if preset == "lora": assert unet_part and all(k.endswith((".lora_A", ".lora_B")) for k in unet_part)      # only what was trained
    elif preset == "textual_inversion": assert list(unet_part) == ["token_embedding"]
    else: assert len(unet_part) > 50 and cfg["init_from"] == str(base.resolve())                              # the whole UNet
    p = cli("sample", "--checkpoint", run, "--prompt", "a <s> ankle boot", "--prompt", "two <s>", "--guidance", "3", "--steps", "3", "--count", "2",
            "--no-progress", "--out", tmp_path / "s.png", check=0)
    assert "wrote 4 samples" in p.stdout and (tmp_path / "s.png").exists()
    assert {p: p.read_bytes() for p in base.rglob("*") if p.is_file()} == base_files          # the base run is untouched


def _bad_inputs(base, concept, root):
    from PIL import Image
    def folder(name, make):
        f = root / "inputs" / name; f.mkdir(parents=True); make(f); return f
    empty = folder("empty", lambda f: None)
    text = folder("text", lambda f: (f / "a.png").write_text("not an image"))
    big = folder("big", lambda f: Image.new("L", (32, 32)).save(f / "a.png"))
    rgb = folder("rgb", lambda f: Image.new("RGB", (28, 28)).save(f / "a.png"))
    pixel = root / "pixel"
    cli("train", "--dataset", "digits", "--steps", "1", "--batch-size", "8", "--base-channels", "8", "--no-progress", "--out", pixel, check=0)
    return [
        (["--concept-images", root / "nowhere"], "no such folder"),
        (["--concept-images", empty], "is empty"),
        (["--concept-images", text], "not an image file"),
        (["--concept-images", big], "32x32"),
        (["--concept-images", rgb], "mode 'RGB'"),
        (["--concept-images", concept, "--token", "boot"], "already knows"),
        (["--concept-images", concept, "--base-run", pixel], "not a text-to-image"),
        (["--concept-images", concept, "--instance-prompt", "an ankle boot"], "must contain"),
    ]


def test_bad_inputs_one_line_exit_2(tmp_path, base_and_concept):
    base, concept = base_and_concept
    for i, (args, words) in enumerate(_bad_inputs(base, concept, tmp_path)):
        for preset in [("lora", "textual_inversion", "dreambooth")[i % 3]]:        # each input with one preset, the presets in turn
            out = tmp_path / "runs" / preset
            full = {"--base-run": base, "--token": "<s>", **dict(zip(args[::2], args[1::2]))}
            p = cli("train", "--preset", preset, *[x for kv in full.items() for x in kv], "--steps", "2", "--out", out)
            lines = p.stderr.strip().splitlines()
            assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, (preset, args, p.stderr)
            assert words in lines[0], (preset, words, lines[0])
            assert not out.exists(), (preset, args)                   # nothing written


def test_flags_belong_to_the_personalisation_presets(tmp_path, base_and_concept):
    base, concept = base_and_concept
    p = cli("train", "--preset", "lora", "--concept-images", concept, "--token", "<s>", "--out", tmp_path / "r")
    assert p.returncode == 2 and "--base-run" in p.stderr and not (tmp_path / "r").exists()
    p = cli("train", "--preset", "lora", "--base-run", base, "--token", "<s>", "--out", tmp_path / "r")
    assert p.returncode == 2 and "--concept-images" in p.stderr and not (tmp_path / "r").exists()
    p = cli("train", "--preset", "text2img", "--concept-images", concept, "--out", tmp_path / "r")
    assert p.returncode == 2 and "--concept-images" in p.stderr and not (tmp_path / "r").exists()


def test_adapter_refuses_a_changed_base(tmp_path, base_and_concept):
    "An adapter names its base by the sha256 of the base UNet's weights; a base trained further (new weights) is refused in one line."
    base, concept = base_and_concept
    import shutil
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    run = tmp_path / "lora"
    cli("train", "--preset", "lora", "--base-run", copy, "--concept-images", concept, "--token", "<s>", "--steps", "1", "--batch-size", "4",
        "--no-progress", "--out", run, check=0)
    cli("train", "--resume", "--steps", "6", "--checkpoint-every", "6", "--no-progress", "--out", copy, check=0)     # the base changes
    p = cli("sample", "--checkpoint", run, "--prompt", "a <s>", "--steps", "2", "--count", "1", "--no-progress", "--out", tmp_path / "s.png", check=2)
    assert "has changed since this adapter was trained" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.png").exists()


def test_adapted_networks_forward_on_fake_cuda(base_and_concept):
    "LoRA and textual-inversion networks, and the objective's both halves, run on fake CUDA tensors: no device mix, no host read."
    from torch._subclasses.fake_tensor import FakeTensorMode
    from diffusion_course.personalise import PersonalisedUNet, tokenize_with_token, prior_preservation_loss
    from diffusion_course.latent import prompt_embeddings
    base, _ = base_and_concept
    lora, ti = PersonalisedUNet(str(base), "lora"), PersonalisedUNet(str(base), "textual_inversion", token="<s>")
    ids, mask = tokenize_with_token(["a <s> ankle boot", "an ankle boot"], "<s>")
    ctx = prompt_embeddings(["a <s> ankle boot"] * 4)
    from diffusion_course import personalise
    import copy
    bert = copy.deepcopy(personalise.sentence_encoder_on("cpu"))     # copied here: deepcopy cannot run inside FakeTensorMode, .to("cuda") can
    try:
        _fake_forward(lora, ti, ids, mask, ctx, bert)
    finally: personalise._BERT.clear()           # the fake-CUDA copy of the encoder must not outlive the test


def _fake_forward(lora, ti, ids, mask, ctx, bert):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from diffusion_course import personalise
    from diffusion_course.personalise import prior_preservation_loss
    with FakeTensorMode(allow_non_fake_inputs=True):
        dev = torch.device("cuda")
        lora_c, ti_c = lora.to(dev), ti.to(dev)
        personalise._BERT[str(ti_c.token_embedding.device)] = bert.to(dev)     # the encoder's copy on the (fake) GPU, as sentence_encoder_on makes it
        x, t = torch.randn(4, 4, 7, 7, device=dev), torch.randint(0, 1000, (4,), device=dev)
        out = lora_c(x, t, encoder_hidden_states=ctx.to(dev))
        assert out.device.type == "cuda" and out.shape == (4, 4, 7, 7)
        out = ti_c(x, t, input_ids=ids.to(dev), attention_mask=mask.to(dev), prompt_index=torch.tensor([0, 0, 1, 1], device=dev))
        assert out.device.type == "cuda" and out.shape == (4, 4, 7, 7)
        loss = prior_preservation_loss(out[:2], x[:2], out[2:], x[2:])
        assert loss.device.type == "cuda"
        with pytest.raises(Exception):               # the check is real: a CPU context on the CUDA network raises
            lora_c(x, t, encoder_hidden_states=ctx)
