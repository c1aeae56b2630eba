#!/bin/sh
# One-time preparation for docker-compose.yml: a private CA and a broker
# certificate, the broker's password file and ACL from devices.csv, and .env.
#
#   DEVICES=../../devices.csv BROKER_HOST=mqtt.city.example ./prepare.sh
set -eu
cd "$(dirname "$0")"
: "${DEVICES:?set DEVICES to your device import file (CSV or YAML)}"
BROKER_HOST="${BROKER_HOST:-localhost}"
umask 077
mkdir -p secrets/certs secrets/mosquitto secrets/state

if [ ! -f secrets/certs/server.crt ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=city-hub-ca" \
        -keyout secrets/certs/ca.key -out secrets/certs/ca.crt
    openssl req -newkey rsa:3072 -nodes -subj "/CN=$BROKER_HOST" \
        -keyout secrets/certs/server.key -out secrets/certs/server.csr
    printf 'subjectAltName=DNS:%s,DNS:mosquitto,DNS:localhost\n' "$BROKER_HOST" > secrets/certs/ext.cnf
    openssl x509 -req -in secrets/certs/server.csr -CA secrets/certs/ca.crt \
        -CAkey secrets/certs/ca.key -CAcreateserial -days 825 \
        -out secrets/certs/server.crt -extfile secrets/certs/ext.cnf
fi

# Devices are provisioned into a scratch state dir only to derive credentials;
# import the same file into the running hub with `docker compose exec hub hub devices import`.
HUB_DATA_DIR=secrets/state hub devices import "$DEVICES"
HUB_DATA_DIR=secrets/state hub devices credentials --out secrets/mosquitto --hub-user hub

# The broker's entrypoint (root) copies what it needs; the hub container (uid
# 10001) only needs the CA certificate, which is public.
chmod 0755 secrets secrets/certs
chmod 0644 secrets/certs/ca.crt

if [ ! -f .env ]; then
    HUB_MQTT_PASSWORD="$(awk -F, '$1 == "hub" { print $3 }' secrets/mosquitto/credentials.csv)"
    {
        echo "HUB_MQTT_PASSWORD=$HUB_MQTT_PASSWORD"
        echo "HUB_INFLUX_PASSWORD=$(openssl rand -hex 24)"
        echo "INFLUX_ADMIN_PASSWORD=$(openssl rand -hex 24)"
    } > .env
fi
echo "Ready: docker compose up -d --build; device passwords in secrets/mosquitto/credentials.csv"
