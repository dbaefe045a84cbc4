#!/usr/bin/env bash
# Issue 15: the shifted against the unshifted cosine schedule on procedural shapes at 64 px (label = shape kind).
#   bash docs/shifted_procedural.sh            # train both (~25 min each on one thread, run side by side), then score
#   STEP=eval bash docs/shifted_procedural.sh  # score existing runs only
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
R=runs/simple_proc
if [ "${STEP:-all}" = all ]; then
  for b in 32 64; do
    OMP_NUM_THREADS=1 $PY train.py model=unet_simple data=procedural data.image_size=64 data.cond=label \
      diffusion/schedule=shifted_cosine diffusion.schedule.base_resolution=$b trainer.max_steps=500 \
      data.batch_size=16 hydra.run.dir=$R/base$b > ${R}_base$b.log 2>&1 &
  done
  wait
fi
for b in 64 32; do  # base 64: the plain cosine at 64 px; base 32: log-SNR lowered by 2 log 2
  $PY scripts/evaluate.py ckpt=$R/base$b/checkpoints/last.ckpt n=512 metrics=fd,acc guidance=3 \
    sampler=dpmpp_2m sampler.steps=20 out=$R/base$b.eval.json
  $PY sample.py ckpt=$R/base$b/checkpoints/last.ckpt n=16 guidance=3 sampler=dpmpp_2m sampler.steps=20 \
    out=$R/samples_base$b overwrite=true
done
$PY scripts/bucket_loss.py ckpts=[$R/base64/checkpoints/last.ckpt,$R/base32/checkpoints/last.ckpt] \
  names=[cosine_unshifted,shifted_base32] n=128 buckets=10 draws=2 out=$R/bucket_loss.json \
  plot=docs/pictures/shifted_procedural_bucket_loss.png
$PY - <<'PY'
from PIL import Image, ImageDraw
rows = [("cosine (base 64)", "runs/simple_proc/samples_base64/grid.png"),
        ("shifted (base 32)", "runs/simple_proc/samples_base32/grid.png")]
ims = [Image.open(p).convert("RGB") for _, p in rows]
w, h = ims[0].size
out = Image.new("RGB", (2 * w + 30, h + 24), "white")
d = ImageDraw.Draw(out)
for i, ((name, _), im) in enumerate(zip(rows, ims)):
    out.paste(im, (i * (w + 30), 24))
    d.text((i * (w + 30) + 4, 4), name, fill="black")
out.save("docs/pictures/shifted_procedural64.png")
PY
