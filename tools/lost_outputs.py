"""Which code cells lost their outputs since the last commit? After `tools/nbpy.py to-nb` rewrites a notebook, a code cell whose
source changed keeps no outputs: re-execute the notebook (`make nb NB=...`) if this lists any.
usage: python3 tools/lost_outputs.py nbs/X.ipynb [more.ipynb ...]   (compares with `git show HEAD:<path>`)"""
import json, subprocess, sys

def lost(nb_path: str) -> list[str]:
    "First lines of code cells that are new or changed, have no outputs now, and whose first line had outputs in HEAD."
    old = json.loads(subprocess.run(["git", "show", f"HEAD:{nb_path}"], capture_output=True, text=True, check=True).stdout)
    new = json.load(open(nb_path))
    before = {"".join(c["source"]): c.get("outputs") for c in old["cells"] if c["cell_type"] == "code"}
    out = []
    for c in new["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] != "code" or src in before or c.get("outputs"): continue
        first = src.splitlines()[0] if src else ""
        if first.startswith("#|"): continue          # directives start many cells: too weak a match
        if any(k.splitlines()[:1] == [first] and v for k, v in before.items()): out.append(first[:100])
    return out

if __name__ == "__main__":
    found = False
    for nb in sys.argv[1:]:
        for line in lost(nb): print(f"{nb}: outputs lost in the cell starting {line!r}"); found = True
    sys.exit(1 if found else 0)
