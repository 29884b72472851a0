#!/usr/bin/env python3
"Re-encode the PNG outputs of notebooks smaller (greyscale or a 256-colour palette, optimised); usage: shrink_pngs.py NB.ipynb ..."
import base64, io, json, sys
from pathlib import Path
import numpy as np
from PIL import Image


def shrink(b64: str) -> str:
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    rgb = im.convert("RGB")
    a = np.asarray(rgb)
    grey = bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())     # every pixel, not a sample: a wide figure's colour may be at its right
    small = rgb.convert("L") if grey else rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO(); small.save(buf, format="PNG", optimize=True)
    out = base64.b64encode(buf.getvalue()).decode()
    return out if len(out) < len(b64) else b64


for path in sys.argv[1:]:
    nb = json.loads(Path(path).read_text())
    before = after = 0
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            data = o.get("data", {})
            if "image/png" in data:
                b64 = data["image/png"] if isinstance(data["image/png"], str) else "".join(data["image/png"])
                before += len(b64); data["image/png"] = shrink(b64.replace("\n", "")); after += len(data["image/png"])
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"shrink_pngs: {path}: PNG outputs {before/1e3:.0f} kB -> {after/1e3:.0f} kB")
