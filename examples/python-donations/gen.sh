#!/bin/sh
# Regenerates the Python code of the plugin protocol from
# plugins/pluginpb/handler.proto. Needs protoc and python3-grpc-tools
# (Debian); the plugin itself only needs python3-grpcio and
# python3-protobuf.
set -eu
cd "$(dirname "$0")"
proto=../../plugins/pluginpb
protoc -I"$proto" --python_out=. "$proto/handler.proto"
/usr/bin/python3 -m grpc_tools.protoc -I"$proto" --grpc_python_out=. "$proto/handler.proto"
