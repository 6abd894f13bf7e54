#!/usr/bin/env bash
# `make test`'s test step: the main env's suite in the foreground and, beside it, the suites of
# the side envs (tuner, Feast, TFDV: separate virtualenvs, so separate pytest runs), one after
# another in the background with their output in files. The main suite waits on containers
# for much of its time; the side suites use that CPU. When the main suite ends, each side
# suite's output is printed whole, and the step fails if any suite failed.
#
# Usage: tests/run_suites.sh LOG_DIR MAIN_PY TUNER_PY FEATURES_PY TFDV_PY [PYTEST_ARGS...]
# with TUNER_TESTS, FEATURES_TESTS and TFDV_TESTS (space-separated files) in the environment.
set -uo pipefail
logs=$1 main=$2 tuner=$3 features=$4 tfdv=$5
shift 5
mkdir -p "$logs"
rm -f "$logs"/*.log "$logs"/*.rc "$logs"/*.seconds

side() {  # NAME COMMAND...: runs one side suite; its output, exit code and time to files
  local name=$1 start=$SECONDS
  shift
  "$@" >"$logs/$name.log" 2>&1
  echo $? >"$logs/$name.rc"
  echo $((SECONDS - start)) >"$logs/$name.seconds"
}

# shellcheck disable=SC2086 # the *_TESTS lists are space-separated file names
(
  side tuner "$tuner" -m pytest -p no:cacheprovider $TUNER_TESTS "$@"
  side features "$features" -m pytest -p no:cacheprovider $FEATURES_TESTS "$@"
  TF_CPP_MIN_LOG_LEVEL=3 side tfdv "$tfdv" -m pytest -p no:cacheprovider -W ignore $TFDV_TESTS "$@"
) &
background=$!
trap 'pkill -P "$background" 2>/dev/null; kill "$background" 2>/dev/null; exit 130' INT TERM

echo "test: the tuner, Feast and TFDV env suites run beside the main suite (output: $logs/)"
start=$SECONDS
ignores=()
for f in $TUNER_TESTS $FEATURES_TESTS $TFDV_TESTS; do ignores+=("--ignore=$f"); done
"$main" -m pytest "${ignores[@]}" "$@"
main_rc=$?
echo "test: the main env suite: exit $main_rc after $((SECONDS - start)) s"
if kill -0 "$background" 2>/dev/null; then
  echo "test: waiting for the side env suites"
fi
wait "$background"
failed=$main_rc
for name in tuner features tfdv; do
  rc=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
  echo
  echo "=== the $name env suite: exit $rc after $(cat "$logs/$name.seconds" 2>/dev/null || echo '?') s ($logs/$name.log) ==="
  cat "$logs/$name.log" 2>/dev/null
  [ "$rc" = 0 ] || failed=1
done
echo "test: everything took $((SECONDS - start)) s; $([ "$failed" = 0 ] && echo passed || echo FAILED)"
exit "$failed"
