#!/usr/bin/env bash
# Install the Debian packages that difflab's datasets read (see ../shared/DATA.md):
#   dataset-fashion-mnist  -> /usr/share/datasets/fashion-mnist/*.gz             (data=fashion_mnist)
#   fonts-noto-color-emoji -> /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf  (data=emoji)
# Only the missing ones are installed, and apt is not run at all when both are present. Skipped, with a
# message, where apt-get is missing or we are not root: the other datasets still work.
set -u
missing=()
uses=()
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  missing+=(dataset-fashion-mnist)
  uses+=(data=fashion_mnist)
fi
if [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  missing+=(fonts-noto-color-emoji)
  uses+=(data=emoji)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_data: apt-get not found; ${uses[*]} will be unavailable (needs ${missing[*]})" >&2
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install_data: not root; run 'sudo apt-get install -y ${missing[*]}' for ${uses[*]}" >&2
  exit 0
fi
echo "install_data: apt-get install ${missing[*]}"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
  || echo "install_data: apt-get failed; ${uses[*]} may be unavailable" >&2
exit 0
