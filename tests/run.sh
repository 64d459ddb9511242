#!/usr/bin/env bash
# The test command (README, and what .ci/run calls). On a fresh machine it installs what the
# tests need: Debian's dovecot-imapd and redis-server (the real servers the integration tests
# start on free loopback ports), a virtualenv with the package and its test extras; then it runs
# the import contracts, the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d-less containers try to start the services: we never use the system instances
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

.venv/bin/lint-imports --no-cache
.venv/bin/ruff check triage_tui tests bench
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
