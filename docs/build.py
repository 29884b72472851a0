"""Build the course website (`make docs`) from the committed, executed notebooks, without executing them.

Jupyter Book 1 (Sphinx + myst-nb) renders the book. This script prepares its sources in a build folder
(never touching nbs/), then runs Sphinx:

- copies nbs/*.ipynb (course order = file order) and nbs/exercises/*.ipynb, preprocessed:
  nbdev's `#|` directives are applied and hidden (`hide` drops the cell, `code-fold: true` folds the
  solution), widget outputs (tqdm bars, sliders) become plain notes since their JavaScript would come
  from a CDN, and nbdev's `show_doc` outputs lose the leading `---` rule that docutils rejects
  (chapter 12_controlnet: "Document or section may not begin with a transition") and Quarto's
  `{target=...}` link attributes;
- copies nbs/images, makes the front page from README.md (links into nbs/ point at the pages,
  other repository files at GitHub);
- writes the API reference from the installed package: every public name of every module, its
  signature, its docstring and the chapter notebook it is exported from;
- writes _toc.yml, then `jupyter-book config sphinx` and `sphinx-build` into docs/_build/html.

Usage: python docs/build.py [--out docs/_build] [--jobs N]
"""
import argparse, copy, importlib, inspect, json, pkgutil, re, shutil, subprocess, sys, time
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
DOCS = ROOT / "docs"

cfg = ConfigParser(delimiters=["="])
cfg.read(ROOT / "settings.ini", encoding="utf-8")
GIT_URL = cfg["DEFAULT"]["git_url"]
BRANCH = cfg["DEFAULT"].get("branch", "main")
LIB = cfg["DEFAULT"]["lib_path"]


# ---------------------------------------------------------------- notebooks
def chapter_notebooks():
    "The course's chapters in course order, then the exercises (index first)."
    chapters = sorted(NBS.glob("[0-9]*.ipynb"))
    exercises = sorted((NBS / "exercises").glob("*.ipynb"), key=lambda p: (p.stem != "index", p.name))
    return chapters, exercises


def first_heading(nb):
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")
WIDGET = "application/vnd.jupyter.widget-view+json"
QUARTO_ATTRS = re.compile(r"\)\{[^}]*\}")  # [source](url){target="_blank" style="..."} -> [source](url)


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def fix_markdown_output(text):
    "nbdev's show_doc markdown opens with a `---` rule; docutils refuses a section that starts with a transition."
    lines = text.splitlines()
    while lines and (not lines[0].strip() or re.fullmatch(r"\s*(-{3,}|\*{3,}|_{3,})\s*", lines[0])):
        lines.pop(0)
    return QUARTO_ATTRS.sub(")", "\n".join(lines))


def widget_note(output):
    "A widget output (its state needs JavaScript from a CDN): tqdm bars go, other widgets say what they were."
    plain = "".join(output.get("data", {}).get("text/plain", ""))
    if re.search(r"\d+%\|.*\|", plain) or "it/s]" in plain:
        return None  # a progress bar frozen at 0%: its finished text, if any, is in the stream output
    kind = plain.split("(", 1)[0] or "widget"
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/markdown": f"*A widget (`{kind}`): run the notebook in Jupyter to use it.*",
                     "text/plain": plain}}


def preprocess(nb):
    "A copy of the notebook as the website shows it (nbdev's directives applied, offline-safe outputs)."
    nb = copy.deepcopy(nb)
    nb["metadata"].pop("widgets", None)
    cells = []
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("widgets", None)
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        lines = _src(cell).splitlines()
        directives = {}
        while lines and DIRECTIVE.match(lines[0]):
            name, value = DIRECTIVE.match(lines[0]).groups()
            directives[name] = value
            lines.pop(0)
        if "hide" in directives or directives.get("include") == "false":
            continue
        cell["source"] = "\n".join(lines)
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if directives.get("code-fold") in ("true", "show"):
            tags.append("hide-input")
        if directives.get("echo") == "false":
            tags.append("remove-input")
        if directives.get("output") == "false":
            tags.append("remove-output")
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET in data:
                out = widget_note(out)
                if out is None:
                    continue
            elif "text/markdown" in data:
                md = data["text/markdown"]
                data["text/markdown"] = fix_markdown_output(md if isinstance(md, str) else "".join(md))
            outputs.append(out)
        cell["outputs"] = outputs
        if not cell["source"].strip() and not outputs:
            continue
        cells.append(cell)
    nb["cells"] = cells
    return nb


