#!/usr/bin/env python3
"""Move one chapter's exercise checkers out of the library, into `diffusion_course.exercises.<module>`.

usage: .venv/bin/python tools/move_checkers.py nbs/04b_pipelines.ipynb [--dry-run]

Writes nbs/exercises/<number>_<module>.ipynb (`#| default_exp exercises.<module>`) with
- an exported import cell (what the checkers use, resolved from the chapter's imports and its module),
- a test import cell (what the solutions and tests use),
- every exported function of the chapter whose docstring says "Exercise checker", with the private helpers (`_name`)
  that only checkers use; a cell that also defines library code is split and the library part stays;
- the chapter's "Solutions" section (a `##` or `###` heading): the solutions, each run through its checker, and the tests
  of the checkers; with them any other cell that runs a checker but is not a learner's check cell (one that ends with
  `check_x(my_x)`, with no assert and no check_says);
and rewrites the chapter: the checker cells go, an import cell `from diffusion_course.exercises.<module> import ...` comes
right after the "## Exercises" heading, a short "Solutions" cell points to the new notebook, and the exported imports
lose the names that only the checkers used. Every other cell keeps its source and outputs (an import of `check_says`
is dropped, outputs kept). Prints what moved, what to check by hand, and the commands to run next. The checkers'
helpers try_call, report_check and check_says come from diffusion_course.exercises.core.
"""
import argparse, ast, builtins, json, re, subprocess, symtable, sys, uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "diffusion_course"
# how an exercise checker calls a learner's function and reports, and the test helper of the checkers: one home
CHECK_HELPERS = ("try_call", "report_check", "check_says")
EXPORT = re.compile(r"^#\|\s*exports?\s*$", re.M)
DEFAULT_EXP = re.compile(r"^#\|\s*default_exp\s+(\S+)", re.M)
SOLUTIONS = re.compile(r"^#{2,3}\s+Solutions\b.*$", re.M)
EXERCISES = re.compile(r"^#{1,3}\s+Exercises\b", re.M)
FASTCORE_TEST = ("test_eq", "test_ne", "test_close", "test_fail", "test_is", "test_warns", "test_stdout", "test_eq_type", "test_shuffled")
SOLUTIONS_SENTENCE = re.compile(r"(?:The )?[Ss]olutions (?:are in the last section|follow the exercises|are at the end of the chapter),? \(?folded\)?\.")


def src(cell) -> str: return "".join(cell["source"])
def lines_of(text: str) -> list[str]: return text.splitlines(keepends=True)
def new_id() -> str: return uuid.uuid4().hex[:8]
def md_cell(text): return {"cell_type": "markdown", "id": new_id(), "metadata": {}, "source": lines_of(text)}
def code_cell(text): return {"cell_type": "code", "execution_count": None, "id": new_id(), "metadata": {}, "outputs": [], "source": lines_of(text)}
def is_code(cell): return cell["cell_type"] == "code"
def is_export(cell): return is_code(cell) and bool(EXPORT.search(src(cell)))


def parse(text: str) -> ast.Module | None:
    "The cell's code, with IPython magics and shell lines blanked (line numbers kept); None if it is not Python."
    clean = "\n".join("#" if l.lstrip().startswith(("%", "!")) else l for l in text.split("\n"))
    try: return ast.parse(clean)
    except SyntaxError: return None


def docstring(node) -> str:
    return (ast.get_docstring(node) or "") if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""


def bound_names(node) -> list[str]:
    "Names a top-level statement binds (a def, a class, an assignment)."
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def import_names(node) -> list[str]:
    if isinstance(node, ast.Import): return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom): return [a.asname or a.name for a in node.names if a.name != "*"]
    return []


def used_names(nodes) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def free_names(code: str) -> set[str]:
    "Global names that `code` reads and does not bind itself (scope-aware, via symtable)."
    try: top = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError: return set()
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    free = set()
    def walk(t):
        for s in t.get_symbols():
            if not s.is_referenced(): continue
            if t.get_type() == "module": free.add(s.get_name())
            elif s.is_global() and not s.is_declared_global(): free.add(s.get_name())
        for child in t.get_children(): walk(child)
    walk(top)
    return free - bound - set(dir(builtins))


def node_span(node, text_lines) -> tuple[int, int]:
    "0-based [start, end) lines of a top-level statement, with its decorators and the comment lines right above it."
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    while start > 0 and text_lines[start - 1].lstrip().startswith("#") and not text_lines[start - 1].startswith("#|"): start -= 1
    return start, node.end_lineno


