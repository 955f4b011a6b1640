#!/usr/bin/env bash
# Checks the container setup without a Docker engine: docker-compose.yml with
# yamllint, then the compose file, deploy/Dockerfile, .dockerignore and the
# config the image ships for how they fit together (scripts/lib/lint_deploy.py
# says what exactly). Installs yamllint and python3-yaml with apt-get when
# missing. Prints every problem, naming its file and line, and exits 1 if any.
#
#   scripts/lint-deploy.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/install.sh

ensure_packages yamllint

# A Python 3.11+ (for tomllib) that can import yaml: the one on PATH if it
# can, else Debian's, with python3-yaml installed if need be.
py_ok() { "$1" -c 'import tomllib, yaml' >/dev/null 2>&1; }
PY=""
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && py_ok "$candidate"; then
        PY="$candidate"
        break
    fi
done
if [ -z "$PY" ]; then
    apt_install python3 python3-yaml
    PY=/usr/bin/python3
    py_ok "$PY" || {
        echo "lint-deploy.sh: $PY cannot import tomllib and yaml (Python 3.11 or later with python3-yaml is needed)" >&2
        exit 1
    }
fi

status=0

# Syntax and style of the compose file. Compose files have no document
# start marker, and long example commands sit in comments.
yamllint --strict --format parsable -d '{
    extends: default,
    rules: {
        document-start: disable,
        line-length: {max: 120},
        truthy: {check-keys: false}
    }
}' docker-compose.yml || { echo "lint-deploy: yamllint found problems in docker-compose.yml" >&2; status=1; }

"$PY" scripts/lib/lint_deploy.py . || status=1

if [ "$status" -eq 0 ]; then
    echo "lint-deploy: all checks passed"
else
    echo "lint-deploy: FAILED (see the problems above)" >&2
fi
exit "$status"
