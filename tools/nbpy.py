#!/usr/bin/env python3
"""Edit notebooks as plain text: `nbpy.py to-py NB.ipynb [OUT.py]` writes a percent-format script;
`nbpy.py to-nb IN.py NB.ipynb` writes the cells back into the notebook, keeping the outputs (and ids)
of every cell whose source is unchanged. New or changed cells come back without outputs: execute the
notebook afterwards (`tools/run_nb.sh`).

Format: a line `# %%` starts a code cell, `# %% [markdown]` a markdown cell whose lines are prefixed by `# `.
"""
import json, sys, uuid
from pathlib import Path

MD, CODE = "# %% [markdown]", "# %%"


def to_py(nb_path, out=None):
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            parts.append(MD + "\n" + "\n".join(("# " + l) if l else "#" for l in src.split("\n")))
        else:
            parts.append(CODE + "\n" + src)
    text = "\n\n".join(parts) + "\n"
    if out: Path(out).write_text(text)
    else: sys.stdout.write(text)


def parse_py(text):
    cells, cur = [], None
    for line in text.split("\n"):
        if line in (MD, CODE):
            if cur: cells.append(cur)
            cur = {"type": "markdown" if line == MD else "code", "lines": []}
        elif cur is not None:
            cur["lines"].append(line)
    if cur: cells.append(cur)
    out = []
    for c in cells:
        lines = c["lines"]
        while lines and lines[-1] == "": lines.pop()          # the blank separator lines
        if c["type"] == "markdown":
            lines = [l[2:] if l.startswith("# ") else (l[1:] if l.startswith("#") else l) for l in lines]
        out.append((c["type"], "\n".join(lines)))
    return out


def to_nb(py_path, nb_path):
    cells = parse_py(Path(py_path).read_text())
    nb_path = Path(nb_path)
    if nb_path.exists(): nb = json.loads(nb_path.read_text())
    else: nb = {"cells": [], "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    old = {}
    for c in nb["cells"]: old.setdefault((c["cell_type"], "".join(c["source"])), []).append(c)
    new = []
    for typ, src in cells:
        prev = old.get((typ, src))
        if prev: c = prev.pop(0)
        else:
            c = {"cell_type": typ, "id": uuid.uuid4().hex[:8], "metadata": {}}
            if typ == "code": c.update(execution_count=None, outputs=[])
        c["source"] = src.splitlines(keepends=True)
        new.append(c)
    nb["cells"] = new
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("to-py", "to-nb"): sys.exit(__doc__)
    if sys.argv[1] == "to-py": to_py(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else: to_nb(sys.argv[2], sys.argv[3])