def format_from(module: str, names: list[str], width: int = 120) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= width: return line
    head, rows, row = f"from {module} import (", [], ""
    for n in names:
        piece = n + ", "
        if row and len(head) + len(row) + len(piece) > width: rows.append(row.rstrip()); row = ""
        row += piece
    rows.append(row.rstrip(", ") + ")")
    return head + ("\n" + " " * len(head)).join(rows)


def alias_text(a: ast.alias) -> str: return a.name + (f" as {a.asname}" if a.asname else "")


class ImportIndex:
    "Where each name a moved cell needs comes from: import statements, in the order the chapter has them."
    def __init__(self): self.stmts = []          # (kind, module, alias) in order
    def add(self, node):
        if isinstance(node, ast.Import):
            for a in node.names: self.stmts.append(("import", None, a))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                if a.name != "*": self.stmts.append(("from", node.module, a))
    def find(self, name):
        for kind, module, a in self.stmts:
            if kind == "import" and (a.asname or a.name.split(".")[0]) == name: return kind, module, a
            if kind == "from" and (a.asname or a.name) == name: return kind, module, a
        return None


def render_imports(entries) -> str:
    "Import lines for `entries` [(kind, module, alias)], in their order, one `from` line per module."
    lines, froms = [], {}
    for kind, module, a in entries:
        if kind == "import":
            if f"import {alias_text(a)}" not in lines: lines.append(f"import {alias_text(a)}")
        elif module in froms:
            if alias_text(a) not in froms[module]: froms[module].append(alias_text(a))
        else: froms[module] = [alias_text(a)]; lines.append(module)
    return "\n".join(format_from(l, froms[l]) if l in froms else l for l in lines)


def remove_from_import_lines(text: str, drop: set[str]) -> tuple[str, set[str]]:
    "Remove names in `drop` from the import statements of `text` (other lines untouched); returns the text and what was removed."
    tree, text_lines, removed, edits = parse(text), lines_of(text), set(), []
    if tree is None: return text, removed
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)): continue
        gone = [a for a in node.names if (a.asname or a.name.split(".")[0]) in drop]
        if not gone: continue
        keep = [a for a in node.names if a not in gone]
        removed |= {a.asname or a.name.split(".")[0] for a in gone}
        if not keep: new = ""
        elif isinstance(node, ast.Import): new = "import " + ", ".join(alias_text(a) for a in keep) + "\n"
        else: new = format_from("." * node.level + (node.module or ""), [alias_text(a) for a in keep]) + "\n"
        indent = text_lines[node.lineno - 1][:node.col_offset]
        if new: new = "\n".join(indent + l if i else indent + l.lstrip() for i, l in enumerate(new.rstrip("\n").split("\n"))) + "\n"
        edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        end_text = text_lines[end - 1]
        if not end_text.endswith("\n") and new: new = new.rstrip("\n")
        text_lines[start:end] = [new] if new else []
    out = "".join(text_lines).lstrip("\n")
    return (out if text.endswith("\n") else out.rstrip("\n")), removed


def imported_from_module_elsewhere(mod: str, name: str, chapter: Path) -> list[str]:
    "Notebooks that import `name` from this chapter's module (so the module must keep importing it)."
    pat = re.compile(rf"from\s+(?:\.{re.escape(mod)}|{PKG}\.{re.escape(mod)})\s+import\s+(\([^)]*\)|[^\n]*)")
    def imports_it(text): return any(re.search(rf"\b{re.escape(name)}\b", m.group(1)) for m in pat.finditer(text))
    hits = []                   # the notebooks, not diffusion_course/*.py: those may predate the last edit
    for p in (ROOT / "nbs").rglob("*.ipynb"):
        if p == chapter: continue
        code = "\n".join(src(c) for c in json.loads(p.read_text())["cells"] if is_code(c))
        if imports_it(code): hits.append(str(p.relative_to(ROOT)))
    return hits


def rel(path: Path) -> str:
    try: return str(path.relative_to(ROOT))
    except ValueError: return str(path)


