#!/usr/bin/env bash
# Install what the loopback test servers need on a fresh Debian 12 machine (run as root).
#
# - PostgreSQL 15 + PostGIS 3 from Debian apt, for the stac-fastapi-pgstac STAC API that
#   tests/loopback/pgstac.py starts on 127.0.0.1.
# - Chromium from Debian apt, for tests/test_report.py (the HTML report is opened in
#   headless Chromium, screenshotted and checked).
# - Optionally (with --pip, or PIP=1) the Python test extra into the active environment:
#   stac-fastapi-pgstac, pypgstac[psycopg], uvicorn, starlette, httpx, rangehttpserver.
#
# Idempotent: packages already installed are skipped, so it is cheap to run again.
# Usage: scripts/install-test-services.sh [--pip]
set -euo pipefail

PG_PKG="postgresql-15-postgis-3"

if [[ "$(id -u)" != "0" ]]; then
    echo "error: run as root (apt-get needs it), e.g. sudo $0" >&2
    exit 1
fi

APT_PKGS=("$PG_PKG" chromium)
MISSING=()
for pkg in "${APT_PKGS[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        echo "$pkg already installed; skipping"
    else
        MISSING+=("$pkg")
    fi
done
if (( ${#MISSING[@]} )); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${MISSING[@]}"
fi

# Debian starts a "main" cluster on port 5432 when postgresql is installed; the tests run
# their own throw-away cluster on a free port and do not need it. Leave it as it is.

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
    echo "error: PostgreSQL binaries not found under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
echo "PostgreSQL binaries: $PG_BIN"
if ! command -v chromium >/dev/null 2>&1; then
    echo "error: chromium not on PATH after installing the Debian package" >&2
    exit 1
fi
echo "Chromium: $(chromium --version 2>/dev/null || echo unknown)"

if [[ "${1:-}" == "--pip" || "${PIP:-0}" == "1" ]]; then
    python -m pip install \
        "stac-fastapi-pgstac>=6.0" "pypgstac[psycopg]>=0.9" "uvicorn>=0.30" \
        "starlette>=0.40" "httpx>=0.27" "rangehttpserver>=1.4"
fi
