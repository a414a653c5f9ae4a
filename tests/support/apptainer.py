"""Stand-in ``apptainer`` and ``docker`` executables for tests.

Real Apptainer cannot run on our machines (no setuid helper, no user namespaces in this
container) and there is no Docker engine, so the process boundary is tested instead: small
scripts on a temporary PATH check the command lines mantik produces and do what the real
tool would do with them that matters to mantik (run the command; create the ``.sif``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

# `apptainer run --cleanenv [OPTIONS] IMAGE CMD…`: checks the line, then runs CMD the way
# --cleanenv would, with only the APPTAINERENV_* variables (renamed) and PATH/HOME.
_RUN = r"""#!/bin/bash
set -u
fail() { echo "stand-in apptainer: $*" >&2; exit 90; }
[ "${1:-}" = run ] || fail "expected 'run', got: $*"
[ "${2:-}" = --cleanenv ] || fail "expected 'run --cleanenv', got: $*"
shift 2
options=()
while [ "$#" -gt 0 ] && [ "${1#-}" != "$1" ]; do
  case "$1" in
    -B|--bind) options+=("$1" "$2"); shift 2 ;;
    *) options+=("$1"); shift ;;
  esac
done
image="${1:-}"; shift
[ -f "$image" ] || fail "image $image does not exist"
expected=__EXPECTED__
if [ -n "$expected" ] && [ "$image" != "$expected" ]; then
  fail "image $image is not the cached image $expected"
fi
cache=__CACHE__
if [ -n "$cache" ] && ! [[ "$image" =~ ^"$cache"/[0-9a-f]{64}\.sif$ ]]; then
  fail "image $image is not a cached image in $cache"
fi
echo "stand-in apptainer: run --cleanenv ${options[*]:-} $image"
inside=(PATH="$PATH" HOME="$HOME")
for name in $(compgen -e); do
  case "$name" in APPTAINERENV_*) inside+=("${name#APPTAINERENV_}=${!name}") ;; esac
done
exec env -i "${inside[@]}" "$@"
"""

# `apptainer build TARGET docker-daemon://IMAGE:TAG`: records the call, writes TARGET.
_BUILD = r"""#!/bin/bash
set -u
echo "$*" >> __CALLS__
[ "${1:-}" = build ] || { echo "expected 'build', got: $*" >&2; exit 90; }
case "${3:-}" in docker-daemon://*:*) ;; *) echo "bad source: ${3:-}" >&2; exit 91 ;; esac
case "${2:-}" in *.sif) ;; *) echo "target is not a .sif: ${2:-}" >&2; exit 92 ;; esac
printf 'SIF built from %s\n' "$3" > "$2"
"""

# `docker image inspect --format {{.Id}} IMAGE`: knows one image.
_DOCKER = r"""#!/bin/bash
set -u
echo "$*" >> __CALLS__
if [ "$*" = "image inspect --format {{.Id}} __IMAGE__" ]; then echo "sha256:__ID__"; exit 0; fi
echo "Error: No such image: ${5:-}" >&2
exit 1
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def runner(
    bin_dir: Path, expected_image: Path | None = None, cache_dir: Path | None = None
) -> Path:
    """An ``apptainer`` that checks a run line and runs it; and, when given, that the image
    is ``expected_image`` or a ``<sha256>.sif`` in ``cache_dir``."""
    text = _RUN.replace("__EXPECTED__", shlex.quote(str(expected_image or "")))
    text = text.replace("__CACHE__", shlex.quote(str(cache_dir or "")))
    return _write(bin_dir / "apptainer", text)


def builder(bin_dir: Path, calls: Path) -> Path:
    """An ``apptainer`` that accepts ``build`` from the Docker daemon; calls go to ``calls``."""
    return _write(bin_dir / "apptainer", _BUILD.replace("__CALLS__", shlex.quote(str(calls))))


def docker(bin_dir: Path, calls: Path, image: str, image_id: str) -> Path:
    """A ``docker`` whose daemon holds exactly ``image`` (with id ``sha256:<image_id>``)."""
    text = _DOCKER.replace("__CALLS__", shlex.quote(str(calls)))
    text = text.replace("__IMAGE__", image).replace("__ID__", image_id)
    return _write(bin_dir / "docker", text)
