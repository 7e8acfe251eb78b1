#!/usr/bin/env bash
# Install what fluoroplan needs on a Debian machine (bookworm, Python 3.11), idempotently:
#  - the Debian libraries Qt/VTK need headless (../shared/STACK.md), only those missing;
#  - a virtual environment .venv with fluoroplan installed editable (+ test extras with --test).
# Usage: bash tools/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1

debs=(libgl1 libegl1 libfontconfig1 libglib2.0-0 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0
      libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
      libxcb-shape0 libxcb-xkb1 xvfb xauth libosmesa6 poppler-utils fonts-dejavu-core)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root or ask an administrator): ${missing[*]}" >&2
    exit 1
  fi
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
# The exact tested versions, with hashes, are in requirements/<kind>.lock, and the build backend
# (setuptools) in requirements/build.lock (tools/update-locks.sh regenerates them from
# pyproject.toml); fluoroplan itself goes in editable, without dependencies, built with that
# setuptools (no build isolation: nothing unpinned is fetched).
kind=base
[ "$with_test" = 1 ] && kind=test
lock=requirements/$kind.lock
h=$(cat pyproject.toml requirements/build.lock "$lock" | sha256sum | cut -c1-12)
h_test=$(cat pyproject.toml requirements/build.lock requirements/test.lock | sha256sum | cut -c1-12)
if [ ! -f ".venv/.installed-$h-$kind" ] && [ ! -f ".venv/.installed-$h_test-test" ]; then
  echo "setup: installing Python packages into .venv (the first time takes a few minutes)"
  if ! { .venv/bin/python -m pip install -q --require-hashes -r requirements/build.lock \
         && .venv/bin/python -m pip install -q --require-hashes -r "$lock" \
         && .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .; } \
       > .venv/pip.log 2>&1; then
    grep -vE "is ignored" .venv/pip.log >&2
    echo "setup: pip could not install fluoroplan's packages (log: .venv/pip.log)" >&2
    exit 1
  fi
  .venv/bin/python -c "import fluoroplan, numpy, pydicom, SimpleITK, vtk, PySide6" \
    || { echo "setup: the Python packages did not install; see the messages above" >&2; exit 1; }
  touch ".venv/.installed-$h-$kind"
fi
