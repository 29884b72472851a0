#!/usr/bin/env python3
"""Execute a notebook as `nbdev_test` does (slow and `eval: false` cells skipped) and write outputs only into the code cells that have none
(cells that `tools/nbpy.py to-nb` rewrote, or new ones); every other cell keeps its committed outputs, the slow cells' included.
Use it after editing cells of a chapter whose slow cells take long: the edited test-mode cells get their outputs back without re-running the
full runs. A cell whose output depends on a slow cell's result must be re-executed with `make nb NB=...` instead.
With --slow-missing, `#| slow` cells that have no outputs run too (new or edited slow experiments), while slow cells with outputs are still
skipped: such a new slow cell must be self-contained (load its runs from the caches itself, not use an earlier slow cell's variables).
usage: tools/fill_outputs.py [--slow-missing] NB.ipynb [more.ipynb ...]   (then the PNGs are shrunk and the notebook cleaned, as tools/run_nb.sh does)"""
import json, os, subprocess, sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ.setdefault("PYTHONHASHSEED", "0")
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
from fastcore.basics import AttrDict
from fastcore.xtras import working_directory
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


class FillShell(CaptureShell):
    """execnb's CaptureShell, except that a cell ending in ';' keeps what it prints: Jupyter (and `make nb`) hide only such a cell's value,
    execnb drops its printed output too, which emptied chapter 09's guidance-sweep table in a fill."""
    def _run(self, raw_cell, store_history=False, silent=False, shell_futures=True, cell_id=None, stdout=True, stderr=True, display=True, verbose=False):
        semic = raw_cell.rstrip().endswith(";")
        with capture_output(display=display, stdout=stdout and not verbose, stderr=stderr and not verbose) as c:
            result = InteractiveShell.run_cell(self, raw_cell, store_history, silent, shell_futures=shell_futures, cell_id=cell_id)
        return AttrDict(result=result, stdout=c.stdout, stderr=c.stderr, display_objects=c.outputs,
                        exception=result.error_in_exec or result.error_before_exec, quiet=semic)

SKIP_FLAGS = {"slow"}


def directives(source: str) -> dict:
    "The `#| key value` lines at the top of a cell, as {key: value}."
    out = {}
    for line in source.splitlines():
        if not line.startswith("#|"): break
        key, _, value = line[2:].strip().partition(" ")
        out[key.rstrip(":")] = value.strip()
    return out


def skipped(cell) -> bool:
    if cell.cell_type != "code": return True
    d = directives(cell.source)
    return d.get("eval", "").lower() == "false" or bool(SKIP_FLAGS & d.keys())


def skipped_unless_missing(cell) -> bool:
    "`skipped`, except that a slow cell without outputs runs."
    if cell.cell_type != "code" or directives(cell.source).get("eval", "").lower() == "false": return True
    return skipped(cell) and bool(cell.get("outputs") if hasattr(cell, "get") else getattr(cell, "outputs", None))


def fill(path: Path, slow_missing: bool = False) -> int:
    raw = json.loads(path.read_text())
    skip = skipped_unless_missing if slow_missing else skipped
    empty = [i for i, c in enumerate(raw["cells"]) if c["cell_type"] == "code" and not c.get("outputs") and not skip(read_cell(c))]
    if not empty:
        print(f"fill_outputs: {path}: every test-mode cell has outputs; nothing to do"); return 0
    nb = read_nb(path)
    shell = FillShell(path)
    with working_directory(path.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=skip)
        except Exception:
            sys.stderr.write(shell.prettytb(fname=path) + "\n"); return 1
    filled = 0
    for i in empty:
        outs = nb.cells[i].get("outputs") or []
        raw["cells"][i]["outputs"] = [dict(o) for o in outs]
        filled += bool(outs)
    path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n")
    print(f"fill_outputs: {path}: {filled} of {len(empty)} cells without outputs now have them (the others print nothing)")
    return 0


def read_cell(c: dict):
    "A raw JSON cell as an object with `cell_type` and `source` (what `skipped` reads)."
    class Cell: pass
    cell = Cell(); cell.cell_type = c["cell_type"]; cell.source = "".join(c["source"]); cell.outputs = c.get("outputs"); return cell


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    rc = 0
    args = sys.argv[1:]
    slow_missing = "--slow-missing" in args
    for arg in [a for a in args if a != "--slow-missing"]:
        p = Path(arg).resolve()
        rc |= fill(p, slow_missing)
        subprocess.run([sys.executable, str(root / "tools" / "shrink_pngs.py"), str(p)], check=True)
        subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(p)], check=True)
    sys.exit(rc)
