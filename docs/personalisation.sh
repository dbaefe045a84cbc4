#!/usr/bin/env bash
# Issue 12's measurements and pictures: textual inversion of a star (3, 5 and 10 images; steps 100..500) and of a
# held-out emoji, and Imagic against SDEdit and DiffEdit on one-factor edits of procedural test images.
#   bash docs/personalisation.sh <procedural text model> [emoji text model]
# e.g. runs/shapes/checkpoints/last.ckpt (make train ARGS="trainer.max_steps=3000 hydra.run.dir=runs/shapes") and
# runs/emoji32/checkpoints/last.ckpt (python train.py data=emoji trainer.max_steps=2000 hydra.run.dir=runs/emoji32).
# Writes runs/ti/*, the reports named below, and docs/pictures/{textual_inversion,textual_inversion_emoji,imagic,
# text_edits}.png. STEP=ti|emoji|imagic|edits runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${1:?the procedural text model}
EMOJI=${2:-}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p runs/ti docs/pictures
only() { [ -z "${STEP:-}" ] || [ "${STEP}" = "$1" ]; }

if only ti; then
  for n in 3 5 10; do
    [ -d runs/ti/concepts/star$n ] || $PY scripts/make_concept.py out=runs/ti/concepts/star$n kind=star n=$n
  done
  for n in 3 5 10; do  # measured without flips (before flips swapped left and right in the captions)
    [ -f runs/ti/star$n/learned_embeds.safetensors ] || $PY train.py experiment=textual_inversion ckpt=$SHAPES \
      concept=runs/ti/concepts/star$n 'token="<my-star>"' init_word=star textual_inversion.hflip=false \
      hydra.run.dir=runs/ti/star$n &
    if [ $n = 5 ]; then wait; fi  # two at a time on two cores
  done
  wait
  $PY scripts/textual_inversion_eval.py ckpt=$SHAPES runs=[runs/ti/star3,runs/ti/star5,runs/ti/star10] \
    out=runs/ti/star_eval.json picture=docs/pictures/textual_inversion.png
fi

if only emoji && [ -n "$EMOJI" ]; then
  [ -d runs/ti/concepts/octopus ] || $PY scripts/make_concept.py out=runs/ti/concepts/octopus kind=emoji:octopus n=5
  [ -f runs/ti/octopus/learned_embeds.safetensors ] || $PY train.py experiment=textual_inversion ckpt=$EMOJI \
    concept=runs/ti/concepts/octopus 'token="<my-octopus>"' init_word=octopus hydra.run.dir=runs/ti/octopus
  $PY scripts/textual_inversion_eval.py ckpt=$EMOJI runs=[runs/ti/octopus] kind=emoji:octopus \
    "controls=[squid,crab,pig face,ghost]" out=runs/ti/octopus_eval.json \
    picture=docs/pictures/textual_inversion_emoji.png
fi

if only imagic; then
  $PY sample.py ckpt=$SHAPES task=imagic image=procedural:5:7 \
    prompt="a large blue triangle on the right on a white background" guidance=3 out=runs/ti/imagic overwrite=true
  cp runs/ti/imagic/imagic.png docs/pictures/imagic.png
fi

if only edits; then
  $PY scripts/text_edit_eval.py ckpt=$SHAPES edits=4 out=runs/ti/text_edits.json
  # the picture: the first edit of each kind (edits=1 picks other images than the first of edits=4)
  $PY scripts/text_edit_eval.py ckpt=$SHAPES edits=1 out=runs/ti/text_edits_picture.json \
    picture=docs/pictures/text_edits.png
fi
