#!/usr/bin/env python3
"""Clear the outputs of the code cells that draw a figure (an image/png output), so that `make fill NB=...` re-renders them with
the current plotting code (e.g. after a change of `viz.FIGURE_DPI`). Test-mode cells only, unless --slow (then slow cells too, which
`make fill NB=... SLOW=1` re-executes).

usage: tools/clear_figures.py [--slow] nbs/02_vae.ipynb [more.ipynb ...]"""
import json, sys


def clear(path: str, slow: bool = False) -> list[int]:
    nb = json.load(open(path))
    cleared = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code" or not any("image/png" in o.get("data", {}) for o in c.get("outputs", [])): continue
        if "#| slow" in "".join(c["source"]) and not slow: continue
        c["outputs"], c["execution_count"] = [], None
        cleared.append(i)
    with open(path, "w") as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write("\n")
    return cleared


if __name__ == "__main__":
    args = sys.argv[1:]
    slow = "--slow" in args
    for p in [a for a in args if a != "--slow"]: print(p, "cleared cells", clear(p, slow))
