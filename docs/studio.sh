#!/usr/bin/env bash
# The README's studio screenshots and overhead figure (issue 16), on the 3000-step text model of the shapes data:
#   python train.py trainer.max_steps=3000 hydra.run.dir=runs/shapes3k     (~45 min on 2 CPU cores)
#   bash docs/studio.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${CKPT:-runs/shapes3k/checkpoints/last.ckpt}
DIFFLAB_STUDIO_CKPT=$CKPT DIFFLAB_SCREENSHOTS=docs/pictures DIFFLAB_STUDIO_STEPS=50 \
  .venv/bin/python -m pytest -q tests/test_studio_browser.py -k "not overhead" -p no:cacheprovider
.venv/bin/python scripts/benchmark_studio.py ckpt=$CKPT reps=9 steps=50 out=runs/studio_overhead.json