# ---------------------------------------------------------------- front page
def front_page(readme, api_modules):
    "README.md as the book's front page: links into nbs/ point at the pages, other repository files at GitHub."
    def link(m):
        target = m.group(1)
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        path, _, frag = target.partition("#")
        frag = "#" + frag if frag else ""
        if path.startswith("nbs/"):
            return f"]({path[len('nbs/'):]}{frag})"
        return f"]({GIT_URL}/blob/{BRANCH}/{path}{frag})"
    def chapter_row(m):  # the chapters table: `00_core` -> its page, `diffusion_course.core` -> its API page
        nb, mod = m.group(1), m.group(2)
        cell = f"[`{nb}`]({nb}.ipynb)" if (NBS / f"{nb}.ipynb").exists() else f"`{nb}`"
        mcell = f"[`{mod}`]({api_docname(mod)}.md)" if mod in api_modules else f"`{mod}`"
        return f"| {cell} | {mcell} |"
    readme = re.sub(r"^\| `(\w+)` \| `(" + LIB + r"\.\w+)` \|", chapter_row, readme, flags=re.M)
    return re.sub(r"\]\(([^)\s]+)\)", link, readme)


# ---------------------------------------------------------------- API reference
MARKER = re.compile(r"^# %% (\S+\.ipynb)")


def notebook_of(obj, source_lines, module_file):
    "The notebook cell an object was exported from: the `# %% ../nbs/X.ipynb` marker above its definition."
    try:
        if inspect.getsourcefile(obj) != str(module_file):
            return None
        line = inspect.getsourcelines(obj)[1]
    except (TypeError, OSError):
        return None
    for i in range(line - 1, -1, -1):
        m = MARKER.match(source_lines[i])
        if m:
            return (module_file.parent / m.group(1)).resolve()
    return None


class _Ann(str):
    "An annotation kept as written (`from __future__ import annotations` makes them strings): shown unquoted."
    def __repr__(self):
        return str(self)


def signature(name, obj, drop_self=False):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # e.g. an exception class: show what it derives from
        bases = ", ".join(b.__name__ for b in getattr(obj, "__bases__", ()) if b is not object)
        return f"{name}({bases})" if inspect.isclass(obj) else f"{name}(...)"
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    params = [p.replace(annotation=_Ann(p.annotation)) if isinstance(p.annotation, str) else p for p in params]
    ann = sig.return_annotation
    ret = "" if ann is inspect.Signature.empty else " -> " + (ann if isinstance(ann, str) else inspect.formatannotation(ann))
    params = [str(p) for p in params]
    one = f"{name}({', '.join(params)}){ret}"
    if len(one) <= 100:
        return one
    return f"{name}(\n" + "".join(f"    {p},\n" for p in params) + f"){ret}"


def public_methods(cls):
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name != "__call__":
            continue
        fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if isinstance(member, property):
            yield name, member, "property"
        elif inspect.isfunction(fn):
            yield name, fn, ("classmethod" if isinstance(member, classmethod)
                             else "staticmethod" if isinstance(member, staticmethod) else "method")


def chapter_link(nb_path, depth):
    "A MyST link from an API page to the chapter page of a notebook (None outside nbs/)."
    try:
        rel = nb_path.relative_to(NBS)
    except ValueError:
        return None
    return "../" * depth + rel.with_suffix("").as_posix()


def doc_text(obj):
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else "*(no docstring)*"


