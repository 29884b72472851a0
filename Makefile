# diffusion_course: one command to set up and test (`make test`), one to run the main job (`make demo`).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The notebook tests (tools/nbtest.py: nbdev_test with a fresh process per notebook) run $(NB_WORKERS) notebooks at once,
# each with $(NB_THREADS) torch threads.
NB_WORKERS ?= 2
NB_THREADS ?= 1
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: install data models export check-export nbtest pytest test demo lab nb fill clean help readme-tables bench bench-quick bench-sweep bench-precision bench-speed docs docs-serve docs-test

help:
	@echo "make test   - set up .venv, the data, then test notebooks and package, build the website and test it in Chromium (what CI runs)"
	@echo "make docs   - the course as a website (docs/_build/html) from the committed notebooks, not executed; offline (about 30 s)"
	@echo "make docs-serve - serve it on http://localhost:$(DOCS_PORT) (DOCS_PORT=...)"
	@echo "make docs-test  - build it, then check every page in headless Chromium (apt-get install chromium; about 1-2 min)"
	@echo "make demo   - train a DDPM on Fashion-MNIST for 10 minutes of this machine (DEMO_ARGS=\"--minutes M\" or \"--steps N\"), then samples, loss curve, FID"
	@echo "make lab    - open the notebooks in JupyterLab"
	@echo "make nb NB=nbs/X.ipynb - execute a notebook in place with its slow cells, shrink its PNGs, clean it"
	@echo "make readme-tables - rewrite README's marked result tables from nbs/results/*.json (what the notebooks' slow cells measured)"
	@echo "make fill NB=nbs/X.ipynb - run a notebook as the tests do (no slow cells) and fill only the cells without outputs (after editing them)"
	@echo "              SLOW=1: also run the slow cells that have no outputs (new self-contained slow experiments)"
	@echo "make bench  - benchmark (about 23 min on 2 idle cores): FID per training budget vs diffusers and denoising-diffusion-pytorch, throughput, FLOP/s"
	@echo "              (BUDGET=90 s per run, N=250, SAMPLE_STEPS=50, SEEDS=3, BENCH_THREADS=nproc); writes bench/results/bench.{json,md}"
	@echo "make bench-sweep - the peers' learning-rate sweep that feeds make bench (SWEEP_BUDGET=60 s per run, about 13 min)"
	@echo "make bench-quick - the bench end to end at a tiny budget (a smoke test, a few minutes; not valid figures)"
	@echo "make bench-precision - bf16 autocast against float32 for the course model's training step on this CPU (about 3 min)"
	@echo "make bench-speed - CPU speed levers for the training step: bf16, channels_last, AdamW foreach/fused, torch.compile, threads (about 6 min)"

# Reinstall only when the dependency declarations change.
# (not pyproject.toml: nbdev_export rewrites it on every run)
$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23" "setuptools>=68" wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The website's tools (settings.ini's docs_requirements: Jupyter Book 1, MathJax from PyPI, Playwright), installed once.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) settings.ini setup.py
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

# Fashion-MNIST: Debian's package when we can install it, else torchvision's download.
data: $(STAMP)
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "data: Fashion-MNIST found in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null \
	    && echo "data: installed Debian package dataset-fashion-mnist" \
	    || $(BIN)/python -m diffusion_course.data; \
	else \
	  $(BIN)/python -m diffusion_course.data; \
	fi

# The course classifier behind FID, KID and IS (chapter 05): trained once and cached (about 2 minutes of CPU),
# before the notebooks that need it run side by side (1 thread: the same weights as the committed chapter 05).
models: $(STAMP) data
	@OMP_NUM_THREADS=1 $(BIN)/python -c "from diffusion_course.metrics import load_or_train_classifier as f; m = f(progress=False); print(f'models: course classifier ready (test accuracy {m.info[\"test_accuracy\"]:.4f})')"

export: $(STAMP)
	$(BIN)/nbdev_export

# The package must be exactly what the notebooks export.
check-export: $(STAMP)
	@rm -rf .export-check && mkdir .export-check && cp -r diffusion_course .export-check/
	@$(BIN)/nbdev_export
	@if diff -r -x __pycache__ .export-check/diffusion_course diffusion_course; then \
	  echo "check-export: notebooks and package are in sync"; rm -rf .export-check; \
	else \
	  echo "check-export: nbdev_export changed diffusion_course/ (diff above): run 'make export' and commit"; rm -rf .export-check; exit 1; \
	fi

