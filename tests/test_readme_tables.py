"README's result tables say what the notebooks' result files (nbs/results/*.json) say, and the check catches a drifted number."
import json, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "readme_tables.py"


def test_readme_tables_match_results():
    r = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tables agree" in r.stdout


def test_check_catches_a_changed_number(tmp_path):
    "A copy of the repository's README, tool and results: changing one result makes --check fail and name the fix."
    (tmp_path / "tools").mkdir(); (tmp_path / "nbs").mkdir()
    shutil.copy(TOOL, tmp_path / "tools" / TOOL.name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "nbs" / "results", tmp_path / "nbs" / "results")
    tool = tmp_path / "tools" / TOOL.name
    assert subprocess.run([sys.executable, str(tool), "--check"], capture_output=True).returncode == 0
    files = sorted((tmp_path / "nbs" / "results").glob("*.json"))
    assert files, "no result files"
    path = tmp_path / "nbs" / "results" / "04e_cache.json"
    d = json.loads(path.read_text())
    d["ema_vs_raw_50_steps"]["0"]["ema"] += 1.0                           # a run that measured something else
    path.write_text(json.dumps(d))
    r = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "make readme-tables" in r.stdout, r.stdout
    assert subprocess.run([sys.executable, str(tool)], capture_output=True).returncode == 0      # regenerating repairs it
    assert subprocess.run([sys.executable, str(tool), "--check"], capture_output=True).returncode == 0
