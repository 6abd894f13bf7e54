#!/usr/bin/env bash
# Re-resolve every lock: for each requirements.in, a clean venv, pip install, pip freeze.
# The dev lock (tests/requirements.txt) is resolved on top of the pipeline lock.
# `images/lock.sh pipeline mlflow` re-locks only those (the dev lock follows the pipeline lock).
set -euo pipefail
cd "$(dirname "$0")/.."
header='# Full lock of requirements.in, made by `make lock` (pip install -r requirements.in in a clean venv, then pip freeze).
# Do not edit by hand.'
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
families=("$@"); [ ${#families[@]} -gt 0 ] || families=(pipeline tfdv tuner mlflow serving features)
for family in "${families[@]}"; do
  dir=images/$family
  python3 -m venv "$tmp/venv-$(basename $dir)"
  "$tmp/venv-$(basename $dir)/bin/pip" install -q -r "$dir/requirements.in"
  { echo "$header"; "$tmp/venv-$(basename $dir)/bin/pip" freeze --exclude-editable; } > "$dir/requirements.txt"
  echo "lock: $dir/requirements.txt"
done
[[ " ${families[*]} " == *" pipeline "* ]] || exit 0
v="$tmp/venv-pipeline"
"$v/bin/pip" freeze > "$tmp/before.txt"
"$v/bin/pip" install -q -c images/pipeline/requirements.txt -r tests/requirements.in
{ echo "$header"; echo "# Installed on top of images/pipeline/requirements.txt."; "$v/bin/pip" freeze | grep -vxF -f "$tmp/before.txt"; } > tests/requirements.txt
echo "lock: tests/requirements.txt"
