"""Learner comforts (issue 25). Progress bars in logs: with stderr redirected to a file, as in CI or `cmd > log 2>&1`, a bar
redraws at most every 30 s (`core.progress_bar`), not ten times a second, and every loop of the package goes through it.
Figures: no chapter lowers matplotlib's 100 dpi. Every chapter's first cell says what to read first, how long it takes and
whether a GPU helps (a paragraph that starts with "Before you start")."""
import json, os, re, subprocess, sys, time
from pathlib import Path

import diffusion_course

BIN = Path(sys.executable).parent
NBS = Path(__file__).resolve().parent.parent / "nbs"
PACKAGE = Path(diffusion_course.__file__).parent
ENV = {k: v for k, v in os.environ.items() if k != "DIFFUSION_COURSE_PROGRESS_INTERVAL"}
ENV.update(DIFFUSION_COURSE_DEVICE="cpu", OMP_NUM_THREADS="1")


def redraws(text: str) -> list[str]:
    "The bar's redraws in a log: tqdm separates them with carriage returns, which a CI log shows as new lines."
    return [l for l in text.replace("\r", "\n").split("\n") if "it/s" in l or "s/it" in l or "it]" in l]


def test_training_log_is_not_flooded(tmp_path):
    # 300 steps of a tiny model (a few seconds): plain tqdm would redraw dozens of times
    log = tmp_path / "stderr.log"
    args = [BIN / "diffusion-course", "train", "--dataset", "digits", "--batch-size", "16", "--base-channels", "8", "--steps", "300",
            "--seed", "3", "--out", tmp_path / "run"]
    t0 = time.time()
    with open(log, "w") as err:
        p = subprocess.run(list(map(str, args)), stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, timeout=600)
    seconds = time.time() - t0
    text = log.read_text()
    assert p.returncode == 0, text[-2000:]
    bars = redraws(text)
    assert bars and "300/300" in bars[-1], text[-1000:]                  # the final line is there
    assert len(bars) <= seconds / 30 + 3, f"{len(bars)} redraws in {seconds:.0f} s:\n" + "\n".join(bars[:10])


def test_every_loop_uses_progress_bar():
    # one place decides how a bar behaves: no module but core calls tqdm itself
    calls = {p.relative_to(PACKAGE).as_posix(): re.findall(r"\b(?:tqdm|trange)\(", p.read_text())
             for p in PACKAGE.rglob("*.py") if p.name != "core.py"}
    assert not {k: v for k, v in calls.items() if v}, calls


def test_figures_keep_100_dpi():
    low = {p.name: m for p in NBS.glob("*.ipynb") for m in re.findall(r'figure\.dpi\W+=\s*(\d+)', p.read_text()) if int(m) < 100}
    assert not low, f"notebooks that lower figure.dpi below 100 (small, blurry figures): {low}"


def test_every_chapter_says_what_it_takes():
    missing = []
    for p in sorted(NBS.glob("[0-9]*.ipynb")):
        first = "".join(json.loads(p.read_text())["cells"][0]["source"])
        if not re.search(r"\*\*Before you start\.\*\* Read first: .+ Reading takes about \d+ minutes.+test mode.+GPU", first, re.S):
            missing.append(p.name)
    assert not missing, f"first cell without the 'Before you start' paragraph (read first, reading and running times, GPU): {missing}"
