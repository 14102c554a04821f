#!/usr/bin/env bash
# End-to-end smoke test of the docker-compose stack, for machines with a Docker engine
# (the CI machines have none; tests/unit/deploy checks the files' structure instead).
#
#   deploy/smoke-test.sh            # build, run, check, tear down (volumes included)
#   deploy/smoke-test.sh --keep     # leave the stack running afterwards to look around
#
# Environment:
#   COMPOSE            compose command (default: "docker compose"; "docker-compose" works)
#   SMOKE_PROJECT      compose project name (default: causalwatch-smoke, apart from yours)
#   SMOKE_TIMEOUT_S    seconds to wait for each step (default: 300)
#   SMOKE_DETECTORS    detector replicas, to check that --scale and DNS discovery work
#                      (default: 2)
#
# Steps:
#   1. build the image and start everything (`--scale detector=N`), demo producer last;
#   2. wait until every long-running service's healthcheck says healthy;
#   3. check Prometheus scrapes N detector replicas (DNS service discovery);
#   4. wait for an explanation in Redis (stream causalwatch:explanations);
#   5. wait for an anomaly score in Prometheus (causalwatch_detector_anomaly_score);
#   6. check the API answers with the token and Grafana has the three dashboards;
#   7. `down -v` unless --keep. Exit 0 only if every step passed.
set -euo pipefail

cd "$(dirname "$0")/.."

KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
read -r -a COMPOSE_CMD <<<"${COMPOSE:-docker compose}"
PROJECT="${SMOKE_PROJECT:-causalwatch-smoke}"
TIMEOUT_S="${SMOKE_TIMEOUT_S:-300}"
DETECTORS="${SMOKE_DETECTORS:-2}"
export CAUSALWATCH_API_TOKEN="${CAUSALWATCH_API_TOKEN:-smoke-$RANDOM$RANDOM}"

dc() { "${COMPOSE_CMD[@]}" -p "$PROJECT" -f docker-compose.yml --profile demo "$@"; }
log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAILED: $*"; dc ps || true; dc logs --tail=50 || true; exit 1; }

cleanup() {
    if [ "$KEEP" -eq 1 ]; then
        log "stack left running (project $PROJECT); stop it with: ${COMPOSE_CMD[*]} -p $PROJECT down -v"
    else
        log "tearing down"
        dc down -v --remove-orphans >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# wait_for DESCRIPTION COMMAND...: retry COMMAND every 3 s until it succeeds or time runs out.
wait_for() {
    local what="$1"
    shift
    local deadline=$((SECONDS + TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${TIMEOUT_S}s waiting for $what"
        sleep 3
    done
    log "ok: $what"
}

all_healthy() {
    local svc id status
    for svc in kafka redis ingest detector explainer prometheus alertmanager grafana; do
        for id in $(dc ps -q "$svc"); do
            status=$(docker inspect -f '{{.State.Health.Status}}' "$id")
            [ "$status" = "healthy" ] || return 1
        done
        [ -n "$(dc ps -q "$svc")" ] || return 1
    done
}

# promql EXPR: the JSON result of an instant query, run inside the Prometheus container.
promql() {
    dc exec -T prometheus wget -qO- "http://127.0.0.1:9090/api/v1/query?query=$1"
}

detector_targets_up() {
    # count(up{job="causalwatch",service="detector"} == 1), URL-encoded
    promql 'count(up%7Bjob%3D%22causalwatch%22%2Cservice%3D%22detector%22%7D%3D%3D1)' |
        grep -q "\"value\":\[[0-9.]*,\"$DETECTORS\"\]"
}

explanation_in_redis() {
    local n
    n=$(dc exec -T redis redis-cli XLEN causalwatch:explanations | tr -dc '0-9')
    [ "${n:-0}" -gt 0 ]
}

score_in_prometheus() {
    # count(causalwatch_detector_anomaly_score) > 0
    promql 'count(causalwatch_detector_anomaly_score)%3E0' | grep -q '"value"'
}

api_lists_incidents() {
    dc exec -T -e TOKEN="$CAUSALWATCH_API_TOKEN" explainer python -c '
import os, urllib.request
req = urllib.request.Request("http://127.0.0.1:8080/api/v1/incidents",
                             headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
urllib.request.urlopen(req, timeout=5)'
}

grafana_has_dashboards() {
    local uid
    for uid in causalwatch-overview causalwatch-series causalwatch-incident; do
        dc exec -T grafana wget -qO- \
            "http://admin:${GRAFANA_ADMIN_PASSWORD:-admin}@127.0.0.1:3000/api/dashboards/uid/$uid" |
            grep -q "\"uid\":\"$uid\"" || return 1
    done
}

log "building the causalwatch image"
dc build
log "starting the stack with $DETECTORS detector replicas"
dc up -d --scale detector="$DETECTORS" \
    kafka kafka-init redis ingest detector explainer prometheus alertmanager grafana
wait_for "every service healthy" all_healthy
wait_for "Prometheus scraping $DETECTORS detector replicas" detector_targets_up

log "streaming the simulated demo metrics"
dc up -d demo-producer
wait_for "an explanation in Redis" explanation_in_redis
wait_for "an anomaly score in Prometheus" score_in_prometheus
wait_for "the API answering with its token" api_lists_incidents
wait_for "Grafana serving the three dashboards" grafana_has_dashboards

log "latest explanation:"
dc exec -T redis redis-cli --raw XREVRANGE causalwatch:explanations + - COUNT 1 | tail -n 1 | cut -c1-400
log "PASSED"
