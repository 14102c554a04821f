#!/usr/bin/env bash
# Install the tools the deploy tests run, on a fresh Debian machine (CI calls this from
# .ci/run; developers may run it too). Idempotent: it installs only what is missing.
#
#   prometheus               promtool (check config/rules, unit-test rules) and the server
#                            the scrape integration test starts
#   prometheus-alertmanager  amtool (check the Alertmanager config, test its routes)
#   docker-compose           `docker-compose config` validates docker-compose.yml against
#                            the Compose schema; it needs no Docker engine for that
#   (package) shellcheck     lints deploy/*.sh
#   socat, openssl           a TLS-terminating proxy (client certificates too) in front
#                            of the test broker, and the certificates for it
#                            (tests/integration/test_kafka_security.py)
#   chromium, chromium-driver  a real headless browser for the incident pages
#                            (tests/integration/test_pages_browser.py, through selenium)
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)

if [ "${#need[@]}" -eq 0 ]; then
    echo "deploy/ci-install.sh: promtool, amtool, docker-compose, shellcheck, socat, openssl and chromium already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "deploy/ci-install.sh: installing ${need[*]}"
$SUDO apt-get update -qq
# --no-install-recommends keeps node-exporter and friends out; policy-rc.d on CI machines
# stops the packages' services from starting, and the tests start their own Prometheus.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# first line of each version; sed reads to the end (head would SIGPIPE docker-compose,
# which exits 141 and stops this script under pipefail)
promtool --version 2>&1 | sed -n 1p
amtool --version 2>&1 | sed -n 1p
docker-compose version 2>&1 | sed -n 1p
