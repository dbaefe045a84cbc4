#!/usr/bin/env bash
# The README's editing pictures: runs each example command and copies its main picture to docs/pictures/.
#   bash docs/make_pictures.sh [fashion checkpoint] [procedural checkpoint]
# defaults: runs/fashion_unet/checkpoints/last.ckpt (python train.py experiment=fashion_unet hydra.run.dir=runs/fashion_unet)
#           runs/shapes/checkpoints/last.ckpt       (make train ARGS="hydra.run.dir=runs/shapes": the default text model)
# ONLY=text runs just the pictures of the text (shapes) model.
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION=${1:-runs/fashion_unet/checkpoints/last.ckpt}
SHAPES=${2:-runs/shapes/checkpoints/last.ckpt}
PY=${PY:-.venv/bin/python}
TMP=$(mktemp -d)
mkdir -p docs/pictures

pic() {  # pic <name> <file in the output> <sample.py arguments...>
  local name=$1 file=$2; shift 2
  echo "== $name: python sample.py $*"
  $PY sample.py "$@" out="$TMP/$name"
  cp "$TMP/$name/$file" "docs/pictures/$name.png"
}

if [ "${ONLY:-}" != text ]; then
pic generate grid.png ckpt=$FASHION n=40 batch_size=40 guidance=3
pic sdedit_stroke sdedit.png ckpt=$FASHION task=sdedit image=docs/inputs/stroke_trouser.png task.strength=0.6 n=4 label=1
pic sdedit_sweep strength_sweep.png ckpt=$FASHION task=sdedit image=docs/inputs/stroke_trouser.png label=1 n=1 \
  task.strength_sweep=[0.2,0.4,0.6,0.8,1.0]
pic sdedit_collage sdedit.png ckpt=$FASHION task=sdedit image=docs/inputs/collage.png mask=docs/inputs/collage_mask.png \
  task.strength=0.6 n=4 label=8
pic invert invert.png ckpt=$FASHION task=invert image=docs/inputs/pullover.png label=2
pic ddib ddib.png ckpt=$FASHION task=ddib image=docs/inputs/sneaker.png task.source=7 task.target=9 guidance=2
echo "== ddib_transfer: python scripts/ddib_transfer.py ckpt=$FASHION data=fashion_mnist source=7 target=9 guidance=2 k=16"
$PY scripts/ddib_transfer.py ckpt=$FASHION data=fashion_mnist source=7 target=9 guidance=2 k=16 out="$TMP/ddib_transfer"
cp "$TMP/ddib_transfer/ddib_transfer.png" docs/pictures/ddib_transfer.png
pic diffedit diffedit.png ckpt=$FASHION task=diffedit image=docs/inputs/sneaker.png task.source=7 task.target=5 guidance=3 \
  task.encode_ratio=0.8
pic inpaint inpaint.png ckpt=$FASHION task=inpaint image=docs/inputs/tshirt.png mask=docs/inputs/right_half_mask.png n=4
pic outpaint outpaint.png ckpt=$FASHION task=outpaint image=docs/inputs/boot.png task.pad=[0,8,0,0] n=4 label=9
fi
# the default text model (procedural captions)
pic text_grid grid.png ckpt=$SHAPES prompts=docs/inputs/shapes_prompts.txt n=8 guidance=3
pic text_sdedit sdedit.png ckpt=$SHAPES task=sdedit image=procedural:3 task.strength=0.7 n=4 guidance=3 \
  prompt="a large blue circle at the bottom on a navy background"
pic text_inpaint inpaint.png ckpt=$SHAPES task=inpaint image=procedural:5 mask=docs/inputs/right_half_mask.png n=4 \
  guidance=3 prompt="a large yellow square on the right on a white background"
pic diffedit_shapes diffedit.png ckpt=$SHAPES task=diffedit image=procedural:3 guidance=3 task.encode_ratio=0.8 \
  task.query="a large orange circle at the bottom on a navy background" \
  task.reference="a large orange triangle at the bottom on a navy background"
pic zoom zoom.png ckpt=$SHAPES task=zoom task.direction=out task.frames=6 task.scale=0.75 guidance=3 \
  prompt="a small red circle in the centre on a black background" \
  sampler=ddpm sampler.steps=50 task.resamples=5 task.jump_length=5 task.overlap=2
rm -rf "$TMP"
echo "wrote $(ls docs/pictures | wc -l) pictures to docs/pictures/"
