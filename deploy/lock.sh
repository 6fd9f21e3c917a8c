#!/usr/bin/env bash
# Regenerate the hash-checked locks from requirements/*.txt. Run it after changing any
# requirements file, and commit the locks with it:
#   requirements/prod.txt -> requirements/prod.lock  (the Docker image, production installs)
#   requirements/dev.txt  -> requirements/dev.lock   (deploy/setup.sh: development, tests, CI)
# Every package, transitive ones included, is pinned with the hashes of its files, for
# Python 3.11 on any platform; `pip install --require-hashes -r <lock>` installs exactly that.
# Versions of packages already in a lock are kept unless a requirements file asks for
# another; UPGRADE=1 moves the transitive ones to their newest releases.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/uv ]; then UV=.venv/bin/uv; elif command -v uv >/dev/null; then UV=uv; else
  echo "uv is needed: it is in requirements/dev.txt (deploy/setup.sh installs it), or pip install uv" >&2
  exit 1
fi
upgrade=()
[ "${UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)
compile() {
  "$UV" pip compile "$@" --universal --python-version 3.11 --generate-hashes --quiet \
    --custom-compile-command "deploy/lock.sh" "${upgrade[@]}"
}
# dev holds everything prod holds: resolve it first, then hold prod to the same versions,
# so that the tests run exactly what the image ships.
compile requirements/dev.txt --output-file requirements/dev.lock
compile requirements/prod.txt --constraint requirements/dev.lock --output-file requirements/prod.lock
echo "requirements/prod.lock and requirements/dev.lock written" >&2
