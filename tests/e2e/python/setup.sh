#!/usr/bin/env bash
# Creates tests/e2e/python/.venv with the exact packages of requirements.txt (the MCP
# Python SDK 2.x client used by test/protocol-2026.test.mjs). Idempotent: a venv whose
# stamp matches requirements.txt is left alone; otherwise it is built again from
# scratch. Needs python3.11 (or PYTHON=/path/to/python3.11).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3.11}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

# The hashes are those of the CPython 3.11 wheels: another Python cannot install them.
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "tests/e2e/python/setup.sh: $python is not a Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --require-hashes --only-binary=:all: --no-deps -r "$req"
"$venv/bin/python" -m pip check >/dev/null
echo "$want" > "$stamp"
