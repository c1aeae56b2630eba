#!/bin/sh
# InfluxDB 1.x for the hub: database, retention policy, and a write/read user.
#
#   INFLUX_URL=http://127.0.0.1:8086 ADMIN_USER=admin ADMIN_PASSWORD=... \
#   HUB_PASSWORD=... RETENTION=400d sh deploy/influxdb/setup-v1.sh
#
# Idempotent: safe to run again (CREATE ... is a no-op when it exists; the
# retention policy is altered to the requested duration).
# Then set in /etc/hub/hub.env: HUB_INFLUX__API=v1 HUB_INFLUX__URL=$INFLUX_URL
#   HUB_INFLUX__DATABASE=$DATABASE HUB_INFLUX__USERNAME=$HUB_USER HUB_INFLUX__PASSWORD=...
set -eu

INFLUX_URL="${INFLUX_URL:-http://127.0.0.1:8086}"
DATABASE="${DATABASE:-hub}"
RETENTION="${RETENTION:-400d}"   # raw readings: a year plus a margin for year-on-year reports
HUB_USER="${HUB_USER:-hub}"
: "${HUB_PASSWORD:?set HUB_PASSWORD (the hub's InfluxDB password)}"

q() {
    # Admin credentials are needed once [http] auth-enabled = true (recommended).
    curl -sS --fail-with-body -XPOST "$INFLUX_URL/query" \
        ${ADMIN_USER:+-u "$ADMIN_USER:${ADMIN_PASSWORD:-}"} \
        --data-urlencode "q=$1"
    echo
}

q "CREATE DATABASE \"$DATABASE\""
# One default policy for raw readings; shard groups of 7 days keep deletes cheap.
q "CREATE RETENTION POLICY \"raw\" ON \"$DATABASE\" DURATION $RETENTION REPLICATION 1 SHARD DURATION 7d DEFAULT"
q "ALTER RETENTION POLICY \"raw\" ON \"$DATABASE\" DURATION $RETENTION DEFAULT"
q "CREATE USER \"$HUB_USER\" WITH PASSWORD '$HUB_PASSWORD'"
q "GRANT ALL ON \"$DATABASE\" TO \"$HUB_USER\""
echo "InfluxDB 1.x ready: database $DATABASE, retention $RETENTION, user $HUB_USER"
