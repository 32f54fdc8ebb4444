#!/bin/sh
# Installs every Debian 12 package intentra-gateway needs to build, test and benchmark.
# Used by README.md, .ci/run and docker/Dockerfile. Run as root. Idempotent.
#   tools/install-deps.sh            build + test dependencies
#   tools/install-deps.sh --runtime  only the shared libraries the daemon links (Docker runtime image)
set -eu

runtime="libsodium23 libssl3 librdkafka1 libhiredis0.14 libmicrohttpd12 libcjson1 libcurl4 libjemalloc2 zlib1g ca-certificates"
build="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev \
  libsodium-dev libssl-dev librdkafka-dev libhiredis-dev libmicrohttpd-dev libcjson-dev \
  libcmocka-dev libcurl4-openssl-dev libjemalloc-dev zlib1g-dev"
# Real servers and clients the tests and benchmarks talk to.
tools="redis-server redis-tools kcat prometheus curl python3 procps iproute2 rsyslog rsyslog-kafka gnuplot-nox"

pkgs="$runtime $build $tools"
if [ "${1:-}" = "--runtime" ]; then
	pkgs="$runtime"
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-deps.sh: run as root (apt-get needs it), e.g. sudo $0" >&2
	exit 1
fi

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps the image small; policy-rc.d stops Debian from starting
# redis/prometheus/rsyslog services at install time (tests start their own on free ports).
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