def move(chapter: Path, dry_run: bool = False) -> int:
    nb = json.loads(chapter.read_text())
    cells = nb["cells"]
    mod = next((m.group(1) for c in cells if is_code(c) for m in [DEFAULT_EXP.search(src(c))] if m), None)
    if mod is None: sys.exit(f"{chapter}: no `#| default_exp` cell")
    number = re.match(r"(\d+[a-z]?)_", chapter.name)
    if number is None: sys.exit(f"{chapter}: expected a name like 04b_pipelines.ipynb")
    ex_stem = f"{number.group(1)}_{mod.split('.')[-1]}"
    target = chapter.parent / "exercises" / f"{ex_stem}.ipynb"
    ex_mod = f"{PKG}.exercises.{mod}"
    if target.exists(): sys.exit(f"{target} exists already: this chapter was moved (delete it to redo)")
    by_hand = []
    exp_index, test_index = ImportIndex(), ImportIndex()        # the chapter's imports, before any edit
    for c in cells:
        t = parse(src(c)) if is_code(c) else None
        for n in (t.body if t else []):
            if isinstance(n, (ast.Import, ast.ImportFrom)): (exp_index if is_export(c) else test_index).add(n)

    # 1. the exported code: checkers, their private helpers, everything else
    trees = {i: parse(src(c)) for i, c in enumerate(cells) if is_export(c)}
    for i, t in trees.items():
        if t is None: sys.exit(f"{chapter}: exported cell {i} is not plain Python")
    top = [(i, node) for i, t in trees.items() for node in t.body]
    checkers = {n.name for _, n in top if "Exercise checker" in docstring(n)}
    if not checkers: sys.exit(f"{chapter}: no exported function whose docstring says 'Exercise checker'")
    defined = {name: (i, n) for i, n in top for name in bound_names(n)}
    moved = set(checkers)
    while True:         # private helpers the moved code uses, that nothing else in the module uses
        used_by_moved = used_names(n for _, n in top if set(bound_names(n)) & moved)
        used_by_rest = used_names(n for _, n in top if not set(bound_names(n)) & moved and not import_names(n))
        extra = {name for name in used_by_moved & defined.keys() - moved
                 if name.startswith("_") and not name.startswith("__") and name not in used_by_rest
                 and not imported_from_module_elsewhere(mod, name, chapter)}
        if not extra: break
        moved |= extra
    moved_nodes = [(i, n) for i, n in top if bound_names(n) and set(bound_names(n)) <= moved]
    mixed = [n for i, n in top if set(bound_names(n)) & moved and not set(bound_names(n)) <= moved]
    if mixed: sys.exit(f"{chapter}: a statement binds checker and library names together (line {mixed[0].lineno}): split it first")

    # 2. split the exported cells: moved statements into new cells, the rest stays
    new_cells, checker_cells, kept_src = list(cells), [], {}
    for i in sorted({i for i, _ in moved_nodes}):
        text = src(cells[i]); tl = lines_of(text)
        spans = [node_span(n, tl) for j, n in moved_nodes if j == i]
        take = set().union(*(range(a, b) for a, b in spans))
        rest = [l for k, l in enumerate(tl) if k not in take]
        if all(not l.strip() or l.startswith("#|") for l in rest):
            checker_cells.append(cells[i]); new_cells[i] = None
        else:
            body = "\n".join("".join(tl[a:b]).rstrip("\n") for a, b in sorted(spans))
            checker_cells.append(code_cell("#| export\n" + body))
            kept = re.sub(r"\n{3,}", "\n\n", "".join(rest)).strip("\n")
            kept_src[i] = kept
            new_cells[i] = dict(cells[i], source=lines_of(kept))
    moved_code = "\n\n".join(src(c) for c in checker_cells)

    # 3. the solutions and the tests of the checkers: the "Solutions" section, and any other cell that runs a checker
    #    but is not a learner's check cell (`check_x(my_x)` last, no assert, no check_says)
    def is_learner(t) -> bool:
        return t is not None and bool(t.body) and isinstance(t.body[-1], ast.Expr) and isinstance(t.body[-1].value, ast.Call) \
            and isinstance(t.body[-1].value.func, ast.Name) and t.body[-1].value.func.id in checkers \
            and not any(isinstance(n, ast.Assert) for n in ast.walk(t)) and "check_says" not in used_names([t])
    take, extra = set(), []
    sol_start = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and SOLUTIONS.search(src(c))), None)
    if sol_start is not None:
        heading = SOLUTIONS.search(src(cells[sol_start])).group(0)
        level = len(heading.split()[0])
        sol_end = next((i for i in range(sol_start + 1, len(cells)) if cells[i]["cell_type"] == "markdown"
                        and re.search(rf"^#{{1,{level}}}\s+\S", src(cells[i]), re.M)), len(cells))
        for i in range(sol_start, sol_end):
            if new_cells[i] is None: continue
            if is_export(cells[i]): by_hand.append(f"exported cell {i} in the Solutions section stays in the chapter"); continue
            take.add(i)
    for i, c in enumerate(cells):
        if new_cells[i] is None or i in take or not is_code(c) or is_export(c): continue
        t = parse(src(c))
        used = used_names([t]) if t else set()
        if ("check_says" in used or used & checkers) and not is_learner(t): take.add(i); extra.append(src(c).splitlines()[0][:70])
    if not take: by_hand.append("found no solutions nor tests of the checkers: move them by hand")
    sol_cells = [cells[i] for i in sorted(take)]
    for i in take: new_cells[i] = None
    if sol_start is not None:
        new_cells[sol_start] = md_cell(f"{heading}\n\nIn [exercises/{ex_stem}](exercises/{ex_stem}.ipynb), each run through its checker, "
                                       "with the tests that each checker names typical mistakes.")
    for c in sol_cells:         # check_says now comes from the test import cell
        if is_code(c):
            text, gone = remove_from_import_lines(src(c), {"check_says"})
            if gone: c["source"] = lines_of(text)

    # 4. the chapter's remaining cells: the learner's check cells, and anything else that still names a checker
    remaining = [c for c in new_cells if c is not None]
    names_left = set()
    for k, c in enumerate(remaining):
        if not is_code(c) or is_export(c): continue
        t = parse(src(c))
        used = used_names([t]) if t else set(re.findall(r"\b\w+\b", src(c)))
        if t is not None and "check_says" in {name for n in t.body for name in import_names(n)}:
            text, gone = remove_from_import_lines(src(c), {"check_says"})
            if gone and "check_says" not in used_names([parse(text)]): c["source"] = lines_of(text)      # outputs kept: only an import went
        hit = used & moved
        names_left |= hit & checkers
        if hit and not is_learner(t): by_hand.append(f"chapter cell starting {src(c).splitlines()[0][:70]!r} uses {sorted(hit)}: test of a checker? move it")
        if "check_says" in used_names([parse(src(c))] if parse(src(c)) else []): by_hand.append(f"chapter cell starting {src(c).splitlines()[0][:70]!r} still uses check_says")
    ex_at = next((k for k, c in enumerate(remaining) if c["cell_type"] == "markdown" and EXERCISES.search(src(c))), None)
    if names_left:
        imp = code_cell(format_from(ex_mod, [n.name for _, n in moved_nodes if getattr(n, "name", None) in names_left]))
        if ex_at is None:
            ex_at = next(k for k, c in enumerate(remaining) if is_code(c) and used_names([parse(src(c)) or ast.Module([], [])]) & checkers) - 1
            by_hand.append("no '## Exercises' heading: the import cell went before the first check cell")
        remaining.insert(ex_at + 1, imp)
        ex_md = remaining[ex_at]
        if ex_md["cell_type"] == "markdown":
            text, n = SOLUTIONS_SENTENCE.subn(f"Solutions, and how each checker is tested, are in [exercises/{ex_stem}](exercises/{ex_stem}.ipynb).", src(ex_md))
            if n: ex_md["source"] = lines_of(text)
            else: by_hand.append("the exercises' introduction does not say where the solutions are in a sentence this script knows: check it")

    # 5. the chapter's exported imports: drop what only the checkers used (unless another module imports it from here)
    rest_trees = [parse(src(c)) for c in remaining if is_export(c)]
    rest_nodes = [n for t in rest_trees for n in t.body]
    still_used = used_names(n for n in rest_nodes if not import_names(n))       # by the module, or by the chapter's other cells
    other_trees = [t for c in remaining if is_code(c) and not is_export(c) for t in [parse(src(c))] if t is not None]
    still_used |= used_names(other_trees) - {name for t in other_trees for n in t.body for name in import_names(n)}
    moved_uses = free_names(moved_code)
    drop = set()
    for n in rest_nodes:
        for name in import_names(n):
            if name in moved_uses and name not in still_used and name != "annotations":
                elsewhere = imported_from_module_elsewhere(mod, name, chapter)
                if elsewhere: by_hand.append(f"{name} is no longer used by {mod} but {', '.join(elsewhere)} import it from there: import it from where it is defined")
                else: drop.add(name)
    dropped = set()
    for c in remaining:
        if is_export(c) and any(import_names(n) for n in parse(src(c)).body):
            text, gone = remove_from_import_lines(src(c), drop)
            if gone: c["source"] = lines_of(text); dropped |= gone
    remaining = [c for c in remaining if not (is_export(c) and all(l.startswith("#|") for l in src(c).splitlines() if l.strip()))]
    nb["cells"] = remaining

    # 6. the new notebook's imports, resolved from the chapter
    lib_defined = {name for n in rest_nodes for name in bound_names(n)}

    def resolve(names, export: bool):
        entries, missing = [], []
        for name in sorted(names):
            if name in CHECK_HELPERS:
                entries.append(("from", f"{PKG}.core" if mod == "core" else f"{PKG}.exercises.core", ast.alias(name=name)))
            elif name in lib_defined: entries.append(("from", f"{PKG}.{mod}", ast.alias(name=name)))
            elif hit := exp_index.find(name) or (None if export else test_index.find(name)): entries.append(hit)
            elif not export and name in FASTCORE_TEST: entries.append(("from", "fastcore.test", ast.alias(name=name)))
            else: missing.append(name)
        order = {id(a): k for k, (_, _, a) in enumerate(exp_index.stmts + test_index.stmts)}      # the chapter's order, then
        late = {f"{PKG}.{mod}": 1, f"{PKG}.exercises.core": 2}                                   # its module, then the helpers
        entries.sort(key=lambda e: (late.get(e[1], 0), order.get(id(e[2]), 0)))
        return entries, missing

    reexport = {n for n in CHECK_HELPERS if n in lib_defined} if mod == "core" else set()     # the other exercise modules import them from here
    exp_entries, exp_missing = resolve(free_names(moved_code) | reexport, export=True)
    if exp_missing: by_hand.append(f"the checkers use names the chapter does not define or import: {exp_missing}")
    test_code = "\n\n".join(src(c) for c in sol_cells if is_code(c) and parse(src(c)) is not None)
    have = {name for kind, m, a in exp_entries for name in [a.asname or a.name.split(".")[0]]} | moved
    test_entries, test_missing = resolve(free_names(test_code) - have, export=False)
    if test_missing: by_hand.append(f"the solutions and tests use names that chapter cells define (not imports): {test_missing}; "
                                    "define or import them in the new notebook")

    # 7. write the new notebook and the chapter
    title_md = next((src(c) for c in cells if c["cell_type"] == "markdown" and src(c).startswith("# ")), "# " + mod)
    title = title_md.splitlines()[0][2:].strip()
    ex_cells = [md_cell(f"# Exercises: {title}\n\n> The checkers of chapter {number.group(1)}'s exercises, the solutions run through them, "
                        "and the tests that each checker accepts a solution and names typical mistakes.\n\n"
                        f"The exercises are in [{chapter.stem}](../{chapter.name}); `{ex_mod}` holds their checkers, so that "
                        f"`{PKG}.{mod}` carries none. Try an exercise before you read its solution here."),
                code_cell(f"#| default_exp exercises.{mod}"),
                code_cell("#| export\nfrom __future__ import annotations\n" + render_imports(exp_entries))]
    if test_entries: ex_cells.append(code_cell(render_imports(test_entries)))
    ex_cells.append(md_cell("## Checkers\n\nEach takes the learner's function, calls it on cases with known answers and prints what is wrong "
                            "(or that all checks pass); it returns True when nothing is."))
    ex_cells += checker_cells + sol_cells
    ex_nb = {"cells": ex_cells, "metadata": nb["metadata"], "nbformat": nb["nbformat"], "nbformat_minor": nb["nbformat_minor"]}

    print(f"{rel(chapter)} -> {rel(target)} (exports {ex_mod})")
    print(f"  moved: {', '.join(sorted(moved))}")
    if kept_src: print(f"  split: {len(kept_src)} cell(s) that also define library code")
    print(f"  solutions and tests moved: {sum(is_code(c) for c in sol_cells)} code cell(s)")
    for line in extra: print(f"  also moved, as a test of a checker: the cell starting {line!r}")
    print(f"  chapter imports: {format_from(ex_mod, sorted(names_left))}" if names_left else "  chapter imports no checker")
    if dropped: print(f"  dropped from {mod}'s imports: {', '.join(sorted(dropped))}")
    for line in by_hand: print(f"  check by hand: {line}")
    if dry_run: return 0
    target.parent.mkdir(exist_ok=True)
    for path, data in ((target, ex_nb), (chapter, nb)):
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        clean = ROOT / ".venv" / "bin" / "nbdev_clean"
        if clean.exists(): subprocess.run([str(clean), "--fname", str(path)], check=True, cwd=ROOT)
    print(f"next: .venv/bin/nbdev_export && tools/run_nb.sh {rel(target)} && "
          f"OMP_NUM_THREADS=1 .venv/bin/nbdev_test --path {rel(chapter)}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--dry-run", action="store_true", help="say what would move, write nothing")
    a = p.parse_args()
    for path in a.notebooks: move(path.resolve(), a.dry_run)
