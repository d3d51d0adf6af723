#!/usr/bin/env bash
# Installs what Corral's cluster and tests need and is not there yet:
# redis-server and chromium from the OS packages, and the pinned Consul agent
# built from the Go module proxy into bin/consul (a consul already on PATH is
# used).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

if ! command -v redis-server >/dev/null 2>&1; then
  echo "deps: installing redis-server from the OS packages"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# The Debian package may start its own server on 6379; Corral's cluster and
# tests run their own servers on other ports, so it is left alone.

# The Python example plugin (examples/python-donations) and its tests need
# gRPC for the system Python, and its cryptography for go-plugin's AutoMTLS.
if command -v apt-get >/dev/null 2>&1 && ! /usr/bin/python3 -c 'import grpc, google.protobuf, cryptography' >/dev/null 2>&1; then
  echo "deps: installing python3-grpcio, python3-protobuf and python3-cryptography from the OS packages"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-grpcio python3-protobuf python3-cryptography >/dev/null
fi

# The dashboard's browser test (e2e/ui_test.go) drives headless Chromium.
if command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "deps: installing chromium from the OS packages"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ -x bin/consul ]; then
  :
elif command -v consul >/dev/null 2>&1; then
  echo "deps: using $(command -v consul) ($(consul version | head -1))"
else
  echo "deps: building the pinned Consul (tools/consul, v1.19.2) into bin/consul; about 7 minutes the first time"
  mkdir -p bin
  (cd tools/consul && go build -o ../../bin/consul github.com/hashicorp/consul)
fi
