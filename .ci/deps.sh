#!/bin/sh
# Checks for the Debian packages mech builds and tests with; installs the
# missing ones when run as root, otherwise prints the apt-get line and fails.
missing=""
have_header() { printf '#include <stdarg.h>\n#include <stddef.h>\n#include <setjmp.h>\n#include <stdint.h>\n#include <%s>\n' "$1" | ${CC:-cc} -E -x c - >/dev/null 2>&1; }
have_header cmocka.h  || missing="$missing libcmocka-dev"
have_header curses.h  || missing="$missing libncurses-dev"
have_header sqlite3.h || missing="$missing libsqlite3-dev"
have_header zlib.h    || missing="$missing zlib1g-dev"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"  # the README's example queries
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"  # the terminal tests of mech tui
command -v slurmctld >/dev/null 2>&1 || missing="$missing slurm-wlm"  # the Slurm test (tests/slurm/cluster.sh)
command -v munged >/dev/null 2>&1 || missing="$missing munge"  # its authentication daemon
command -v ${CC:-cc} >/dev/null 2>&1 || missing="$missing build-essential"
# the Python binding's tests (python/tests) run with Debian's interpreter and numpy
[ -x /usr/bin/python3 ] || missing="$missing python3"
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing="$missing python3-numpy"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >&2 && exit 0
  echo "error: apt-get could not install:$missing" >&2
  exit 1
fi
echo "error: missing packages:$missing" >&2
echo "run: sudo apt-get install -y$missing" >&2
exit 1
