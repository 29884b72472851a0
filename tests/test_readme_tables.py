"""README's result tables say what the runs say: generated tables equal the notebooks' result files (nbs/results/*.json),
every number of a checked table is printed by its source (a notebook's committed outputs or a bench result file), every
table under "## Results" is one or the other, and the check catches a drifted number."""
import importlib.util, json, shutil, subprocess, sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "readme_tables.py"
spec = importlib.util.spec_from_file_location("readme_tables", TOOL)
rt = importlib.util.module_from_spec(spec); spec.loader.exec_module(rt)

# Subsections of README's "## Results" (their ### headings) whose tables may stay unmarked. None today; a section listed here
# must still hold an unmarked table (no stale exemptions).
UNMARKED_SECTIONS = []


def check(root=None):
    tool = (root / "tools" / TOOL.name) if root else TOOL
    return subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)


def results_section(text):
    start = text.index("\n## Results\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def unmarked_tables(text):
    "{### heading: number of markdown tables outside any generated or checked block} in README's Results section."
    section = rt.BLOCK.sub("", results_section(text))
    section = rt.CHECKED.sub("", section)
    found, heading, in_table = {}, None, False
    for line in section.split("\n"):
        if line.startswith("### "): heading = line[4:].strip()
        if line.startswith("|") and not in_table: found[heading] = found.get(heading, 0) + 1
        in_table = line.startswith("|")
    return found


def copy_repo(tmp_path):
    "The tool, README, nbs/results and every source that a checked table names, in a scratch folder."
    (tmp_path / "tools").mkdir(); (tmp_path / "nbs").mkdir()
    shutil.copy(TOOL, tmp_path / "tools" / TOOL.name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "nbs" / "results", tmp_path / "nbs" / "results")
    for m in rt.CHECKED.finditer((ROOT / "README.md").read_text()):
        for s in m.group(1).split(","):
            (tmp_path / s).parent.mkdir(parents=True, exist_ok=True); shutil.copy(ROOT / s, tmp_path / s)
    return tmp_path


def test_readme_tables_match_results():
    r = check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tables agree" in r.stdout and "checked tables: every number appears in its source" in r.stdout


def test_every_results_table_is_generated_or_checked():
    text = (ROOT / "README.md").read_text()
    left = unmarked_tables(text)
    assert {h: n for h, n in left.items() if h not in UNMARKED_SECTIONS} == {}, \
        "tables under ## Results without a `<!-- table ... -->` or `<!-- checked ... -->` marker (see tools/readme_tables.py)"
    assert all(h in left for h in UNMARKED_SECTIONS), f"{[h for h in UNMARKED_SECTIONS if h not in left]}: marked now, remove from UNMARKED_SECTIONS"
    assert len(rt.CHECKED.findall(text)) >= 10 and len(rt.BLOCK.findall(text)) >= 9      # the markers this finds are the tool's


def test_unmarked_table_is_found():
    "The coverage test itself can fail: an unmarked table in a section, a marked one not counted."
    text = "# x\n## Results\n### A\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n### B\n<!-- checked s.md: x -->\n| a |\n|---|\n| 1 |\n<!-- /checked -->\n## Layout\n| c |\n"
    assert unmarked_tables(text) == {"A": 1}


def test_check_catches_a_changed_number(tmp_path):
    "A copy of the repository's README, tool and results: changing one result makes --check fail and name the fix."
    copy_repo(tmp_path)
    assert check(tmp_path).returncode == 0
    files = sorted((tmp_path / "nbs" / "results").glob("*.json"))
    assert files, "no result files"
    path = tmp_path / "nbs" / "results" / "04e_cache.json"
    d = json.loads(path.read_text())
    d["ema_vs_raw_50_steps"]["0"]["ema"] += 1.0                           # a run that measured something else
    path.write_text(json.dumps(d))
    r = check(tmp_path)
    assert r.returncode == 1 and "make readme-tables" in r.stdout, r.stdout
    assert subprocess.run([sys.executable, str(tmp_path / "tools" / TOOL.name)], capture_output=True).returncode == 0      # regenerating repairs it
    assert check(tmp_path).returncode == 0


def test_check_catches_a_changed_digit_in_a_checked_table(tmp_path):
    "A copy of the repository: one digit changed in chapter 07's hand-typed table makes --check fail, naming number, table and source."
    copy_repo(tmp_path)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    row = "| DDIM eta = 0 (diffusers' defaults: x_0 clipped, eps not) | 10.31 | 8.18 | 9.36 | 15.32 | 46.22 |"
    assert text.count(row) == 1
    readme.write_text(text.replace(row, row.replace("46.22", "46.23")))           # the 1,000-step FID, one digit off
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert "46.23" in r.stdout and "DDIM against DDPM" in r.stdout and "nbs/07_ddim.ipynb" in r.stdout, r.stdout
    readme.write_text(text)
    assert check(tmp_path).returncode == 0


def first_measured_digit(text, m):
    "Position in `text` of the last digit of the first number in the first measured cell of the checked block `m`."
    lines = m.group(3).split("\n")
    off = m.start(3) + len(lines[0]) + len(lines[1]) + 2                 # the first row below the header and separator
    row = lines[2]
    cell2 = row.index("|", 1) + 1
    num = rt.NUM.search(row, cell2)
    return off + num.end() - 1 - (1 if num.group(0).endswith("%") else 0)


def test_every_checked_table_catches_a_changed_digit():
    "In every checked table, the first measured number with its last digit changed is reported, with the table's line."
    text = (ROOT / "README.md").read_text()
    blocks = list(rt.CHECKED.finditer(text))
    assert blocks
    for m in blocks:
        a = first_measured_digit(text, m)
        planted = text[:a] + str((int(text[a]) + 1) % 10) + text[a + 1:]
        n, problems = rt.check_tables(planted)
        line = text[:m.start()].count("\n") + 1
        assert any(f"README.md line {line} " in p for p in problems), (m.group(1), text[a - 6:a + 1], problems)


def test_how_numbers_are_read():
    nums = lambda s: [(str(v), pc) for v, pc, _ in rt.numbers(s)]
    assert nums("2.95-3.44") == [("2.95", False), ("3.44", False)]                # a range, not a negative number
    assert nums("(-0.0036-0.0044)") == [("-0.0036", False), ("0.0044", False)]
    assert nums("**2,986** steps, 5.10 ± 0.23, 4.2x, +0.13, -0.09") == [("2986", False), ("5.10", False), ("0.23", False),
                                                                          ("4.2", False), ("0.13", False), ("-0.09", False)]
    assert nums("9.6% of 28x28 x_0 UNet2DModel sigma^2 v1.2") == [("9.6", True), ("28", False)]
    assert [str(v) for v, _, _ in rt.numbers("[100,200] 1.6e-05", source=True)] == ["100200", "100", "200", "0.000016"]


def test_how_numbers_compare():
    pool = {Decimal("2.6"), Decimal("0.0962"), Decimal("286.1"), Decimal("34.5"), Decimal("-0.09")}
    found = lambda s, rounded=False: rt.found(*rt.numbers(s)[0][:2], pool, rounded)
    assert found("2.6") and found("2.60") and not found("2.61") and not found("2.7")       # equal as numbers, at any printed zeros
    assert found("9.62%") and not found("9.6%") and found("9.6%", True)                     # a percentage as a fraction (0.0962)
    assert not found("0.09") and found("-0.09")                                            # a sign counts
    assert not found("286") and found("286", True) and not found("287", True)              # rounding only where the table says so
    assert found("34", True) and found("35", True)                                         # 34.5: half to even or half up
    assert found("3", True) and not found("2.600001", True)                                # rounding drops digits, never adds them


def test_ignore_and_options(tmp_path):
    "`ignore:` exempts settings in labels only, never a measured cell; stale exemptions and unknown options are problems."
    (tmp_path / "s.md").write_text("FID 3.71 and 2.85 at N = 200\n")
    table = "| N = 200, 50 steps | FID |\n|---|---|\n| 10 steps | {} |\n"
    ok = "## Results\n<!-- checked s.md: x; tools/readme_tables.py --check; ignore: 10 50 -->\n" + table.format("3.71") + "<!-- /checked -->\n"
    assert rt.check_tables(ok, tmp_path) == (1, [])
    assert rt.check_tables(ok.replace("ignore: 10 50", "ignore: 10"), tmp_path)[1][0].endswith("is not in s.md")     # 50 unexempted
    assert "no header or row label holds" in rt.check_tables(ok.replace("ignore: 10 50", "ignore: 10 50 7"), tmp_path)[1][0]
    measured = ok.replace("| 10 steps | 3.71 |", "| 10 steps | 10 |")
    assert rt.check_tables(measured, tmp_path)[1] and "10 (row '10 steps'" in rt.check_tables(measured, tmp_path)[1][0]
    assert "unknown option" in rt.check_tables(ok.replace("ignore: 10 50", "ignore: 10 50; roundd"), tmp_path)[1][0]
    assert "does not exist" in rt.check_tables(ok.replace("s.md", "t.md", 1), tmp_path)[1][0]


def test_a_row_comes_from_one_output(tmp_path):
    "A notebook row's numbers must be printed by one cell, unless the marker says `rows span outputs`."
    cell = lambda text: {"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1,
                         "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
    (tmp_path / "n.ipynb").write_text(json.dumps({"cells": [cell("a 1.25 b 2.50\n"), cell("c 3.75\n")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    text = "<!-- checked n.ipynb: x -->\n| run | x | y |\n|---|---|---|\n| a | 1.25 | {} |\n<!-- /checked -->\n"
    assert rt.check_tables(text.format("2.50"), tmp_path) == (1, [])
    assert "no one cell's outputs prints them all" in rt.check_tables(text.format("3.75"), tmp_path)[1][0]
    assert rt.check_tables(text.format("3.75").replace("x -->", "x; rows span outputs -->"), tmp_path) == (1, [])
