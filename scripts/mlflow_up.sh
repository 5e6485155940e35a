#!/usr/bin/env bash
# Start an MLflow tracking server (SQL backend, sqlite file by default) on 127.0.0.1 with this repo's .venv mlflow.
# PID in $MLF_DIR/server.pid; stop with mlflow_down.sh. The schema is created by one process before the server's
# workers start (avoids the alembic schema-init race between workers).
# Usage: MLF_DIR=/tmp/mlflow-ci MLF_PORT=5055 bash scripts/mlflow_up.sh
# A shared server with MLflow's basic-auth app (users, passwords, per-experiment permissions):
#   MLF_AUTH=1 MLFLOW_AUTH_ADMIN_PASSWORD=... MLF_DIR=... bash scripts/mlflow_up.sh
# writes $MLF_DIR/basic_auth.ini (user store $MLF_DIR/basic_auth.db, default permission READ) unless
# MLFLOW_AUTH_CONFIG_PATH names another; clients set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
set -euo pipefail
# MLF_HOST (default 127.0.0.1) is the address it binds: widen it only behind auth and TLS.
HERE=$(cd "$(dirname "$0")/.." && pwd)
MLF_DIR=${MLF_DIR:-/tmp/mlflow-ci}; PORT=${MLF_PORT:-5055}
MLFLOW=${MLFLOW:-$HERE/.venv/bin/mlflow}
[ -x "$MLFLOW" ] || MLFLOW=$(command -v mlflow) || { echo "mlflow not found (looked in $HERE/.venv/bin and PATH)"; exit 1; }
PY=$(dirname "$MLFLOW")/python
mkdir -p "$MLF_DIR"
BACKEND=${MLF_BACKEND:-sqlite:///$MLF_DIR/mlflow.db}
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
APP=()
if [ "${MLF_AUTH:-0}" = 1 ]; then
  [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] || { echo "MLF_AUTH=1 needs MLFLOW_AUTH_ADMIN_PASSWORD (the admin user's first password)"; exit 2; }
  if [ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
    export MLFLOW_AUTH_CONFIG_PATH="$MLF_DIR/basic_auth.ini"
    printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/basic_auth.db\nadmin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
      "$MLF_DIR" > "$MLFLOW_AUTH_CONFIG_PATH"
  fi
  # Flask signs CSRF tokens with this key; one per server directory, kept across restarts.
  [ -f "$MLF_DIR/secret_key" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_hex(32))' > "$MLF_DIR/secret_key")
  export MLFLOW_FLASK_SERVER_SECRET_KEY=${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(cat "$MLF_DIR/secret_key")}
  APP=(--app-name basic-auth)
fi
"$PY" -c 'import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments(max_results=1)' "$BACKEND"
setsid "$MLFLOW" server "${APP[@]}" --backend-store-uri "$BACKEND" \
  --artifacts-destination "$MLF_DIR/artifacts" --host "${MLF_HOST:-127.0.0.1}" --port "$PORT" --workers "${MLF_WORKERS:-2}" \
  > "$MLF_DIR/server.log" 2>&1 < /dev/null &
echo $! > "$MLF_DIR/server.pid"
for i in $(seq 240); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && { echo "mlflow up on :$PORT after ${i}x0.5s"; exit 0; }
  kill -0 "$(cat "$MLF_DIR/server.pid")" 2>/dev/null || { echo "mlflow server died"; tail -20 "$MLF_DIR/server.log"; exit 1; }
  sleep 0.5
done
echo "mlflow server not healthy after 120s"; tail -20 "$MLF_DIR/server.log"; exit 1
