#!/usr/bin/env bash
# Start an MLflow tracking server (SQL backend, sqlite file by default) on 127.0.0.1 with this repo's .venv mlflow.
# PID in $MLF_DIR/server.pid; stop with mlflow_down.sh. The schema is created by one process before the server's
# workers start (avoids the alembic schema-init race between workers).
# Usage: MLF_DIR=/tmp/mlflow-ci MLF_PORT=5055 bash scripts/mlflow_up.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
MLF_DIR=${MLF_DIR:-/tmp/mlflow-ci}; PORT=${MLF_PORT:-5055}
MLFLOW=${MLFLOW:-$HERE/.venv/bin/mlflow}
[ -x "$MLFLOW" ] || MLFLOW=$(command -v mlflow) || { echo "mlflow not found (looked in $HERE/.venv/bin and PATH)"; exit 1; }
PY=$(dirname "$MLFLOW")/python
mkdir -p "$MLF_DIR"
BACKEND=${MLF_BACKEND:-sqlite:///$MLF_DIR/mlflow.db}
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
"$PY" -c 'import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments(max_results=1)' "$BACKEND"
setsid "$MLFLOW" server --backend-store-uri "$BACKEND" \
  --artifacts-destination "$MLF_DIR/artifacts" --host 127.0.0.1 --port "$PORT" --workers "${MLF_WORKERS:-2}" \
  > "$MLF_DIR/server.log" 2>&1 < /dev/null &
echo $! > "$MLF_DIR/server.pid"
for i in $(seq 240); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && { echo "mlflow up on :$PORT after ${i}x0.5s"; exit 0; }
  kill -0 "$(cat "$MLF_DIR/server.pid")" 2>/dev/null || { echo "mlflow server died"; tail -20 "$MLF_DIR/server.log"; exit 1; }
  sleep 0.5
done
echo "mlflow server not healthy after 120s"; tail -20 "$MLF_DIR/server.log"; exit 1
