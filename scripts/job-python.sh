#!/usr/bin/env bash
# A Python for test jobs that run under other OS accounts: built from Debian's
# /usr/bin/python3 in a folder every account can reach (the project's .venv may lie under
# /root, which other accounts cannot enter). Holds what the example projects import:
# MLflow (with psutil for system metrics), scikit-learn and mantik itself (this checkout, installed, not linked), with its
# server: the sudo test runs the platform from it as an unprivileged account.
#
# Idempotent: stamps of the requirements and of mantik's sources make a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${MANTIK_JOB_PYTHON:-/opt/mantik-job-python}"
REQUIREMENTS=(mlflow==3.17.2 scikit-learn==1.9.1 psutil==7.2.2)  # psutil: system metrics
PIP=("$TARGET/bin/pip" install -q --disable-pip-version-check)
quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }

if [[ ! -f "$TARGET/.requirements" || "$(cat "$TARGET/.requirements")" != "${REQUIREMENTS[*]}" ]]; then
    echo "job-python: building $TARGET from /usr/bin/python3 (${REQUIREMENTS[*]})" >&2
    rm -rf "$TARGET"
    mkdir -p "$(dirname "$TARGET")"
    /usr/bin/python3 -m venv "$TARGET"
    "${PIP[@]}" "${REQUIREMENTS[@]}" 2> >(quiet)
    echo "${REQUIREMENTS[*]}" > "$TARGET/.requirements"
fi

sources="$(find src pyproject.toml "$0" -type f -not -path '*/__pycache__/*' -print0 \
    | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-40)"
if [[ ! -f "$TARGET/.mantik-sources" || "$(cat "$TARGET/.mantik-sources")" != "$sources" ]]; then
    echo "job-python: installing this checkout of mantik into $TARGET" >&2
    "${PIP[@]}" ".[server]" 2> >(quiet)  # what mantik needs of its own (httpx, …)
    "${PIP[@]}" --no-deps --force-reinstall . 2> >(quiet)
    echo "$sources" > "$TARGET/.mantik-sources"
fi
chmod -R a+rX "$TARGET"
