"""GPU-clean by construction, proven without a GPU (issue 21): every pipeline's forward path, chapter 08's objectives and a Learner step's
forward run on fake CUDA tensors (`FakeTensorMode`), which raise on a device mix and on data-dependent operations (`.item()`, `nonzero`,
`if tensor:`): on a real GPU those would be errors or host synchronisations. Classifier guidance needs autograd's backward pass, which fake
CUDA cannot run without a CUDA context: it runs on PyTorch's `meta` device instead (no data, so any host read raises there too)."""
import os

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

os.environ.setdefault("DIFFUSION_COURSE_DEVICE", "cpu")
from diffusion_course.schedulers import DDPMScheduler
from diffusion_course.ddim import DDIMScheduler
from diffusion_course.unet import UNet
from diffusion_course.pipelines import DDPMPipeline, with_sampler

SMALL = dict(base_channels=8, channel_mults=(1, 2), attention_levels=(False, True), sample_size=8)


def spy(scheduler_cls=DDPMScheduler, **kw):
    "A scheduler that records the device of every step's output, in a list its per-call copies share."
    class Spy(scheduler_cls):
        def step(self, *a, **k):
            out = super().step(*a, **k); self.devices.append(out.prev_sample.device.type); return out
    Spy.__name__ = scheduler_cls.__name__
    s = Spy(**kw); s.devices = []
    return s


def fake_cuda():
    return FakeTensorMode(allow_non_fake_inputs=True)


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DDIMScheduler])
@pytest.mark.parametrize("conditional", [False, True])
def test_ddpm_pipeline(scheduler_cls, conditional):
    with fake_cuda():
        with torch.device("cuda"): unet = UNet(**SMALL, num_classes=3 if conditional else None)
        sched = spy(scheduler_cls)
        kw = dict(class_labels=1, guidance_scale=2.0) if conditional else {}
        out = DDPMPipeline(unet, sched)(4, 3, generator=torch.Generator().manual_seed(0), **kw)
        assert sched.devices == ["cuda"] * 3 and out.images.shape == (4, 1, 8, 8)


def test_device_mix_is_caught():
    "The check is real: a CPU tensor fed to the CUDA network raises."
    with fake_cuda():
        with torch.device("cuda"): unet = UNet(**SMALL)
        with pytest.raises(Exception):
            unet(torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long, device="cuda"))


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DDIMScheduler])
def test_classifier_guidance_on_meta(scheduler_cls):
    "Both forms of classifier guidance (mean shift with DDPM, noise shift with DDIM) keep every step on the model's device."
    from diffusion_course.guidance import GuidedPipeline, ClassifierGuidance, NoisyClassifier
    with torch.device("meta"):
        unet = UNet(**SMALL, num_classes=3)
        classifier = NoisyClassifier(num_classes=3, base_channels=8, channel_mults=(1, 2))
    sched = spy(scheduler_cls)
    with pytest.raises(Exception, match="meta"):      # only the last line, the copy of the images to the CPU, can fail: meta tensors hold no data
        GuidedPipeline(unet, sched)(4, 3, generator=torch.Generator().manual_seed(0), class_labels=1, guidance_scale=2.0,
                                    guide=ClassifierGuidance(classifier, 5.0))
    assert sched.devices == ["meta"] * 3
    with torch.device("meta"), pytest.raises(Exception):
        torch.ones(2).sum().item()                     # the meta check is real: a host read raises


def test_controlnet_with_cfg():
    from diffusion_course.controlnet import ControlledUNet, ControlNetPipeline
    with fake_cuda():
        with torch.device("cuda"):
            net = ControlledUNet.from_unet(UNet(**SMALL, num_classes=3))
            image = torch.rand(4, 1, 8, 8)
        sched = spy()
        out = ControlNetPipeline(net, sched)(4, 3, generator=torch.Generator().manual_seed(0), image=image, class_labels=2, guidance_scale=3.0)
        assert sched.devices == ["cuda"] * 3 and out.images.shape == (4, 1, 8, 8)


