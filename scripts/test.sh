#!/usr/bin/env bash
# Set up everything the tests need (environment, PostgreSQL/PostGIS for the loopback STAC
# API) and run the whole test suite: the core package and the JAX plugin.
# Extra arguments go to pytest, e.g. scripts/test.sh -k predict
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" == "0" ]]; then
    scripts/install-test-services.sh >&2
fi
VENV="$(scripts/setup.sh --test | tail -n 1)"
export PATH="$VENV/bin:$PATH"  # tests run the senland-geo console script too
"$VENV/bin/ruff" check src tests scripts plugins
exec "$VENV/bin/python" -m pytest tests plugins/senland-geo-jax/tests -p no:cacheprovider "$@"
