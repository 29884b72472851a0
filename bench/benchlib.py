"""Shared parts of the benchmark (issue 13): the machine, timers, peak memory, the three contenders, and the tables.

Every part runs on the device `diffusion_course.core.default_device()` names (`bench.py --device` sets it through
$DIFFUSION_COURSE_DEVICE): on CUDA the timers synchronise the device before reading the clock and peak memory is
`torch.cuda.max_memory_allocated`; on the CPU peak memory is the process's resident memory.

The three contenders, each trained for the same wall-clock budget and scored by the course's shared evaluation (chapter 05b):
  course    the demo model: `demo_config()`'s 280k-parameter UNet, trained by the course loop `training.train`
  hf        diffusers' `UNet2DModel` in the Hugging Face course's 28x28 configuration, trained by the same course loop
  ddp       denoising-diffusion-pytorch's `Unet` + `GaussianDiffusion` (its defaults, 3 levels for 28x28, one channel),
            trained with its own loss, optimizer and EMA (a copy of its `Trainer`'s step, which only reads image folders)
"""
from __future__ import annotations
import functools, json, math, os, platform, re, statistics, sys, tempfile, time, warnings
from pathlib import Path

import torch
import torch.nn as nn

DDP_VERSION = "2.3.4"
DDP_INSTALL = f".venv/bin/pip install denoising-diffusion-pytorch=={DDP_VERSION}"
RESULTS = Path(__file__).resolve().parent / "results"


def require_ddp():
    "Import denoising-diffusion-pytorch, or exit with the command that installs it."
    try:
        import denoising_diffusion_pytorch, ema_pytorch
    except ImportError as e:
        sys.exit(f"bench: the third contender needs denoising-diffusion-pytorch=={DDP_VERSION} ({e}).\n"
                 f"Install it with:\n    {DDP_INSTALL}")
    from importlib.metadata import version
    v = version("denoising-diffusion-pytorch")
    if v != DDP_VERSION: warnings.warn(f"bench was written for denoising-diffusion-pytorch=={DDP_VERSION}, found {v}")
    return v


# ----------------------------------------------------------------------------------------------------------------------------
# The machine

def _cpuinfo() -> list[dict]:
    procs, cur = [], {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if not line.strip():
            if cur: procs.append(cur); cur = {}
            continue
        k, _, v = line.partition(":")
        cur[k.strip()] = v.strip()
    if cur: procs.append(cur)
    return procs

def machine() -> dict:
    "CPU model, cores, clock, SIMD flags, and the peak fp32 FLOP/s they imply (with the assumption spelt out); software versions."
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "mkldnn": torch.backends.mkldnn.is_available()}
    for pkg in ("diffusers", "denoising-diffusion-pytorch"):
        try:
            from importlib.metadata import version; info[pkg] = version(pkg)
        except Exception: info[pkg] = None
    try: procs = _cpuinfo()
    except OSError: procs = []
    p0 = procs[0] if procs else {}
    flags = set(p0.get("flags", "").split())
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    physical = len({(p.get("physical id"), p.get("core id")) for p in procs}) or logical
    mhz = [float(p["cpu MHz"]) for p in procs if "cpu MHz" in p]
    m = re.search(r"@\s*([\d.]+)\s*GHz", p0.get("model name", ""))
    ghz = float(m.group(1)) if m else (max(mhz) / 1000 if mhz else None)
    if "avx512f" in flags: per_cycle, why = 64, "AVX-512 + FMA: 16 fp32 lanes x 2 (FMA) x 2 FMA units = 64 FLOP/cycle/core"
    elif "avx2" in flags and "fma" in flags: per_cycle, why = 32, "AVX2 + FMA: 8 fp32 lanes x 2 (FMA) x 2 FMA units = 32 FLOP/cycle/core"
    elif "avx" in flags: per_cycle, why = 16, "AVX without FMA: 8 lanes x (1 add + 1 mul) = 16 FLOP/cycle/core"
    else: per_cycle, why = 8, "SSE: 4 lanes x (1 add + 1 mul) = 8 FLOP/cycle/core"
    simd = sorted(f for f in flags if re.match(r"(avx|fma|amx|sse4|f16c)", f))
    info.update(cpu_model=p0.get("model name"), logical_cpus=logical, physical_cores=physical,
                cpu_mhz=max(mhz) if mhz else None, ghz_used=ghz, simd_flags=simd, flops_per_cycle=per_cycle,
                peak_assumption=why + f"; clock {ghz} GHz ({'from the model name' if m else 'max cpu MHz of /proc/cpuinfo'}); "
                "2 FMA units per core is an assumption (some CPUs have one 512-bit unit, which halves the AVX-512 peak); "
                "counted on the logical CPUs torch uses (hyper-threads share a core's units, so this can overstate the peak)")
    info["peak_gflops_per_thread"] = ghz * per_cycle if ghz else None
    info["peak_gflops_machine"] = ghz * per_cycle * logical if ghz else None
    return info

