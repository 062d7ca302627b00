#!/bin/sh
# The Python binding's tests as one suite of `make test` (copied to
# build/test/test_python). Runs from the repository root with Debian's
# python3, which must have numpy: a missing numpy fails, never skips.
PY=${PYTHON:-/usr/bin/python3}
[ -d python/mech ] || { echo "test_python: run from the repository root (python/mech not found)" >&2; exit 1; }
if ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "test_python: FAIL: $PY has no numpy; install python3-numpy (sudo apt-get install -y python3-numpy, or run .ci/deps.sh as root)" >&2
  exit 1
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
export MECH_BIN="${MECH_BIN:-./mech}"
exec "$PY" -m unittest discover -s python/tests -t python -v
