#!/usr/bin/env bash
# Stop the server mlflow_up.sh started: SIGTERM to its recorded PID stops the uvicorn workers and job runner too.
MLF_DIR=${MLF_DIR:-/tmp/mlflow-ci}
pid=$(cat "$MLF_DIR/server.pid" 2>/dev/null) || exit 0
kill "$pid" 2>/dev/null || true
for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
rm -f "$MLF_DIR/server.pid"
exit 0