# Peak dense throughput (TFLOP/s) of GPUs from their makers' datasheets: (bf16 tensor cores without sparsity, fp32 without tensor cores).
# A GPU not listed gets no peak (the hardware table then shows achieved FLOP/s only).
GPU_PEAK_TFLOPS = {"H200": (989.0, 67.0), "H200 NVL": (835.0, 60.0), "H100 SXM": (989.0, 67.0), "H100 HBM3": (989.0, 67.0),
                   "H100 PCIe": (756.0, 51.0), "H100 NVL": (835.0, 60.0),
                   "A100": (312.0, 19.5), "L40S": (362.0, 91.6), "L4": (121.0, 30.3), "A10": (125.0, 31.2)}
# The keys are matched by words against the name CUDA reports; an H100 SXM calls itself "NVIDIA H100 80GB HBM3", hence "H100 HBM3".

def gpu_peak_key(name: str) -> str | None:
    """The GPU_PEAK_TFLOPS key each of whose words starts a word of the device's name (split at spaces, hyphens and underscores:
    "NVIDIA A100-SXM4-80GB" has A100 and SXM4), the longest (most specific) first, or None."""
    tokens = re.split(r"[\s_-]+", name)
    return next((k for k in sorted(GPU_PEAK_TFLOPS, key=len, reverse=True)
                 if all(any(t.startswith(w) for t in tokens) for w in k.split())), None)

def gpu() -> dict | None:
    "The CUDA device torch uses (name, compute capability, memory, count) and its datasheet peak, or None without CUDA."
    if not torch.cuda.is_available(): return None
    i = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(i)
    name = props.name
    key = gpu_peak_key(name)
    bf16, fp32 = GPU_PEAK_TFLOPS[key] if key else (None, None)
    return {"name": name, "capability": f"{props.major}.{props.minor}", "memory_gib": props.total_memory / 2**30, "count": torch.cuda.device_count(),
            "peak_key": key, "peak_bf16_tflops": bf16, "peak_fp32_tflops": fp32, "bf16_supported": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda}

def device():
    "The device the bench runs on: the course's `default_device()` ($DIFFUSION_COURSE_DEVICE, else CUDA when available, else CPU)."
    from diffusion_course.core import default_device
    return default_device()

def sync(dev=None) -> None:
    "Wait for the device's queued work (CUDA runs asynchronously: a clock read without this measures the launch, not the work)."
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda": torch.cuda.synchronize(dev)

def add_budget_args(p, budget: float, n_help: str, steps_help: str) -> None:
    "--budget (training seconds per run), --n (images for FID) and --steps (sampling steps): the headline's measurement settings."
    p.add_argument("--budget", type=float, default=budget, help=f"wall-clock training seconds per run (default {budget:g})")
    p.add_argument("--n", type=int, default=250, help=f"images sampled per model for FID ({n_help}default 250)")
    p.add_argument("--steps", type=int, default=50, help=f"sampling steps for FID ({steps_help}default 50)")

def add_common_args(p) -> None:
    "The options every bench script that trains contenders shares: --device, --threads, --ddp-dim."
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:K: where every contender trains and samples")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all logical CPUs)")
    p.add_argument("--ddp-dim", type=int, default=16, help="denoising-diffusion-pytorch Unet dim (default 16)")

