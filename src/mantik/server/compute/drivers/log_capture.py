"""How the job wrapper keeps the job's output: bounded, with its beginning and its end.

With coreutils only: ``split`` cuts the output into numbered chunks of ``part`` bytes as it
comes (``cat`` writes each at once: the log is live). Chunk 0 is the head, ``job.log``,
kept for good; the others are the tail's parts, and as each one starts it removes the one
before the last. The disk never holds more than three chunks, the newest output (where the
error is) is in a file the moment it is printed, so a job killed at any point keeps its
tail, and a part's name says where its bytes lie in the whole output (see
:mod:`mantik.server.compute.job_log`). ``head -c`` would buffer the head (stdio), ``dd``
counts short pipe reads as blocks: neither keeps an exact, live head.

The logger is a process substitution that ignores TERM and INT: a cancel stops the job but
not its log, which the wrapper closes and drains (10 s at most) before it uploads it. It
does not carry the job's mark (``MANTIK_JOB_MARK``), so the wrapper's sweep of what the job
left behind never stops it.
"""

from __future__ import annotations

from mantik.server.compute.job_folder import LOG_TAIL
from mantik.server.compute.spec import JobSpec

UPLOAD = "job.log.upload"  # the kept log as one file, while the wrapper uploads it

# split runs the filter with $SHELL (bash here: 10# reads the zero-padded index as decimal)
# for each chunk, named in $FILE; chunk 0 goes to job.log, chunk n removes part n-2.
_SPLIT_FILTER = (
    "n=$((10#${FILE##*.})); "
    '[ $n -gt 0 ] || exec cat >>"${FILE%.tail.*}"; '
    '[ $n -lt 3 ] || rm -f -- "${FILE%.*}.$(printf %09d $((n - 2)))"; '
    'exec cat >"$FILE"'
)

FUNCTIONS = rf"""
_mantik_keep_log() {{  # stdin → job.log (the first MANTIK_LOG_PART bytes), then the parts
  SHELL="$BASH" split -b "$MANTIK_LOG_PART" -d -a 9 --filter='{_SPLIT_FILTER}' - \
    "$MANTIK_DIR/{LOG_TAIL}$MANTIK_LOG_PART."
}}
_mantik_log_fd=
_mantik_logger=
_mantik_log_start() {{
  : >>"$MANTIK_LOG"
  exec {{_mantik_log_fd}}> >(trap '' TERM INT; unset MANTIK_JOB_MARK; _mantik_keep_log)
  _mantik_logger=$!
}}
_mantik_say() {{  # a line of the wrapper's own, in the log
  if [ -n "$_mantik_logger" ]; then echo "mantik: $*" >&"$_mantik_log_fd"
  else echo "mantik: $*" >>"$MANTIK_LOG"; fi
}}
_mantik_log_end() {{  # close the log; wait (10 s at most) until its last bytes are written
  [ -n "$_mantik_logger" ] || return 0
  exec {{_mantik_log_fd}}>&-
  local waited=0
  while kill -0 "$_mantik_logger" 2>/dev/null && [ $waited -lt 100 ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  _mantik_logger=
}}
_mantik_kept_log() {{  # the file that holds the log as kept: head, marker, tail
  local parts=("$MANTIK_DIR/{LOG_TAIL}"*)
  if [ ! -e "${{parts[0]}}" ]; then echo "$MANTIK_LOG"; return; fi
  local first="${{parts[0]##*.}}"
  local dropped=$(((10#$first - 1) * MANTIK_LOG_PART))
  {{
    cat "$MANTIK_LOG"
    [ "$dropped" -eq 0 ] || printf '\n[mantik: %s bytes of output left out here]\n' "$dropped"
    cat -- "${{parts[@]}}"
  }} >"$MANTIK_DIR/{UPLOAD}"
  echo "$MANTIK_DIR/{UPLOAD}"
}}
"""


def part_bytes(max_bytes: int) -> int:
    """The chunk size for a log of at most ``max_bytes``: a third each for the head and
    the two newest parts."""
    return max(1, max_bytes // 3)


def variables(spec: JobSpec) -> list[str]:
    return [f"MANTIK_LOG_PART={part_bytes(spec.log_max_bytes)}"]
