"""`nbdev_test`, each notebook in a fresh process (`make test`, `make nbtest`).

nbdev_test hands notebooks to a pool of worker processes that each run many notebooks in turn, so what one notebook
leaves in a module (a model class registered by a notebook that defines it in `__main__`, a changed default) is
seen by the next notebook of the same worker: a test result then depends on which notebooks happened to share a
worker. Here every notebook gets its own process (`max_tasks_per_child=1`), forked from a server that has already
imported torch and the package, so the isolation costs a fork, not an import. Same flags, same skipping of cells
and notebooks (`tst_flags`, `skip_exec`, `.notest`), same "Success." line and `--timing` table as nbdev_test.

    python tools/nbtest.py [--n_workers 2] [--timing] [--flags slow] [--path nbs/04e_training_at_scale.ipynb]
"""
import argparse, multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.test import _keep_file, test_nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", default=None, help="a notebook or folder (default: the project's nbs/)")
    p.add_argument("--flags", default="", help="space-separated tst_flags whose cells run anyway (e.g. 'slow')")
    p.add_argument("--n_workers", type=int, default=min(os.cpu_count() or 1, 8))
    p.add_argument("--timing", action="store_true", help="print each notebook's seconds, slowest first")
    a = p.parse_args(argv)
    cfg = get_config()
    files = [f.absolute() for f in sorted(nbglob(a.path, as_path=True)) if _keep_file(f, ".notest")]
    if not files: print("No files were eligible for testing"); return 0
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "diffusion_course.pipelines", "nbdev.test"])
    kw = dict(skip_flags=cfg.tst_flags.split(), force_flags=a.flags.split(), basepath=cfg.config_path)
    start = time.time()
    os.chdir(cfg.nbs_path)
    with ProcessPoolExecutor(max(a.n_workers, 1), mp_context=ctx, max_tasks_per_child=1) as ex:
        futures = [ex.submit(test_nb, f, **kw) for f in files]
        results = [fu.result() for fu in futures]
    failed = [f.name for (ok, _), f in zip(results, files) if not ok]
    if failed:
        sys.stderr.write("\nnbdev Tests Failed On The Following Notebooks:\n" + "=" * 50 + "\n\t" + "\n\t".join(failed) + "\n")
    else:
        print("Success.")
    if a.timing:
        for (_, t), f in sorted(zip(results, files), key=lambda o: -o[0][1]): print(f"{f.name}: {int(t)} secs")
        print(f"all notebooks: {time.time() - start:.0f} s with {a.n_workers} workers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
