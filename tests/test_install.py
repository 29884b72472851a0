"""`pip install .` gives a working package: a wheel with every exported module and the console script,
installable into a fresh virtual environment (dependencies borrowed from the test environment, no network)."""
import configparser, subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules():
    "Every module of the package, subpackages included: 'core', 'exercises.core', 'exercises.__init__', ..."
    lib = ROOT / "diffusion_course"
    return sorted(".".join(p.relative_to(lib).with_suffix("").parts) for p in lib.rglob("*.py"))


def test_wheel_installs_into_a_fresh_venv(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (whl,) = wheels.glob("diffusion_course-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    for m in modules():
        assert f"diffusion_course/{m.replace('.', '/')}.py" in names, f"{m}.py missing from the wheel"
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    assert "diffusion-course = diffusion_course.cli:main" in zipfile.ZipFile(whl).read(meta).decode()
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    requires = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for pin in ("torch==2.14.1", "torchvision==0.29.1"):
        assert pin in requires.replace(" ", ""), f"{pin} not declared in the wheel's metadata"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # borrow the dependencies (torch, diffusers, ...) from the test environment without its editable checkout:
    # a plain path line in a .pth file adds the folder but does not run the .pth files inside it
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "borrowed_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(whl)], check=True, capture_output=True, timeout=300)
    # the fresh install, not the editable checkout, must be what Python imports there
    out = subprocess.run([str(py), "-c", "import diffusion_course, sys; print(diffusion_course.__file__)"], cwd=tmp_path,
                         check=True, capture_output=True, text=True).stdout
    assert str(venv) in out, out
    p = subprocess.run([str(venv / "bin" / "diffusion-course"), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "evaluate" in p.stdout, p.stderr
    code = "import " + ", ".join(f"diffusion_course.{m.removesuffix('.__init__')}" for m in modules() if m != "__init__")
    subprocess.run([str(py), "-c", code], cwd=tmp_path, check=True, timeout=300)
