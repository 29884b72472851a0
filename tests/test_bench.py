"The bench's pure parts (bench/, issue 13): GPU names to datasheet peaks, medians of runs with failures, and the saved reports still render."
import json, math, sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import benchlib as B  # noqa: E402
import bench  # noqa: E402


@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "H100 HBM3"),   # what an H100 SXM reports
    ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200"), ("NVIDIA H200 NVL", "H200 NVL"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA A10", "A10"),
    ("NVIDIA GH200 480GB", None), ("Tesla T4", None),            # not in the table: no peak rather than a wrong one
])
def test_gpu_peak_key(name, key):
    assert B.gpu_peak_key(name) == key


def test_median_spread_leaves_out_failed_runs():
    d = B.median_spread([3.0, float("nan"), 1.0, 2.0])
    assert (d["median"], d["min"], d["max"], d["n"], d["failed"]) == (2.0, 1.0, 3.0, 3, 1)
    assert math.isnan(B.median_spread([float("nan")])["median"])


@pytest.mark.parametrize("report", sorted(p.name for p in (BENCH / "results").glob("*.json")
                                          if p.stem in ("bench", "quick", "bench600", "bench_cuda")))
def test_saved_reports_render(report):
    "The markdown is rendered from the saved numbers: a change to the tables must still read every committed report."
    r = json.loads((BENCH / "results" / report).read_text())
    md = bench.markdown(r)
    assert md.startswith("# Benchmark:") and "## Phase times" in md
    if r.get("headline"):
        for row in r["headline"]["rows"]: assert row["label"] in md
