#!/usr/bin/env bash
# Regenerate ingest_stream_pb2*.py from ingest_stream.proto (grpcio-tools from the dev lock).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
    ingest/grpc/ingest_stream.proto
