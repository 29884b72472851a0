"""Before/after check for a pipeline refactor: samples from the cached text-to-image run (chapter 13) for prompts, w = 1,
image-to-image, inpainting and DDIM. `python tools/latent_pipeline_check.py save` before the change, `... check` after: it prints
the largest difference per case (0.0 = bit-identical). Needs the cached run of `text2img_config()` (chapter 13, `make nb`)."""
import sys, torch
from diffusion_course.checkpoints import load_pipeline
from diffusion_course.pipelines import with_sampler
torch.set_num_threads(1)
from diffusion_course.cache import run_dir_for
from diffusion_course.latent import text2img_config
run = run_dir_for(text2img_config())
pipe = load_pipeline(run)
g = lambda: torch.Generator().manual_seed(0)
out = {}
out["w3"] = pipe(4, 10, g(), prompt="an ankle boot", guidance_scale=3.0).images
out["w1"] = pipe(4, 10, g(), prompt=["a t-shirt", "a bag", "a dress", "a sandal"], guidance_scale=1.0).images
out["none"] = pipe(4, 10, g(), prompt="a bag").images
init = pipe.encode_images(torch.zeros(1, 1, 28, 28))
r = pipe(4, 10, g(), prompt="an ankle boot", guidance_scale=3.0, init_latents=init, strength=0.5, return_latents=True)
out["img2img"], out["img2img_lat"] = r.images, r.latents
mask = torch.zeros(1, 1, 7, 7); mask[..., :4, :] = 1
out["inpaint"] = pipe(4, 10, g(), prompt="a sneaker", guidance_scale=2.0, init_latents=init, mask=mask).images
out["ddim"] = with_sampler(pipe, "ddim")(4, 10, g(), prompt="a pair of trousers", guidance_scale=3.0).images
if sys.argv[1] == "save": torch.save(out, "/tmp/latent_ref.pt")
else:
    ref = torch.load("/tmp/latent_ref.pt")
    for k in out: print(k, (out[k] - ref[k]).abs().max().item())
