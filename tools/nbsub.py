#!/usr/bin/env python3
"""Replace text inside one notebook cell: `nbsub.py NB.ipynb OLD NEW [--keep-outputs]`.
OLD must occur in exactly one cell (an error otherwise, and nothing is written). The changed cell loses its outputs
(refill them with `make fill NB=...`) unless --keep-outputs (for markdown-like edits of a cell whose outputs stay true).
OLD and NEW are Python string literals when they start with a quote (so '\\n' can be written), else taken as given."""
import ast, json, sys
from pathlib import Path

def lit(s): return ast.literal_eval(s) if s[:1] and s[:1] in "'\"" else s

def main(argv):
    keep = "--keep-outputs" in argv
    args = [a for a in argv if a != "--keep-outputs"]
    if len(args) != 3: sys.exit(__doc__)
    path, old, new = Path(args[0]), lit(args[1]), lit(args[2])
    nb = json.loads(path.read_text())
    hits = [c for c in nb["cells"] if old in "".join(c["source"])]
    if len(hits) != 1: sys.exit(f"nbsub: {old!r} occurs in {len(hits)} cells of {path}, expected 1; nothing written")
    c = hits[0]; src = "".join(c["source"])
    if src.count(old) != 1: sys.exit(f"nbsub: {old!r} occurs {src.count(old)} times in one cell of {path}, expected 1; nothing written")
    src = src.replace(old, new)
    c["source"] = src.splitlines(keepends=True)
    if c["cell_type"] == "code" and not keep: c["outputs"], c["execution_count"] = [], None
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")

if __name__ == "__main__": main(sys.argv[1:])
