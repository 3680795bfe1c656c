#!/usr/bin/env bash
# Provision the real test environment, then run pytest with any extra arguments.
# Usage: scripts/test.sh [PYTEST_ARGS...]   e.g. scripts/test.sh tests/integration -x
# LLAMAMAN_SKIP_PROVISION=1 skips provisioning (reuses the existing env file).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_FILE=${LLAMAMAN_TEST_STATE_DIR:-/var/lib/llamaman-test}/test-env.sh

if [[ ${LLAMAMAN_SKIP_PROVISION:-0} != 1 ]]; then
    bash "$REPO_DIR/scripts/provision.sh"
fi
[[ -f $ENV_FILE ]] || { echo "test.sh: $ENV_FILE missing; run scripts/provision.sh" >&2; exit 1; }
# shellcheck source=/dev/null
source "$ENV_FILE"

cd "$REPO_DIR"
# pytest.ini sets testpaths = tests, so no arguments means the whole suite.
rc=0
"$REPO_DIR/.venv/bin/pytest" -q "$@" || rc=$?
if (( rc == 5 )); then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
fi
exit "$rc"
