#!/usr/bin/env bash
# Installs what `make bench` needs beyond Go and the ONNX Runtime library:
# Debian's Python packages (model generation, the seed-style peer, pandas),
# wrk (the cross-check load generator) and Node.js/npm (the Node peer).
# Does nothing when everything is present; needs root (apt-get) otherwise.
set -euo pipefail
py=/usr/bin/python3
need=()
"$py" -c 'import numpy, onnx, torch, torchvision, aiohttp' 2>/dev/null ||
  need+=(python3-numpy python3-onnx python3-torch python3-torchvision python3-aiohttp)
"$py" -c 'import pandas' 2>/dev/null || need+=(python3-pandas)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "bench setup: installing ${need[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "bench setup: run as root or install: ${need[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
