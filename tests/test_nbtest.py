"The notebook test runner (tools/nbtest.py): each notebook runs in a fresh process, and a failing cell fails the run."
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def notebook(path: Path, *sources: str) -> Path:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
             for i, s in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {"language": "python", "name": "python3", "display_name": "Python 3"}},
                                "nbformat": 4, "nbformat_minor": 5}))
    return path


def run(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "tools/nbtest.py", "--path", str(path), "--n_workers", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_notebooks_do_not_share_a_process(tmp_path):
    "One worker, two notebooks: what the first registers (as a chapter notebook re-registering its own class does) the second does not see."
    notebook(tmp_path / "a.ipynb", "import diffusion_course.pipelines as p\nclass UNet(p.UNet): pass\np.register_model(UNet)\n"
                                   "assert p.MODEL_CLASSES['UNet'] is UNet")
    notebook(tmp_path / "b.ipynb", "import diffusion_course.pipelines as p, diffusion_course.unet as u\n"
                                   "assert p.MODEL_CLASSES['UNet'] is u.UNet, p.MODEL_CLASSES['UNet'].__module__")
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Success." in r.stdout


def test_a_failing_cell_fails_the_run(tmp_path):
    r = run(notebook(tmp_path / "bad.ipynb", "x = 1", "assert x == 2, 'planted failure'"))
    assert r.returncode == 1
    assert "planted failure" in r.stderr and "bad.ipynb" in r.stderr
