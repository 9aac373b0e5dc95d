#!/usr/bin/env bash
# Regenerates internal/grpcapi/inferencepb from api/*.proto.
#
# Needs protoc (Debian: apt-get install protobuf-compiler) and Go. The protoc
# plugins are installed at pinned versions into a cache directory
# ($KILN_PROTOC_GOBIN, default ~/.cache/kiln/protoc-plugins/<versions>), so the
# output is reproducible and nothing lands in the user's GOBIN. The generated
# .pb.go files are committed: building Kiln needs no protoc.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12     # matches google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2  # generated code needs grpc >= 1.64 (go.mod has 1.85)
MODULE=github.com/kilnai/kiln
OUT_DIR=internal/grpcapi/inferencepb

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! command -v protoc >/dev/null 2>&1; then
	echo "gen-proto: protoc not found; install it (Debian/Ubuntu: apt-get install -y protobuf-compiler)" >&2
	exit 1
fi

gobin=${KILN_PROTOC_GOBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/protoc-plugins/go-${PROTOC_GEN_GO_VERSION}_grpc-${PROTOC_GEN_GO_GRPC_VERSION}}
mkdir -p "$gobin"
if [[ ! -x $gobin/protoc-gen-go ]]; then
	GOBIN=$gobin go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi
if [[ ! -x $gobin/protoc-gen-go-grpc ]]; then
	GOBIN=$gobin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
fi

rm -f "$OUT_DIR"/*.pb.go
PATH="$gobin:$PATH" protoc \
	--proto_path=api \
	--go_out=. --go_opt=module="$MODULE" \
	--go-grpc_out=. --go-grpc_opt=module="$MODULE" \
	api/inference.proto api/model_config.proto

echo "gen-proto: $(protoc --version) → $(ls "$OUT_DIR"/*.pb.go | tr '\n' ' ')"
