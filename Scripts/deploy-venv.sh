#!/usr/bin/env bash
# Makes .venv-deploy with KServe's and Kubernetes' Python packages (Scripts/requirements-deploy.txt),
# once; Tests/Integration/check_deploy.py validates deploy/ with them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv-deploy"
stamp="$venv/.requirements.sha256"
want=$(sha256sum Scripts/requirements-deploy.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating the deployment-check venv in .venv-deploy (kserve, kubernetes)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r Scripts/requirements-deploy.txt
    echo "$want" > "$stamp"
fi
