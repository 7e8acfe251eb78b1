#!/usr/bin/env bash
# Regenerate requirements/base.lock, requirements/test.lock and requirements/build.lock (the
# build backend, setuptools) (exact versions with hashes, Linux x86_64, CPython 3.11) from
# pyproject.toml, after its dependencies or its build-system changed.
# Versions already pinned in a lock are kept while they still satisfy pyproject.toml;
# extra arguments go to pip-compile, e.g. --upgrade-package numpy, or --upgrade for all.
# Usage: bash tools/update-locks.sh [pip-compile options]
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || { echo "update-locks: no .venv; run bash tools/setup.sh --test first" >&2; exit 1; }
if [ ! -x .venv/bin/pip-compile ]; then
  echo "update-locks: installing pip-tools into .venv"
  .venv/bin/python -m pip install -q "pip-tools==7.7.0"
fi
export CUSTOM_COMPILE_COMMAND="bash tools/update-locks.sh"
opts=(--quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links)
.venv/bin/pip-compile "${opts[@]}" "$@" -o requirements/base.lock pyproject.toml
.venv/bin/pip-compile "${opts[@]}" "$@" -o requirements/test.lock --extra test pyproject.toml
.venv/bin/pip-compile "${opts[@]}" "$@" -o requirements/build.lock --build-deps-for editable \
  --only-build-deps pyproject.toml
echo "update-locks: requirements/{base,test,build}.lock written; run bash tools/setup.sh --test and the tests"
