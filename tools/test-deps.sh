#!/bin/sh
# Installs what hearth's tests need on a fresh Debian machine that has the Rust toolchain,
# and nothing that is already there. The README's test command runs it first; so does CI.
#
#   - g++, make, pkg-config: the zmq crate builds its own libzmq;
#   - cargo-nextest: the test runner;
#   - the ops files' own checkers: systemd (systemd-analyze verify), strace (what the units'
#     sandbox must allow), prometheus (promtool, and the server the live test scrapes the
#     pair with), lintian, dpkg-dev and cargo-deb (the package);
#   - pyzmq: the Python worker in docs/examples that a test runs.
#
# Debian packages need root: run as root, or as a user who may use sudo.
set -eu

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_need=""
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_need="$apt_need $2"; }
need_cmd g++ g++
need_cmd make make
need_cmd pkg-config pkg-config
need_cmd systemd-analyze systemd
need_cmd promtool prometheus
need_cmd lintian lintian
need_cmd strace strace
need_cmd dpkg-shlibdeps dpkg-dev
need_cmd python3 python3
if [ -n "$apt_need" ]; then
  echo "== installing Debian packages:$apt_need"
  as_root apt-get update -qq
  # shellcheck disable=SC2086 # the list is meant to split
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $apt_need
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb"
  cargo install cargo-deb --locked
fi

if ! python3 -c 'import zmq' >/dev/null 2>&1; then
  echo "== installing pyzmq"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-zmq
  else
    python3 -m pip install --quiet pyzmq || python3 -m pip install --quiet --break-system-packages pyzmq
  fi
fi
echo "== test tools ready"
