#!/usr/bin/env python3
"""Compare the text outputs (stream, text/plain) of a notebook's code cells between git HEAD and the working tree: after a figure
re-render (tools/clear_figures.py + make fill) the printed numbers must be the same, or the prose that quotes them must change.

usage: tools/compare_text_outputs.py nbs/02_vae.ipynb [more.ipynb ...]   (exit 1 when a cell's text differs)"""
import json, subprocess, sys


def texts(nb: dict) -> list[str]:
    out = []
    for c in nb["cells"]:
        t = ""
        for o in c.get("outputs", []) if c["cell_type"] == "code" else []:
            t += "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) if "image/png" not in o.get("data", {}) else "".join(o.get("text", ""))
        out.append(t)
    return out


def main(paths) -> int:
    bad = 0
    for p in paths:
        old = json.loads(subprocess.run(["git", "show", f"HEAD:{p}"], capture_output=True, text=True, check=True).stdout)
        new = json.load(open(p))
        if len(old["cells"]) != len(new["cells"]): print(f"{p}: cell count changed"); bad += 1; continue
        for i, (a, b) in enumerate(zip(texts(old), texts(new))):
            if a != b:
                bad += 1; print(f"{p} cell {i}:\n  before: {a[:400]!r}\n  after:  {b[:400]!r}")
        print(f"{p}: checked")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
