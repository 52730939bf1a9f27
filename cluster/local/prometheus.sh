#!/usr/bin/env bash
# A real Prometheus server on one machine without systemd, for tests and for watching local runs.
#
#   cluster/local/prometheus.sh install   the static binary out of Debian's package (~3 s, 19 MB;
#                                         `apt-get install prometheus` would pull ~235 MB of web-UI deps)
#   cluster/local/prometheus.sh start     serve with CONFIG on 127.0.0.1:PORT; waits until ready
#   cluster/local/prometheus.sh stop
#
# Environment: BASE (state folder; default runs/local-prometheus), CONFIG (default
# cluster/prometheus/prometheus.yml), PORT (default 9090). The binary lands in $BASE/bin.
set -euo pipefail
BASE=$(realpath -m "${BASE:-runs/local-prometheus}")
CONFIG=$(realpath "${CONFIG:-cluster/prometheus/prometheus.yml}")
PORT=${PORT:-9090}
BIN=$BASE/bin/prometheus

install() {
  command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
  if [ -x "$BIN" ]; then echo "prometheus: already installed in $BIN"; return 0; fi
  local debs=$BASE/debs
  mkdir -p "$debs" "$BASE/bin" && chmod 777 "$debs"   # apt downloads as the _apt user
  (cd "$debs" && apt-get download -qq prometheus) || { apt-get update -qq && (cd "$debs" && apt-get download -qq prometheus); }
  dpkg-deb -x "$debs"/prometheus_*.deb "$BASE/root"
  cp "$BASE/root/usr/bin/prometheus" "$BIN"
  rm -rf "$BASE/root" "$debs"
  echo "prometheus: installed $("$BIN" --version 2>&1 | head -n 1)"
}

start() {
  mkdir -p "$BASE/data"
  nohup "$BIN" --config.file="$CONFIG" --storage.tsdb.path="$BASE/data" \
    --web.listen-address="127.0.0.1:$PORT" >"$BASE/prometheus.log" 2>&1 &
  echo $! >"$BASE/prometheus.pid"
  for _ in $(seq 1 300); do
    curl -sf "127.0.0.1:$PORT/-/ready" >/dev/null 2>&1 && { echo "prometheus: ready on 127.0.0.1:$PORT"; return 0; }
    sleep 0.1
  done
  tail -n 20 "$BASE/prometheus.log"; return 1
}

stop() {
  [ -f "$BASE/prometheus.pid" ] && kill "$(cat "$BASE/prometheus.pid")" 2>/dev/null || true
  rm -f "$BASE/prometheus.pid"
  echo "prometheus: stopped"
}

case "${1:-}" in
  install | start | stop) "$1" ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
