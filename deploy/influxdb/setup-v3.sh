#!/bin/sh
# InfluxDB 3 Core for the hub: a database and a token.
#
#   INFLUXDB3_HOST_URL=http://127.0.0.1:8181 INFLUXDB3_AUTH_TOKEN=<admin token> \
#   sh deploy/influxdb/setup-v3.sh
#
# Needs the `influxdb3` CLI. On a fresh server, `influxdb3 create token --admin`
# prints the admin token. 3 Core keeps data until deleted (no retention policy
# in Core); plan disk for it, or delete old Parquet files by age.
# Then set in /etc/hub/hub.env: HUB_INFLUX__API=v3 HUB_INFLUX__URL=$INFLUXDB3_HOST_URL
#   HUB_INFLUX__DATABASE=$DATABASE HUB_INFLUX__TOKEN=<token>
set -eu

: "${INFLUXDB3_HOST_URL:?}" "${INFLUXDB3_AUTH_TOKEN:?}"
export INFLUXDB3_HOST_URL INFLUXDB3_AUTH_TOKEN
DATABASE="${DATABASE:-hub}"

influxdb3 create database "$DATABASE" 2>/dev/null || echo "database $DATABASE already exists"
echo "Use the admin token, or (InfluxDB 3 Enterprise) a token limited to $DATABASE, as HUB_INFLUX__TOKEN."
