#!/bin/sh
# `docker run loopline/mlflow:VERSION [server options]` runs `mlflow server` with them (the
# Deployment in manifests/ passes its store, artifact destination and allowed hosts as args);
# any other command (`id -u`, `mlflow db upgrade URI`, `python -c ...`) runs as given.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  exec mlflow server "$@"
fi
exec "$@"