def setup(args, name: str) -> str:
    "Check the third contender's package, set the torch threads and the device (`$DIFFUSION_COURSE_DEVICE`, read by `default_device()`); return the device's name."
    require_ddp()
    warnings.filterwarnings("ignore", category=FutureWarning)
    args.threads = args.threads or machine()["logical_cpus"]
    torch.set_num_threads(args.threads)
    if args.device != "auto":
        try: dev = torch.device(args.device)
        except RuntimeError: sys.exit(f"{name}: --device {args.device!r} is not a device name: use auto, cpu, cuda or cuda:K")
        if dev.type not in ("cpu", "cuda"): sys.exit(f"{name}: --device {args.device!r}: the bench runs on cpu or cuda")
        if dev.type == "cuda" and not torch.cuda.is_available(): sys.exit(f"{name}: --device cuda, but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
        if dev.type == "cuda" and dev.index is not None: torch.cuda.set_device(dev)
        os.environ["DIFFUSION_COURSE_DEVICE"] = str(dev)          # the course loop and every contender use default_device()
    elif device().type not in ("cpu", "cuda"):
        print(f"{name}: the default device is {device()}, which the bench cannot time or measure: running on the CPU (--device cuda for a GPU)", flush=True)
        os.environ["DIFFUSION_COURSE_DEVICE"] = "cpu"
    return str(device())

def loadavg() -> float:
    try: return os.getloadavg()[0]
    except OSError: return float("nan")


# ----------------------------------------------------------------------------------------------------------------------------
# Timing and memory

def median_spread(xs) -> dict:
    "Median, min, max and the number of values (NaNs, from failed runs, are left out and counted)."
    xs = [float(x) for x in xs]
    ok = [x for x in xs if math.isfinite(x)]
    if not ok: return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0, "failed": len(xs)}
    return {"median": statistics.median(ok), "min": min(ok), "max": max(ok), "n": len(ok), "failed": len(xs) - len(ok)}

def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

class PeakRSS:
    """Peak resident memory of this process during a block, above its resident memory at the start (MiB).
    Linux: the peak (VmHWM) is reset by writing 5 to /proc/self/clear_refs; elsewhere ru_maxrss, which never goes down (then 0 unless a new peak)."""
    def __enter__(self):
        import gc, ctypes
        gc.collect()
        try: ctypes.CDLL("libc.so.6").malloc_trim(0)      # give freed heap back to the OS, so that the block's allocations show in the RSS
        except (OSError, AttributeError): pass
        try:
            Path("/proc/self/clear_refs").write_text("5"); self.method = "VmHWM reset via /proc/self/clear_refs, after gc and malloc_trim"
            self.start = _status_kb("VmRSS")
        except OSError:
            import resource
            self.method = "ru_maxrss delta (a high-water mark: 0 unless the block sets a new peak)"
            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self
    def __exit__(self, *exc):
        if self.method.startswith("VmHWM"): peak = _status_kb("VmHWM")
        else:
            import resource; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mib = max(0, peak - self.start) / 1024
        return False

class PeakCUDA:
    "Peak memory allocated by torch on the CUDA device during a block, above what was allocated at its start (MiB)."
    method = "torch.cuda.max_memory_allocated above memory_allocated at the start (tensors only; the caching allocator reserves more)"
    def __init__(self, dev=None): self.dev = dev
    def __enter__(self):
        sync(self.dev)
        torch.cuda.reset_peak_memory_stats(self.dev)
        self.start = torch.cuda.memory_allocated(self.dev)
        return self
    def __exit__(self, *exc):
        sync(self.dev)
        self.mib = max(0, torch.cuda.max_memory_allocated(self.dev) - self.start) / 2**20
        return False

def peak_memory(dev=None):
    "A context manager measuring the block's peak memory on `dev` (default: the bench's device): `PeakCUDA` on CUDA, else `PeakRSS`."
    dev = torch.device(dev) if dev is not None else device()
    return PeakCUDA(dev) if dev.type == "cuda" else PeakRSS()

