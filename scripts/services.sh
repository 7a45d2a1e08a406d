#!/usr/bin/env bash
# Make sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) are running for the
# tests: install them from Debian's packages when missing (as root), start them when down,
# and otherwise stop with a message that names what to install.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { [ "$(id -u)" = 0 ]; }
apt_updated=0
install() {
  if ! as_root || ! command -v apt-get >/dev/null; then
    echo "make test needs $2 on 127.0.0.1:$3; install it (Debian: apt-get install $1) and start it." >&2
    exit 1
  fi
  [ $apt_updated = 1 ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
wait_for() {
  for _ in $(seq 1 50); do up "$1" && return 0; sleep 0.2; done
  echo "$2 did not come up on 127.0.0.1:$1" >&2; exit 1
}

if ! up 6379; then
  command -v redis-server >/dev/null || install redis-server Redis 6379
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for 6379 Redis
fi

if ! up 5432; then
  command -v pg_ctlcluster >/dev/null || install postgresql PostgreSQL 5432
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  wait_for 5432 PostgreSQL
fi
echo "services: Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 are up"
