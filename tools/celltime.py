# Time each code cell of a percent-format notebook script (tools/nbpy.py to-py), skipping slow cells: python tools/celltime.py nb.py
import sys, time, re, io, contextlib, matplotlib
matplotlib.use("Agg")
src = open(sys.argv[1]).read()
cells = re.split(r"^# %%.*$", src, flags=re.M)
heads = re.findall(r"^# %%.*$", src, flags=re.M)
g = {"__name__": "__main__"}
tot=0
for h, c in zip(heads, cells[1:]):
    if "[markdown]" in h or "#| slow" in c or "#| eval: false" in c: continue
    t=time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(c.replace("%matplotlib inline",""), "cell", "exec"), g)
    dt=time.perf_counter()-t; tot+=dt
    if dt>0.3: print(f"{dt:6.2f}s  {c.strip().splitlines()[0][:90]}")
print("total", tot)
