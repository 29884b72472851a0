"""The side loops (chapter 05's feature classifier, chapter 02's VAE, chapter 13's autoencoder, chapter 07's distillation, chapter 09's noisy classifier) run on the `Learner` of chapter 04d. Each must give
bit for bit the weights and losses of the plain loop it replaced (the classifier is behind every FID of the course): the plain loops are kept
here as references and run at tiny settings. A NaN loss stops a side loop with `TrainingDiverged`, naming the step."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("DIFFUSION_COURSE_DEVICE", "cpu")
from diffusion_course.core import seed_everything
from diffusion_course.data import fashion_mnist, take_subset
from diffusion_course.metrics import ClassifierConfig, FashionClassifier, classifier_split, random_shift_images, train_classifier
from diffusion_course.vae import MLPVAE, AutoEncoder, train_vae
from diffusion_course.autoencoder import AutoencoderConfig, KLAutoencoder, autoencoder_loss, train_autoencoder
from diffusion_course.core import seed_for
from diffusion_course.ddim import distill, distillation_schedules, distillation_loss, _Pairs
from diffusion_course.guidance import NoisyClassifier, noisy_classifier_loss, train_noisy_classifier
from diffusion_course.training.loop import RunningBatches, TrainingDiverged

CPU = torch.device("cpu")


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def plain_classifier(config):
    "The plain loop `train_classifier` had before the Learner (its training part): the model in train mode, and the per-step losses."
    x_all, y_all = fashion_mnist("train").tensors
    train_idx = classifier_split(config.n_train, config.split_seed, len(x_all))[0]
    train_idx = train_idx[take_subset(len(train_idx), config.subset, config.seed)]
    seed_everything(config.seed)
    g = torch.Generator(CPU).manual_seed(config.seed)
    model = FashionClassifier(config.channels, config.hidden, global_pool=config.global_pool)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    n = len(x_train)
    steps_per_epoch = -(-n // config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    losses = []
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=g, device=CPU)
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
            loss = F.cross_entropy(model(random_shift_images(x_train[idx], config.max_shift, g)), y_train[idx])
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
            losses.append(loss.item())
    return model, losses


def plain_vae(model, x_all, steps, lr, batch_size, beta, seed):
    "The plain loop of `train_vae` before the Learner."
    g, g_noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist, perm, pos = {"loss": [], "rec": [], "kl": []}, torch.randperm(len(x_all), generator=g), 0
    for _ in range(steps):
        if pos + batch_size > len(x_all): perm, pos = torch.randperm(len(x_all), generator=g), 0
        xb = x_all[perm[pos:pos + batch_size]]; pos += batch_size
        out = model.loss(xb, beta=beta, generator=g_noise)
        opt.zero_grad(set_to_none=True); out["loss"].backward(); opt.step()
        for k in hist: hist[k].append(out[k].item())
    return hist


def plain_autoencoder(config):
    "The plain loop of `train_autoencoder` before the Learner (its training part)."
    x_train = fashion_mnist("train", subset=config.subset, seed=config.seed).tensors[0]
    seed_everything(config.seed)
    g = torch.Generator(CPU).manual_seed(config.seed)
    model = KLAutoencoder(config.latent_channels, config.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.05)
    losses, n = [], len(x_train)
    perm, pos = torch.randperm(n, generator=g), 0
    for _ in range(config.steps):
        if pos + config.batch_size > n: perm, pos = torch.randperm(n, generator=g), 0
        xb = x_train[perm[pos:pos + config.batch_size]]; pos += config.batch_size
        x_rec, mu, logvar = model(xb, generator=g)
        loss, mse, kl = autoencoder_loss(xb, x_rec, mu, logvar, config.kl_weight)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        losses.append(round(mse.item(), 5))
    return model, losses


def plain_noisy_classifier(images, labels, alpha_bar, steps, batch_size, lr, seed, **model_kwargs):
    "The plain loop of `train_noisy_classifier` before the Learner: a fresh generator per step draws the batch, t and the noise."
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = NoisyClassifier(**model_kwargs)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for step in range(steps):
        g = torch.Generator(CPU).manual_seed(seed_for(seed, "noisy_classifier", step))
        idx = torch.randint(0, len(images), (batch_size,), generator=g, device=CPU)
        loss = noisy_classifier_loss(model, images[idx], labels[idx], alpha_bar, g)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        losses.append(loss.detach())
    return model.eval(), torch.stack(losses).tolist()


def plain_distill(teacher, images, student_steps, steps, batch_size, lr, seed, num_train_timesteps=1000):
    "The plain loop of `distill` before the Learner: one halving, a fresh generator per step draws the batch, the timesteps and the noise."
    import copy
    s_sch, t_sch = distillation_schedules(student_steps, num_train_timesteps)
    teacher = teacher.eval()
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    pairs = _Pairs(s_sch, t_sch, CPU)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        g = torch.Generator(CPU).manual_seed(seed_for(seed, "distill", student_steps, step))
        x0 = images[torch.randint(0, len(images), (batch_size,), generator=g, device=CPU)]
        loss = distillation_loss(student, teacher, pairs, x0, g)
        optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()
        losses.append(loss.detach())
    return student.eval().requires_grad_(False), torch.stack(losses).tolist()


class TinyEpsilon(nn.Module):
    "A tiny epsilon model `(z, t) -> eps` with dropout, so that the global RNG's draws are compared too."
    def __init__(self):
        super().__init__()
        self.conv, self.time, self.drop = nn.Conv2d(1, 1, 3, padding=1), nn.Embedding(1000, 1), nn.Dropout(0.2)
    def forward(self, z, t): return self.drop(self.conv(z)) + self.time(t).view(-1, 1, 1, 1)


def test_classifier_learner_matches_plain_loop():
    config = ClassifierConfig(subset=300, epochs=2, batch_size=64, channels=(4, 8), hidden=16)   # 300 = 4 full batches + a short one per epoch
    ref, ref_losses = plain_classifier(config)
    model, info = train_classifier(config, device=CPU, progress=False)
    assert len(info["losses"]) == 10 and info["losses"] == ref_losses
    assert same_weights(model, ref)


@pytest.mark.parametrize("cls", [MLPVAE, AutoEncoder])
def test_vae_learner_matches_plain_loop(cls):
    x = fashion_mnist("train", subset=300, seed=1).tensors[0].flatten(1)
    torch.manual_seed(0); ref = cls(784, 16, 4)
    torch.manual_seed(0); model = cls(784, 16, 4)
    ref_hist = plain_vae(ref, x, steps=12, lr=1e-3, batch_size=64, beta=0.5, seed=3)    # 300 images: a new epoch every 4 steps
    hist = train_vae(model, x, steps=12, lr=1e-3, batch_size=64, beta=0.5, device=CPU, seed=3, progress=False)
    assert hist == ref_hist
    assert same_weights(model, ref)


def test_autoencoder_learner_matches_plain_loop():
    config = AutoencoderConfig(steps=8, batch_size=32, subset=100, channels=(4, 8))
    ref, ref_losses = plain_autoencoder(config)
    model, info = train_autoencoder(config, device=CPU, progress=False)
    assert info["losses"] == ref_losses
    ref.scale_factor.fill_(model.scale_factor.item())             # set after training from the latents; compared as part of info elsewhere
    assert same_weights(model, ref)


class NaNAfter(MLPVAE):
    "A VAE whose loss becomes NaN from call number `at` (0-based)."
    def __init__(self, *args, at: int, **kw):
        super().__init__(*args, **kw); self.at, self.calls = at, 0
    def loss(self, x, beta=1.0, generator=None):
        out = super().loss(x, beta, generator)
        if self.calls >= self.at: out = {**out, "loss": out["loss"] * float("nan")}
        self.calls += 1
        return out


def test_side_loop_stops_on_nan_naming_the_step():
    x = fashion_mnist("train", subset=200, seed=1).tensors[0].flatten(1)
    with pytest.raises(TrainingDiverged, match="at step 7"):
        train_vae(NaNAfter(784, 16, 4, at=7), x, steps=20, batch_size=32, device=CPU, progress=False)


def test_running_batches_refuse_to_skip_steps():
    "A running generator's draws depend on every step before: RunningBatches cannot start (resume) in the middle."
    batches = RunningBatches({"images": torch.arange(10.)}, 4, torch.Generator().manual_seed(0), drop_last=False)
    seen = torch.cat([batches(step)["images"] for step in range(3)])      # one epoch: 4 + 4 + 2
    assert sorted(seen.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="in order"): batches(7)


def test_noisy_classifier_learner_matches_plain_loop():
    x, y = fashion_mnist("train", subset=200, seed=1).tensors
    x = x[:, :, ::2, ::2].contiguous()                              # 14 x 14: a few milliseconds a step
    alpha_bar = torch.linspace(0.999, 0.01, 1000)
    kw = dict(steps=6, batch_size=16, lr=2e-3, seed=3, base_channels=8, channel_mults=(1, 2), num_classes=10)
    ref, ref_losses = plain_noisy_classifier(x, y, alpha_bar, in_channels=1, **kw)
    model = train_noisy_classifier(x, y, alpha_bar, progress=False, **kw)
    assert len(model.losses) == 6 and model.losses == ref_losses
    assert same_weights(model, ref) and not model.training


def test_distill_learner_matches_plain_loop():
    x = fashion_mnist("train", subset=100, seed=1).tensors[0]
    torch.manual_seed(0); teacher = TinyEpsilon()
    kw = dict(student_steps=5, steps=6, batch_size=8, lr=1e-3, seed=2)
    torch.manual_seed(1); ref, ref_losses = plain_distill(teacher, x, **kw)
    torch.manual_seed(1); student, losses = distill(teacher, x, progress=False, **kw)
    assert len(losses) == 6 and losses == ref_losses
    assert same_weights(student, ref) and not student.training
    assert not any(p.requires_grad for p in student.parameters()) and not any(p.grad is not None for p in teacher.parameters())