def module_page(modname, depth):
    "MyST markdown for one module: its summary, then each public name with signature, docstring and chapter."
    mod = importlib.import_module(modname)
    mfile = Path(mod.__file__).resolve()
    lines = mfile.read_text(encoding="utf-8").splitlines()
    header = next((l for l in lines[:12] if "File to edit:" in l), "")
    m = re.search(r"File to edit: (\S+\.ipynb)", header)
    mod_nb = (mfile.parent / m.group(1)).resolve() if m else None
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, o in vars(mod).items() if not n.startswith("_")
                 and getattr(o, "__module__", None) == modname]
    out = [f"# `{modname}`", ""]
    if mod.__doc__:
        out += [mod.__doc__.strip(), ""]
    if mod_nb:
        link = chapter_link(mod_nb, depth)
        out += [f"Exported from the notebook [{mod_nb.relative_to(ROOT).as_posix()}]({link}.ipynb) "
                f"({{doc}}`{link}`).", ""]
    constants = []
    for name in names:
        obj = getattr(mod, name, None)
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isroutine(obj)):
            constants.append((name, obj))
            continue
        kind = "class" if inspect.isclass(obj) else "function"
        out += [f"## {name}", ""]
        out += ["```python", f"{kind} {signature(name, obj)}" if kind == "class" else f"def {signature(name, obj)}",
                "```", ""]
        nb = notebook_of(obj, lines, mfile) or mod_nb
        link = chapter_link(nb, depth) if nb else None
        if getattr(obj, "__module__", modname) != modname:
            out += [f"*Re-exported from `{obj.__module__}`.*", ""]
        elif link:
            out += [f"*From chapter {{doc}}`{link}` (`{nb.relative_to(ROOT).as_posix()}`).*", ""]
        out += [doc_text(obj), ""]
        if inspect.isclass(obj) and getattr(obj, "__module__", None) == modname:
            for mname, member, mkind in public_methods(obj):
                out += [f"### {name}.{mname}", ""]
                if mkind == "property":
                    out += ["```python", f"@property {mname}", "```", ""]
                    out += [doc_text(member.fget) if member.fget else "", ""]
                    continue
                fn = member
                sig = signature(mname, fn, drop_self=(mkind == "method"))
                prefix = f"@{mkind}\n" if mkind != "method" else ""
                out += ["```python", f"{prefix}def {sig}", "```", "", doc_text(fn), ""]
    if constants:
        out += ["## Constants", "", "| name | value |", "|---|---|"]
        for name, obj in constants:
            r = repr(obj).replace("|", "\\|").replace("\n", " ")
            r = r if len(r) <= 90 else r[:87] + "..."
            out.append(f"| `{name}` | `{r}` |")
        out.append("")
    return "\n".join(out)


def library_modules():
    "Every public module of the package, subpackages included, and the exercises' modules, in name order."
    pkg = importlib.import_module(LIB)
    names = sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{LIB}.")
                   if not any(part.startswith("_") for part in m.name.split(".")))
    exercises = f"{LIB}.exercises"
    return ([m for m in names if m != exercises and not m.startswith(exercises + ".")],
            [m for m in names if m.startswith(exercises + ".")])


def api_docname(modname):
    "diffusion_course.training.config -> api/training/config (a package's page sits beside its folder)."
    return "api/" + modname[len(LIB) + 1:].replace(".", "/")


def summary(modname):
    doc = (importlib.import_module(modname).__doc__ or "").strip().split("\n")[0]
    return (doc if len(doc) < 160 else doc[:157] + "...").replace("|", "/")


def api_pages(src):
    "api/index.md, one page per library module, api/exercises.md and one page per exercises module."
    lib, exe = library_modules()
    for m in lib + exe:
        doc = src / (api_docname(m) + ".md")
        doc.parent.mkdir(parents=True, exist_ok=True)
        page = module_page(m, depth=api_docname(m).count("/"))
        subs = [s for s in lib + exe if s.rsplit(".", 1)[0] == m]
        if subs:
            page += "\n## Modules\n\n| module | summary |\n|---|---|\n" + "".join(
                f"| [`{s}`]({Path(api_docname(s)).relative_to(Path(api_docname(m)).parent).as_posix()}.md) "
                f"| {summary(s)} |\n" for s in subs)
        doc.write_text(page, encoding="utf-8")
    idx = ["# API reference", "",
           f"Generated by `make docs` from the installed package `{LIB}`: every public function and class of "
           "each module (its `__all__`), with its signature, its docstring and the chapter notebook it is exported "
           "from (the `# %% ../nbs/X.ipynb` marker above its definition in the module).", "",
           "| module | summary |", "|---|---|"]
    idx += [f"| [`{m}`]({api_docname(m)[4:]}.md) | {summary(m)} |" for m in lib]
    idx += ["", f"The exercise checkers: [`{LIB}.exercises`](exercises.md).", ""]
    (src / "api" / "index.md").write_text("\n".join(idx), encoding="utf-8")
    ex = [f"# `{LIB}.exercises`", "", (importlib.import_module(f"{LIB}.exercises").__doc__ or "").strip(), "",
          "| module | summary |", "|---|---|"]
    ex += [f"| [`{m}`]({api_docname(m)[4:]}.md) | {summary(m)} |" for m in exe]
    (src / "api" / "exercises.md").write_text("\n".join(ex) + "\n", encoding="utf-8")
    return [api_docname(m) for m in lib], [api_docname(m) for m in exe]


