#!/usr/bin/env bash
# Fidelity checks: the official Python clients (FalconPy, pycti), unchanged, against cti-sandbox.
#
# Creates (or reuses) a virtual environment under /tmp, installs crowdstrike-falconpy and pycti from
# PyPI, builds and starts cti-sandbox on loopback, exports its JSON line as SANDBOX_INFO and runs
# tests/fidelity/falconpy_check.py and tests/fidelity/pycti_check.py. Any failure fails the script.
#
# Environment: FIDELITY_VENV (default /tmp/cti-fidelity-venv), PYTHON (default python3),
# SANDBOX_ARGS (extra cti-sandbox flags), FIDELITY_PACKAGES (the pip requirements to install).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${FIDELITY_VENV:-/tmp/cti-fidelity-venv}"
PYTHON="${PYTHON:-python3}"
HERE="tests/fidelity"

echo "== fidelity: python environment in $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Pinned to the versions the checks were written against, so that a new release cannot change CI's
# verdict unnoticed (FIDELITY_PACKAGES overrides them, e.g. to try the latest releases).
PACKAGES="${FIDELITY_PACKAGES:-crowdstrike-falconpy==1.6.6 pycti==7.261026.0}"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PACKAGES
"$VENV/bin/python" -m pip show crowdstrike-falconpy pycti 2>/dev/null | grep -E '^(Name|Version):' || true

echo "== fidelity: building cti-sandbox"
cargo build --locked -p cti-sandbox-bin
BIN="$(pwd)/target/debug/cti-sandbox"

WORK="$(mktemp -d /tmp/cti-fidelity.XXXXXX)"
SANDBOX_PID=""
cleanup() {
  if [ -n "$SANDBOX_PID" ] && kill -0 "$SANDBOX_PID" 2>/dev/null; then
    kill -TERM "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== fidelity: starting cti-sandbox"
# shellcheck disable=SC2086
"$BIN" --hosts 50 --indicators 200 --seed 6 ${SANDBOX_ARGS:-} >"$WORK/info.json" 2>"$WORK/sandbox.log" &
SANDBOX_PID=$!
for _ in $(seq 1 300); do
  if [ -s "$WORK/info.json" ] && [ "$(wc -l <"$WORK/info.json")" -ge 1 ]; then
    break
  fi
  if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
    echo "cti-sandbox exited before printing its info line:" >&2
    cat "$WORK/sandbox.log" >&2
    exit 1
  fi
  sleep 0.1
done
SANDBOX_INFO="$(head -n 1 "$WORK/info.json")"
if [ -z "$SANDBOX_INFO" ]; then
  echo "cti-sandbox printed no info line within 30 s" >&2
  cat "$WORK/sandbox.log" >&2
  exit 1
fi
export SANDBOX_INFO
# Only the URLs: even sandbox credentials stay out of logs.
"$VENV/bin/python" -c 'import json, os; i = json.loads(os.environ["SANDBOX_INFO"]); print("sandbox:", *(f"{k}={v}" for k, v in i.items() if k.endswith("_url")))'

status=0
echo "== fidelity: FalconPy"
"$VENV/bin/python" "$HERE/falconpy_check.py" || status=1

if [ -f "$HERE/pycti_check.py" ]; then
  echo "== fidelity: pycti"
  "$VENV/bin/python" "$HERE/pycti_check.py" || status=1
else
  echo "== fidelity: pycti: SKIPPED ($HERE/pycti_check.py does not exist yet)"
fi

if [ "$status" -ne 0 ]; then
  echo "fidelity checks FAILED; sandbox log:" >&2
  tail -n 50 "$WORK/sandbox.log" >&2 || true
  exit 1
fi
echo "fidelity checks passed"