@pytest.fixture
def text_pipeline(monkeypatch):
    "A tiny LatentTextPipeline on fake CUDA; prompt embeddings come from a fixed table computed outside fake mode (the encoder is not the point)."
    import diffusion_course.latent as latent
    table = torch.randn(3, latent.CONTEXT_LENGTH, latent.TEXT_DIM, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(latent, "prompt_embeddings", lambda prompts: table[torch.tensor([len(p) % 3 for p in prompts])])
    def build():
        with torch.device("cuda"):
            unet = latent.TextUNet(base_channels=8, attention_heads=2)
            ae = latent.KLAutoencoder(4, (8, 16))
        return latent.LatentTextPipeline(unet, spy(), ae)
    return build


@pytest.mark.parametrize("edit", ["text-to-image", "image-to-image", "inpainting"])
def test_latent_text_pipeline(text_pipeline, edit):
    with fake_cuda():
        pipe = text_pipeline()
        kw = {}
        if edit != "text-to-image":
            with torch.device("cuda"): kw["image"] = torch.rand(2, 1, 28, 28) * 2 - 1
            kw["strength"] = 0.6
        if edit == "inpainting":
            with torch.device("cuda"): mask = torch.zeros(1, 1, 28, 28)
            kw["mask_image"] = mask
        out = pipe(2, 4, generator=torch.Generator().manual_seed(0), prompt="a bag", guidance_scale=3.0, negative_prompt="a shoe", return_latents=True, **kw)
        steps = {"text-to-image": 4, "image-to-image": round(0.6 * 4), "inpainting": 4}[edit]
        assert pipe.scheduler.devices == ["cuda"] * steps
        assert out.images.shape == (2, 1, 28, 28) and out.latents.shape == (2, 4, 7, 7)


@pytest.mark.parametrize("objective", ["simple", "hybrid", "vlb", "min_snr"])
def test_objectives_forward(objective):
    "Chapter 08's objectives (and L_simple): one loss on a fake-CUDA batch, with the CPU generator the Learner uses."
    import diffusion_course.improved  # noqa: F401  (registers the objectives)
    from diffusion_course.training import objective_class
    learned = objective in ("hybrid", "vlb")
    sched = DDPMScheduler(variance_type="learned_range" if learned else "fixed_small")
    obj = objective_class(objective)(sched)
    with fake_cuda():
        with torch.device("cuda"):
            unet = UNet(**{**SMALL, "out_channels": 2 if learned else 1})
            images = torch.rand(4, 1, 8, 8) * 2 - 1
        loss = obj(unet, {"images": images, "slice": (0, 4), "global_size": 4}, torch.Generator().manual_seed(0))
        assert loss.device.type == "cuda" and loss.shape == ()


def test_learner_step_forward():
    "A Learner's batch and the objective's forward on fake CUDA: the data live on the device, the step's draws come from a CPU generator."
    from diffusion_course.training import TrainConfig, Learner, Backend, objective_class, step_generator
    cfg = TrainConfig(dataset="digits", steps=1, batch_size=4, model=dict(base_channels=8, channel_mults=[1, 2], attention_levels=[False, True]))
    with fake_cuda():
        with torch.device("cuda"):
            unet = UNet(**SMALL)
            data = {"images": torch.rand(32, 1, 8, 8) * 2 - 1}
        learn = Learner(cfg, unet, unet, None, objective_class("simple")(DDPMScheduler()), data, Backend())
        batch = learn.batch(0)
        assert batch["images"].device.type == "cuda" and batch["images"].shape == (4, 1, 8, 8)
        loss = learn.objective(unet, batch, step_generator(cfg.seed, 0))
        assert loss.device.type == "cuda"


@pytest.mark.parametrize("sampler", ["euler", "euler_churn", "heun", "dpmpp_2m"])
def test_sigma_samplers_in_pipeline(sampler):
    "Chapter 14's ODE/SDE samplers (built by `with_sampler`, on Karras's levels) through the pipeline on fake CUDA: tables on the device, no host reads."
    mode = fake_cuda()
    with mode:
        with torch.device("cuda"): unet = UNet(**SMALL)
    pipe = with_sampler(DDPMPipeline(unet, DDPMScheduler()), sampler)      # schedulers are built on the host, as a user builds them
    with mode:
        out = pipe(3, 4, generator=torch.Generator().manual_seed(0))
        assert out.images.shape == (3, 1, 8, 8)


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp_2m"])
def test_edm_precond_and_objective(sampler):
    "Chapter 14b's EDMPrecond answers the pipeline as an epsilon network on fake CUDA (sigma(t) from a device table), and EDM's loss runs there."
    from diffusion_course.edm import EDMPrecond, EDMObjective
    mode = fake_cuda()
    with mode:
        with torch.device("cuda"):
            net = EDMPrecond("UNet", {k: v for k, v in SMALL.items() if k != "sample_size"}, sigma_data=0.8, sample_size=8)
            images = torch.rand(4, 1, 8, 8) * 2 - 1
    pipe = with_sampler(DDPMPipeline(net, DDPMScheduler()), sampler)
    with mode:
        out = pipe(2, 3, generator=torch.Generator().manual_seed(0))
        assert out.images.shape == (2, 1, 8, 8)
        loss = EDMObjective(DDPMScheduler())(net, {"images": images, "slice": (0, 4), "global_size": 4}, torch.Generator().manual_seed(0))
        assert loss.device.type == "cuda" and loss.shape == ()