nbtest: $(STAMP) data models
	OMP_NUM_THREADS=$(NB_THREADS) $(BIN)/python tools/nbtest.py --n_workers $(NB_WORKERS) --timing

pytest: $(STAMP) data
	$(BIN)/python -m pytest tests/ -q -rs

test: $(STAMP) data models check-export docs
	@start=$$(date +%s); OMP_NUM_THREADS=$(NB_THREADS) $(BIN)/python tools/nbtest.py --n_workers $(NB_WORKERS) --timing; rc=$$?; \
	  echo "nbdev_test: $$(( $$(date +%s) - start )) s"; exit $$rc
	$(BIN)/python -m pytest tests/ -q -rs

DEMO_DIR ?= runs/demo
DEMO_ARGS ?=
demo: $(STAMP) data
	$(BIN)/diffusion-course demo --out $(DEMO_DIR) $(DEMO_ARGS)

lab: $(STAMP) data
	$(BIN)/jupyter lab nbs/

# Execute notebooks with their slow cells (what the committed outputs come from): make nb NB="nbs/04e_cache.ipynb nbs/05_metrics.ipynb"
nb: $(STAMP) data
	tools/run_nb.sh $(NB)

# After editing cells of a chapter whose slow cells take long: run it as nbdev_test does and fill only the cells that lost their outputs: make fill NB=nbs/X.ipynb
fill: $(STAMP) data
	OMP_NUM_THREADS=$(NB_THREADS) $(BIN)/python tools/fill_outputs.py $(if $(SLOW),--slow-missing) $(NB)

# README's result tables from the notebooks' result files (nbs/results/*.json, written by their slow cells); tests check they agree.
readme-tables:
	$(PYTHON) tools/readme_tables.py

clean:
	rm -rf .export-check _docs _proc docs/_build

# The course as a website (docs/build.py says how): docs/_build/html, built from the committed outputs, never executed.
DOCS_PORT ?= 8000
docs: $(DOCS_STAMP)
	@start=$$(date +%s); $(BIN)/python docs/build.py && echo "docs: $$(( $$(date +%s) - start )) s; read it with 'make docs-serve'"

docs-serve:
	@test -f docs/_build/html/index.html || $(MAKE) --no-print-directory docs
	@echo "docs-serve: http://localhost:$(DOCS_PORT)/ (Ctrl-C stops it)"
	$(BIN)/python -m http.server $(DOCS_PORT) --bind 127.0.0.1 --directory docs/_build/html

docs-test: docs
	$(BIN)/python -m pytest tests/test_docs.py -q -rs

# Benchmark (issue 13, bench/README.md). Needs denoising-diffusion-pytorch==2.3.4 (in dev_requirements); bench.py names the install command if missing.
# Uses all logical CPUs (BENCH_THREADS) for torch: run it on a quiet machine, the tables record the load average.
BUDGET ?= 90
N ?= 250
SAMPLE_STEPS ?= 50
SEEDS ?= 3
REPEATS ?= 5
SWEEP_BUDGET ?= 60
BENCH_THREADS ?= $(shell nproc)
BENCH_ARGS ?=
bench: $(STAMP) data models
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/python bench/bench.py --threads $(BENCH_THREADS) --budget $(BUDGET) --n $(N) \
	  --steps $(SAMPLE_STEPS) --seeds $(SEEDS) --repeats $(REPEATS) $(BENCH_ARGS)

bench-sweep: $(STAMP) data models
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/python bench/sweep.py --threads $(BENCH_THREADS) --budget $(SWEEP_BUDGET) --n $(N) --steps $(SAMPLE_STEPS)

bench-quick: $(STAMP) data models
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/python bench/bench.py --threads $(BENCH_THREADS) --budget 10 --n 50 --steps 10 --seeds 2 \
	  --repeats 2 --out bench/results/quick --note "smoke test (make bench-quick): tiny budget, not valid figures"

bench-precision: $(STAMP) data
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/python bench/precision.py --threads $(BENCH_THREADS)

bench-speed: $(STAMP)
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BIN)/python bench/speed.py --threads $(BENCH_THREADS)
