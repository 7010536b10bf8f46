#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install senland-geo into it.
#
# The environment lives in $SENLAND_VENV, by default ~/.cache/senland-geo/venv-<hash>, where
# <hash> is taken from the dependency files: a change to them builds a fresh environment,
# an unchanged checkout reuses the cached one (a fresh machine builds it once).
# Prints the environment's path on its last line.
#
# Usage: scripts/setup.sh [--test]   (--test also installs the test extra and the JAX plugin)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

hash_inputs=(pyproject.toml scripts/setup.sh)
[[ -f plugins/senland-geo-jax/pyproject.toml ]] && hash_inputs+=(plugins/senland-geo-jax/pyproject.toml)
key="$(cat "${hash_inputs[@]}" | sha256sum | cut -c1-12)"
VENV="${SENLAND_VENV:-$HOME/.cache/senland-geo/venv-$key}"
stamp="$VENV/.senland-installed-$key-$WITH_TEST"

if [[ ! -f "$stamp" ]]; then
    echo "== building environment $VENV" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip "setuptools>=77" wheel >&2
    # CPU/CUDA torch wheels for Python 3.11 are served from this machine's disk; pin them
    # first so no other package pulls a different (multi-GB) build.
    "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" >&2
    if [[ "$WITH_TEST" == 1 ]]; then
        "$VENV/bin/python" -m pip install -q -e ".[test]" >&2
        "$VENV/bin/python" -m pip install -q -e plugins/senland-geo-jax >&2
    else
        "$VENV/bin/python" -m pip install -q -e . >&2
    fi
    touch "$stamp"
else
    # Same dependencies: just make sure this checkout is the one installed (editable).
    "$VENV/bin/python" -m pip install -q --no-deps -e . >&2
    if [[ "$WITH_TEST" == 1 ]]; then
        "$VENV/bin/python" -m pip install -q --no-deps -e plugins/senland-geo-jax >&2
    fi
fi
echo "$VENV"