# ---------------------------------------------------------------- book
def write_toc(src, chapters, exercises, lib_pages, ex_pages):
    def entries(files, indent):
        "A toc list in which api/a/b sits under api/a when that page exists."
        out = ""
        for f in files:
            if "/".join(f.split("/")[:-1]) in files:
                continue
            out += f"{' ' * indent}- file: {f}\n"
            subs = [g for g in files if g.startswith(f + "/")]
            if subs:
                out += f"{' ' * indent}  sections:\n" + entries(subs, indent + 4)
        return out
    toc = ("# Written by docs/build.py: the chapters in course order (nbs/*.ipynb), the exercises, the API.\n"
           "format: jb-book\nroot: index\nparts:\n"
           "  - caption: Chapters\n    chapters:\n" + entries([p.stem for p in chapters], 6) +
           "  - caption: Exercises and solutions\n    chapters:\n" +
           entries([f"exercises/{p.stem}" for p in exercises], 6) +
           "  - caption: API reference\n    chapters:\n      - file: api/index\n        sections:\n" +
           entries(lib_pages, 10) + "      - file: api/exercises\n        sections:\n" + entries(ex_pages, 10))
    (src / "_toc.yml").write_text(toc, encoding="utf-8")


def prepare(src):
    "The book's sources in src; returns the chapters, the exercises and the number of warnings about them."
    if src.exists():
        shutil.rmtree(src)
    (src / "exercises").mkdir(parents=True)
    shutil.copy(DOCS / "_config.yml", src / "_config.yml")
    shutil.copytree(NBS / "images", src / "images")
    chapters, exercises = chapter_notebooks()
    notes = 0
    for nb_path in chapters + exercises:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        if first_heading(nb) is None:
            raise SystemExit(f"docs: {nb_path.relative_to(ROOT)} has no '# ' title heading (the sidebar needs one)")
        for cell in nb["cells"]:
            bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", _src(cell))
            if bad:
                notes += 1  # e.g. "\frac" written from a non-raw Python string: "\f" became a form feed
                print(f"docs: WARNING: {nb_path.relative_to(ROOT)} cell {cell.get('id')}: control character "
                      f"{bad.group(0)!r} in its {cell['cell_type']} source (a TeX command such as \\frac, \\bar, "
                      f"\\alpha, \\tan written through a non-raw Python string?): MathJax cannot typeset it",
                      file=sys.stderr)
        dest = src / nb_path.relative_to(NBS)
        dest.write_text(json.dumps(preprocess(nb), indent=1, ensure_ascii=False), encoding="utf-8")
    lib_pages, ex_pages = api_pages(src)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(front_page(readme, set(library_modules()[0])), encoding="utf-8")
    write_toc(src, chapters, exercises, lib_pages, ex_pages)
    return chapters, exercises, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DOCS / "_build"), help="build folder (the site goes to OUT/html)")
    ap.add_argument("--jobs", default="1", help="Sphinx parallel jobs (jupyter-book's multitoc extension reads serially anyway)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    src, html = out / "src", out / "html"
    t0 = time.time()
    chapters, exercises, notes = prepare(src)
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "jupyter-book"), "config", "sphinx", str(src)], check=True,
                   stdout=subprocess.DEVNULL)
    with open(src / "conf.py", "a", encoding="utf-8") as f:  # thebe and comments would load their code from CDNs
        f.write("\n# docs/build.py: offline book, no live kernels or comment widgets from CDNs\n"
                "extensions = [e for e in extensions if e not in ('sphinx_thebe', 'sphinx_comments')]\n")
    if html.exists():
        shutil.rmtree(html)
    log = out / "sphinx-warnings.log"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", args.jobs,
                        "-d", str(out / "doctrees"), "-w", str(log), str(src), str(html)])
    warnings = [l for l in log.read_text(encoding="utf-8").splitlines() if "WARNING" in l or "ERROR" in l]
    for w in warnings:
        print("docs:", w.replace(str(src) + "/", ""), file=sys.stderr)
    if r.returncode:
        raise SystemExit(f"docs: sphinx-build failed (exit {r.returncode}); see {log}")
    print(f"docs: {len(chapters)} chapters, {len(exercises)} exercise notebooks, API reference; "
          f"{len(warnings) + notes} warnings; built in {time.time() - t0:.0f} s -> {html.relative_to(ROOT)}/index.html")


if __name__ == "__main__":
    main()
