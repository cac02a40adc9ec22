#!/usr/bin/env bash
# Quick start: build Sluice, start a tiny upstream, start the gateway, add a route through the admin API,
# and show a proxied response. The gateway keeps running in the foreground; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
cargo build --release -p sluice

WORK=$(mktemp -d)
KEY=${SLUICE_ADMIN_KEY:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
UPSTREAM_PORT=${UPSTREAM_PORT:-9081}
cleanup() { kill "${UP_PID:-}" "${GW_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

python3 -m http.server "$UPSTREAM_PORT" --bind 127.0.0.1 --directory examples/quickstart/site >/dev/null 2>&1 &
UP_PID=$!

./target/release/sluice serve --data-dir "$WORK/data" --listen 127.0.0.1:9080 \
    --admin-listen 127.0.0.1:9180 --admin-key "$KEY" &
GW_PID=$!
for _ in $(seq 50); do
    curl -fs -o /dev/null -H "X-API-KEY: $KEY" http://127.0.0.1:9180/apisix/admin/routes && break
    sleep 0.2
done

echo "== add a route (admin API)"
curl -fsS -X PUT http://127.0.0.1:9180/apisix/admin/routes/hello -H "X-API-KEY: $KEY" -d '{
  "uri": "/*",
  "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:'"$UPSTREAM_PORT"'": 1}}
}'
echo
echo "== a proxied request: curl -i http://127.0.0.1:9080/"
curl -sS -i http://127.0.0.1:9080/
echo
echo "Sluice is running: proxy 127.0.0.1:9080, admin 127.0.0.1:9180 (X-API-KEY: $KEY). Ctrl-C stops it."
wait "$GW_PID"
