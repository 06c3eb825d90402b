#!/usr/bin/env bash
# `make run`: migrate, start the Balance emulator (unless BALANCE_URL points elsewhere), load the demo,
# start Celery (beat, plus a worker when REDIS_URL is set) and the web app; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
WEB_PORT=${WEB_PORT:-8000}
EMULATOR_PORT=${EMULATOR_PORT:-8002}
export DISBALANCE_RUN_DIR=${DISBALANCE_RUN_DIR:-$PWD/.run}
export BALANCE_NOTIFY_SECRET=${BALANCE_NOTIFY_SECRET:-dev-notify-secret}
mkdir -p "$DISBALANCE_RUN_DIR/broker" "$DISBALANCE_RUN_DIR/broker-processed" "$DISBALANCE_RUN_DIR/logs"
LOGS=$DISBALANCE_RUN_DIR/logs

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

wait_for_port() {  # host port name
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$3 did not start on $1:$2; see $LOGS" >&2; exit 1
}

if [ -z "${BALANCE_URL:-}" ]; then
  export BALANCE_URL="http://127.0.0.1:$EMULATOR_PORT/xmlrpc"
  $PY manage.py balance_emulator --port "$EMULATOR_PORT" \
    --notify-url "http://127.0.0.1:$WEB_PORT/balance/notify?secret=$BALANCE_NOTIFY_SECRET" \
    --state-file "$DISBALANCE_RUN_DIR/emulator.json" --seed-file scripts/demo-legacy/seed.json \
    >"$LOGS/emulator.log" 2>&1 &
  pids+=($!)
  wait_for_port 127.0.0.1 "$EMULATOR_PORT" "the Balance emulator"
  EMULATOR_NOTE="Balance emulator: http://127.0.0.1:$EMULATOR_PORT/xmlrpc (payment pages under /paystep/)"
else
  EMULATOR_NOTE="Balance: $BALANCE_URL (real Balance; the emulator is not started)"
fi

$PY manage.py migrate --no-input >"$LOGS/migrate.log"
TOKEN=$(LOG_LEVEL=WARNING $PY manage.py load_demo 2>>"$LOGS/demo.log")

if [ -n "${REDIS_URL:-}" ]; then
  .venv/bin/celery -A disbalance worker --loglevel=INFO --concurrency=2 >"$LOGS/worker.log" 2>&1 &
  pids+=($!)
fi
# Embedded mode: beat runs every periodic job in-process (tasks are eager without REDIS_URL).
.venv/bin/celery -A disbalance beat --loglevel=INFO \
  --schedule "$DISBALANCE_RUN_DIR/celerybeat-schedule" >"$LOGS/beat.log" 2>&1 &
pids+=($!)

.venv/bin/gunicorn disbalance.wsgi:application --bind "127.0.0.1:$WEB_PORT" --workers 2 --threads 4 --no-control-socket \
  --access-logfile "$LOGS/access.log" --error-logfile "$LOGS/web.log" &
pids+=($!)
wait_for_port 127.0.0.1 "$WEB_PORT" "the web app"

cat <<MSG

  Disbalance is up.
  API:        http://127.0.0.1:$WEB_PORT/api/v1/
  Swagger UI: http://127.0.0.1:$WEB_PORT/api/docs/
  Admin:      http://127.0.0.1:$WEB_PORT/admin/   (admin/admin, support/support — demo only)
  Health:     http://127.0.0.1:$WEB_PORT/healthz  http://127.0.0.1:$WEB_PORT/readyz
  $EMULATOR_NOTE
  Logs:       $LOGS
  Demo token: $TOKEN

  Try:  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$WEB_PORT/api/v1/customers | python3 -m json.tool
  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
