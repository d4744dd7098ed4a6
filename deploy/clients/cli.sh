#!/usr/bin/env bash
# One request from the command line, as JSON (the result comes back as JSON):
#   deploy/clients/cli.sh [host] [port] [tenant]
# mosquitto_rr subscribes to the results topic, then publishes the request
# and prints the first message that comes back.
set -euo pipefail
host=${1:-127.0.0.1} port=${2:-1883} tenant=${3:-cam1}
id="cli-$$-$(date +%s%N)"
# 28×28 zeros but a vertical bar; "values" is the JSON alternative to base64 "data".
values=$(python3 -c 'print(",".join("255" if 4<=i//28<24 and 13<=i%28<16 else "0" for i in range(784)))')
mosquitto_rr -h "$host" -p "$port" -q 1 -W 10 \
  -t "delen/$tenant/requests" -e "delen/$tenant/results" \
  -m "{\"id\":\"$id\",\"input\":{\"dtype\":\"uint8\",\"shape\":[1,28,28],\"values\":[$values]},\"bound\":{\"exit\":1}}"
