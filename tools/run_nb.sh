#!/usr/bin/env bash
# Execute notebooks in place, slow cells included (nbconvert runs every cell), then shrink their PNGs and clean them.
# usage: tools/run_nb.sh nbs/04d_ddpm_training.ipynb [more.ipynb ...]   (env: NB_TIMEOUT seconds per cell, default 3600)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=.venv/bin
for nb in "$@"; do
  echo "run_nb: executing $nb"
  ( cd "$(dirname "$nb")" && PYTHONHASHSEED=0 MPLBACKEND=module://matplotlib_inline.backend_inline "$ROOT/$BIN/jupyter" nbconvert --to notebook --execute --inplace \
      --ExecutePreprocessor.timeout="${NB_TIMEOUT:-3600}" "$(basename "$nb")" )
  $BIN/python tools/shrink_pngs.py "$nb"
  $BIN/nbdev_clean --fname "$nb"
done
