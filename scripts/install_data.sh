#!/usr/bin/env bash
# Install the Debian packages that difflab's datasets read (see ../shared/DATA.md):
#   dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist/*.gz
# Skipped, with a message, where apt-get is missing or we are not root: the other datasets still work.
set -u
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_data: apt-get not found; Fashion-MNIST (data=fashion_mnist) will be unavailable" >&2
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install_data: not root; run 'sudo apt-get install -y dataset-fashion-mnist' for data=fashion_mnist" >&2
  exit 0
fi
echo "install_data: apt-get install dataset-fashion-mnist"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
  || echo "install_data: apt-get failed; data=fashion_mnist will be unavailable" >&2
exit 0
