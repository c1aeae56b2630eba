#!/bin/sh
# InfluxDB 2.x for the hub: a bucket with retention and a token limited to it.
#
#   INFLUX_HOST=http://127.0.0.1:8086 INFLUX_TOKEN=<operator token> INFLUX_ORG=city \
#   RETENTION=400d sh deploy/influxdb/setup-v2.sh
#
# Needs the `influx` 2.x CLI. On a fresh server run `influx setup` first (it
# creates the org, the first user and the operator token).
# Then set in /etc/hub/hub.env: HUB_INFLUX__API=v2 HUB_INFLUX__URL=$INFLUX_HOST
#   HUB_INFLUX__ORG=$INFLUX_ORG HUB_INFLUX__DATABASE=$BUCKET HUB_INFLUX__TOKEN=<printed token>
set -eu

: "${INFLUX_HOST:?}" "${INFLUX_TOKEN:?}" "${INFLUX_ORG:?}"
export INFLUX_HOST INFLUX_TOKEN INFLUX_ORG
BUCKET="${BUCKET:-hub}"
RETENTION="${RETENTION:-400d}"

if ! influx bucket list --name "$BUCKET" >/dev/null 2>&1; then
    influx bucket create --name "$BUCKET" --retention "$RETENTION" --shard-group-duration 7d
else
    influx bucket update --id "$(influx bucket list --name "$BUCKET" --hide-headers | cut -f1)" \
        --retention "$RETENTION"
fi
BUCKET_ID="$(influx bucket list --name "$BUCKET" --hide-headers | cut -f1)"

# The hub writes readings and reads them back (API, backtests): read+write on
# this bucket only, nothing else in the org.
influx auth create --description "city sensing hub" \
    --read-bucket "$BUCKET_ID" --write-bucket "$BUCKET_ID"
echo "Put the token printed above in HUB_INFLUX__TOKEN (hub.env, mode 0600)."
# InfluxQL reads (the hub queries through /query) need a DBRP mapping:
influx v1 dbrp create --db "$BUCKET" --rp autogen --bucket-id "$BUCKET_ID" --default 2>/dev/null \
    || echo "DBRP mapping $BUCKET/autogen already exists"
