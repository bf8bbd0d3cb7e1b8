#!/usr/bin/env bash
# Creates deploy/check/.venv with kubernetes-validate (requirements.txt: exact
# versions, hashed). Idempotent: a venv whose stamp matches requirements.txt is kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3.11}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/kubernetes-validate" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --require-hashes --only-binary=:all: --no-deps -r "$req"
"$venv/bin/python" -m pip check >/dev/null
echo "$want" > "$stamp"