def time_calls(fn, repeats: int, warmup: int = 1, dev=None) -> list[float]:
    "Wall-clock seconds of `repeats` calls of `fn` after `warmup` untimed calls (the device synchronised before each clock read)."
    dev = torch.device(dev) if dev is not None else device()
    for _ in range(warmup): fn()
    out = []
    for _ in range(repeats):
        sync(dev); t0 = time.perf_counter(); fn(); sync(dev); out.append(time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------------------------------------------------------
# Contenders

class HFCourseUNet(nn.Module):
    """diffusers' `UNet2DModel` exactly as the Hugging Face diffusion course builds it for 28x28 MNIST (Unit 1, 'from scratch'):
    block_out_channels (32, 64, 64), DownBlock2D / AttnDownBlock2D / AttnDownBlock2D, mirrored up blocks, 2 layers per block,
    with the course's forward signature. (The course's `DiffusersUNet` wraps UNet2DModel in another layout: (c, 2c, 2c), 1 layer per block, attention at the last level only.)"""
    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel
        self.unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=(32, 64, 64),
                                down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                                up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
        self.config = {"hf_course_28x28": True}
    def forward(self, x, t, class_labels=None, **kw):
        return self.unet(x, t).sample


class StopTraining(Exception):
    "Raised by `StepClock` to end a timing run of the course loop."

def _step_callbacks(clock):
    from diffusion_course.training import Callback
    class Start(Callback):
        order = -10_000                # before the LR schedule: the step's time includes every callback
        def before_step(self, learn): clock.start()
    class End(Callback):
        order = 10_000                 # after EMA, loss logging, checkpoints
        def after_step(self, learn): clock.end()
    return [Start(), End()]

class StepClock:
    """Times each training step; raises `StopTraining` before a step once `max_steps` are timed, or once `seconds` have passed
    since the first step (and at least `min_steps` are timed)."""
    def __init__(self, max_steps=None, seconds=None, min_steps: int = 3, on_first=None, dev=None):
        self.max_steps, self.seconds, self.min_steps, self.times, self.t0, self.first = max_steps, seconds, min_steps, [], None, None
        self.on_first = on_first          # called before the first step (e.g. to start measuring memory once the data is loaded)
        self.dev = torch.device(dev) if dev is not None else device()
    def start(self):
        if self.first is None and self.on_first is not None: self.on_first()
        sync(self.dev)                    # the previous step's queued work belongs to the previous step
        now = time.perf_counter()
        if self.first is None: self.first = now
        if self.max_steps is not None and len(self.times) >= self.max_steps: raise StopTraining
        if self.seconds is not None and now - self.first > self.seconds and len(self.times) >= self.min_steps: raise StopTraining
        self.t0 = time.perf_counter()
    def end(self):
        sync(self.dev)
        self.times.append(time.perf_counter() - self.t0)


class Contender:
    name = label = ""
    lr_default: float = 1e-3
    lr_grid: tuple = ()
    lr_default_source = ""
    def params(self) -> int: ...
    def run(self, steps: int, lr: float, seed: int, batch_size: int = 64, clock: StepClock | None = None): ...
    def sample(self, trained, n: int, steps: int, seed: int) -> torch.Tensor: ...
    def flops(self, batch_size: int = 64) -> int: ...
    def describe(self) -> str: ...


class CourseLoop(Contender):
    "A network trained by the course's `training.train` with `demo_config()`'s settings (cosine LR, warm-up, EMA 0.999, grad clip 1, AdamW)."
    def __init__(self, name, label, factory=None, lr_default=2e-3, lr_grid=(), lr_default_source="demo_config()", overrides=None):
        self.name, self.label, self.factory, self.overrides = name, label, factory, dict(overrides or {})
        self.lr_default, self.lr_grid, self.lr_default_source = lr_default, tuple(lr_grid), lr_default_source

    def cfg(self, steps, lr, seed, batch_size=64):
        from diffusion_course.training import demo_config
        return demo_config(**{**dict(steps=steps, lr=lr, seed=seed, batch_size=batch_size), **self.overrides})   # overrides win

    def build(self):
        return self.factory() if self.factory else self.cfg(10, self.lr_default, 0).build_model()

    def params(self): return sum(p.numel() for p in self.build().parameters())

    def describe(self):
        c = self.cfg(2000, self.lr_default, 0)
        extra = f"; overrides {json.dumps(self.overrides)}" if self.overrides else ""
        net = "demo_config().model (course UNet " + json.dumps(c.model) + ")" if not self.factory else "HF course UNet2DModel (32, 64, 64), layers_per_block 2, attention at 14x14 and 7x7"
        from diffusion_course.training import resolve_mixed_precision
        prec = resolve_mixed_precision(c.mixed_precision, device())
        return (f"{net}; course loop training.train ({'bf16 autocast' if prec == 'bf16' else 'float32'}, mixed_precision={c.mixed_precision!r}): "
                f"AdamW, lr cosine with warm-up min(100, steps/20), EMA {c.ema_decay} (warmed up), "
                f"grad clip {c.grad_clip}, batch {c.batch_size}, L_simple (epsilon), linear betas, T={c.num_train_timesteps}; "
                "sampled by the course DDPMPipeline + course DDPMScheduler (ancestral)" + extra)

    def run(self, steps, lr, seed, batch_size=64, clock=None):
        "Train for `steps` steps into a temporary run folder; returns (TrainResult or None if the clock stopped it, seconds of the whole call)."
        from diffusion_course.training import train
        clock = clock or StepClock()
        cfg = self.cfg(steps, lr, seed, batch_size)
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-") as d:
            t0 = time.perf_counter()
            try:
                res = train(cfg, d, progress=False, log=None, model=self.factory, callbacks=_step_callbacks(clock))
            except StopTraining:
                res = None
            return res, time.perf_counter() - t0

    def final_loss(self, res) -> float:
        tail = res.losses[-max(1, len(res.losses) // 10):]
        return sum(tail) / len(tail)

    def sample(self, res, n, steps, seed):
        from diffusion_course.checkpoints import pipeline_for
        return pipeline_for(res.ema_model, res.cfg)(n, steps, generator=torch.Generator().manual_seed(seed)).images.float().cpu()

    def flops(self, batch_size=64):
        from torch.utils.flop_counter import FlopCounterMode
        from diffusion_course.training import make_objective
        from diffusion_course.checkpoints import make_scheduler
        cfg = self.cfg(10, self.lr_default, 0, batch_size)
        net = self.build().train()
        objective = make_objective(cfg, make_scheduler(cfg))
        x = torch.rand(batch_size, 1, 28, 28) * 2 - 1
        with FlopCounterMode(display=False) as fc:
            objective(net, {"images": x}, torch.Generator().manual_seed(0)).backward()
        return fc.get_total_flops()


class DDPLoop(Contender):
    """denoising-diffusion-pytorch: `Unet(dim, dim_mults=(1, 2, 4), channels=1)` (its default (1, 2, 4, 8) cannot halve 7x7) and
    `GaussianDiffusion(image_size=28)` with its defaults (pred_v, sigmoid betas, T=1000, loss weight); one step of its `Trainer`:
    the diffusion's own loss, Adam(betas=(0.9, 0.99)) at a constant lr, grad-norm clip 1, ema_pytorch EMA(beta=0.995, update_every=10).
    Batches are the course's (`batch_indices`), scaled to [0, 1] (its auto_normalize). Sampled by its own `sample()` (DDIM, eta 0, when steps < T)."""
    name, label = "ddp", "denoising-diffusion-pytorch Unet + GaussianDiffusion"
    lr_default, lr_grid, lr_default_source = 1e-3, (5e-4, 1e-3, 2e-3), "the middle of its grid (its Trainer's default, 1e-4, is meant for 100k steps)"

    def __init__(self, dim: int = 16, mixed_precision: str = "no"):
        self.dim, self.mixed_precision = dim, mixed_precision    # "bf16": its loss under bf16 autocast, as the course loop's

    def build(self, sampling_steps=None):
        from denoising_diffusion_pytorch import Unet, GaussianDiffusion
        unet = Unet(dim=self.dim, dim_mults=(1, 2, 4), channels=1)
        return GaussianDiffusion(unet, image_size=28, timesteps=1000, sampling_timesteps=sampling_steps)

    def params(self): return sum(p.numel() for p in self.build().model.parameters())

    def describe(self):
        return (f"Unet(dim={self.dim}, dim_mults=(1, 2, 4), channels=1) + GaussianDiffusion(image_size=28) defaults (pred_v, sigmoid betas, T=1000); "
                "its Trainer's step: own loss" + (" under bf16 autocast" if self.mixed_precision == "bf16" else "") +
                ", Adam betas (0.9, 0.99), constant lr, clip 1, EMA 0.995 every 10 steps; batch 64; "
                "sampled by its own sample() (DDIM, eta 0)")

    def images(self):
        "Loaded again by every run, as the course loop does: its time is part of the budget for both."
        from diffusion_course.data import fashion_mnist
        return fashion_mnist("train").tensors[0]

    def run(self, steps, lr, seed, batch_size=64, clock=None):
        from ema_pytorch import EMA
        from diffusion_course.training import batch_indices
        clock = clock or StepClock()
        t0 = time.perf_counter()
        dev = device()
        images = self.images().to(dev)                # on the device once, as the course loop keeps its data
        torch.manual_seed(seed)                       # the init, then every step's t and noise (the library draws from the global RNG)
        diffusion = self.build().to(dev)
        opt = torch.optim.Adam(diffusion.parameters(), lr=lr, betas=(0.9, 0.99))
        ema = EMA(diffusion, beta=0.995, update_every=10)
        losses = []
        try:
            for step in range(steps):
                clock.start()
                diffusion.train()
                batch = (images[batch_indices(step, batch_size, len(images), seed).to(dev)] + 1) / 2
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.mixed_precision == "bf16"):
                    loss = diffusion(batch)
                loss.backward()
                nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
                opt.step(); opt.zero_grad()
                ema.update()
                losses.append(loss.detach())
                clock.end()
        except StopTraining:
            return None, time.perf_counter() - t0
        res = {"ema": ema.ema_model, "losses": torch.stack(losses).tolist() if losses else [], "steps": steps}
        return res, time.perf_counter() - t0

    def final_loss(self, res) -> float:
        tail = res["losses"][-max(1, len(res["losses"]) // 10):]
        return sum(tail) / len(tail)

    def sample(self, res, n, steps, seed, chunk: int = 500):
        import denoising_diffusion_pytorch.denoising_diffusion_pytorch as lib
        from tqdm.auto import tqdm
        lib.tqdm = functools.partial(tqdm, disable=True)          # its sampling loops always show a progress bar
        model = res["ema"].eval()
        model.sampling_timesteps = steps
        model.is_ddim_sampling = steps < model.num_timesteps
        torch.manual_seed(seed)
        out = [model.sample(batch_size=min(chunk, n - i)) for i in range(0, n, chunk)]
        return torch.cat(out).float().cpu() * 2 - 1

    def flops(self, batch_size=64):
        from torch.utils.flop_counter import FlopCounterMode
        diffusion = self.build().train()
        x = torch.rand(batch_size, 1, 28, 28)
        with FlopCounterMode(display=False) as fc:
            diffusion(x).backward()
        return fc.get_total_flops()


def course_precision(course_overrides=None) -> str:
    "The precision the course loop resolves for the demo config on the bench's device (`mixed_precision=\"fastest\"`: bf16 where native)."
    from diffusion_course.training import demo_config, resolve_mixed_precision
    return resolve_mixed_precision(demo_config(**(course_overrides or {})).mixed_precision, device())

PEER_PRECISION = "no"    # on the CPU, float32: bf16 autocast made both peers slower on the bench machine (hf 1.41 vs 0.85 s/step, ddp 0.92 vs 0.87 at batch 64)

def default_peer_precision() -> str:
    "The peers' precision: float32 on the CPU (`PEER_PRECISION`, their faster one there); on a GPU bf16 where the course model trains in bf16, as a GPU user would train."
    if device().type == "cpu": return PEER_PRECISION
    return "bf16" if course_precision() == "bf16" else "no"      # fp16 would need the peers' own loss scaling: float32 there

def contenders(ddp_dim: int = 16, course_overrides=None, peer_precision: str | None = None) -> dict:
    "The three contenders: the course model in its demo config's precision, the peers in `peer_precision` (default `default_peer_precision()`)."
    peer_precision = peer_precision or default_peer_precision()
    return {"course": CourseLoop("course", "course demo UNet (course loop)", overrides=course_overrides),
            "hf": CourseLoop("hf", "diffusers UNet2DModel, HF course 28x28 (course loop)", factory=HFCourseUNet, lr_default=2e-3,
                             lr_grid=(1e-3, 2e-3, 4e-3), lr_default_source="the middle of its grid, the course loop's lr",
                             overrides={"mixed_precision": peer_precision}),
            "ddp": DDPLoop(ddp_dim, peer_precision)}


WARM = 2      # untimed first steps of a timing run (allocations, first-call overheads)

def step_times(c: Contender, batch_size: int, n_steps: int = None, seconds: float = None, seed: int = 0, lr: float = None) -> dict:
    "Per-step seconds of `c`'s real training loop after `WARM` steps, the peak RSS above the start (MiB), and the overhead of the call outside the steps."
    mem = peak_memory()                # from the first step on: the data, model and optimizer setup are not counted; optimizer state (made at step 1) is
    clock = StepClock(max_steps=None if n_steps is None else n_steps + WARM, seconds=seconds, min_steps=WARM + 1, on_first=mem.__enter__)
    _, wall = c.run(10**6, lr or c.lr_default, seed, batch_size, clock)
    mem.__exit__(None, None, None)
    return {"times": clock.times[WARM:], "all_times": clock.times, "peak_mem_mib": mem.mib, "memory_method": mem.method,
            "wall": wall, "overhead": wall - sum(clock.times)}

def calibrate(c: Contender, budget: float, seconds: float, lr: float) -> dict:
    "How many steps of `c` fit in `budget` seconds of wall clock: (budget - the loop's fixed overhead) / the mean steady step time, from a run of about `seconds`."
    r = step_times(c, 64, seconds=seconds, lr=lr)
    times = r["times"]
    s_step = sum(times) / len(times)
    steps = max(WARM + 1, int((budget - r["overhead"]) / s_step))
    return {"s_per_step": s_step, "overhead_s": r["overhead"], "timed_steps": len(times), "steps": steps}

def train_and_score(c: Contender, steps: int, lr: float, seed: int, n: int, sampling_steps: int, classifier) -> dict:
    "Train `c` for `steps` steps, sample `n` images with `sampling_steps` steps of its own sampler, score them with the shared evaluation (chapter 05b)."
    from diffusion_course.evaluate import evaluate_images
    t_start = time.perf_counter()
    try:
        res, train_s = c.run(steps, lr, seed)
        t0 = time.perf_counter()
        images = c.sample(res, n, sampling_steps, seed)
        sample_s = time.perf_counter() - t0
        ev = evaluate_images(images, classifier=classifier)
    except Exception as e:          # a diverged run (NaN loss or images) is a result, not the end of the benchmark
        nan = float("nan")
        return {"contender": c.name, "seed": seed, "lr": lr, "steps": steps, "train_s": time.perf_counter() - t_start, "sample_s": nan,
                "final_loss": nan, "fid": nan, "fid_floor": nan, "kid": nan, "kid_floor": nan, "inception_score": nan, "count": n,
                "score_s": 0.0, "load": loadavg(), "error": f"{type(e).__name__}: {e}"}
    return {"contender": c.name, "seed": seed, "lr": lr, "steps": steps, "train_s": train_s, "sample_s": sample_s,
            "final_loss": c.final_loss(res), "fid": ev["fid"], "fid_floor": ev["fid_floor"], "kid": ev["kid_mean"],
            "kid_floor": ev["kid_floor"], "inception_score": ev["inception_score"], "count": ev["count"],
            "score_s": ev["seconds"]["scoring"], "load": loadavg()}


# ----------------------------------------------------------------------------------------------------------------------------
# Tables

def write_report(out, res: dict, md: list) -> None:
    "Write `res` to <out>.json and the lines `md` to <out>.md (folders made as needed), and print the markdown."
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def md_table(header: list, rows: list) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)

def fmt(x, nd=2):
    if x is None: return "-"
    if isinstance(x, float) and not math.isfinite(x): return "nan"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)

def spread(d: dict, nd=2, scale=1.0) -> str:
    "median [min, max], and how many runs failed"
    failed = f" ({d['failed']} failed)" if d.get("failed") else ""
    if d["n"] == 0: return "failed" + failed
    if d["n"] == 1: return f"{d['median'] * scale:.{nd}f}" + failed
    return f"{d['median'] * scale:.{nd}f} [{d['min'] * scale:.{nd}f}, {d['max'] * scale:.{nd}f}]" + failed
