#!/usr/bin/env bash
# fetch-ort.sh [DEST] — install the ONNX Runtime shared library Kiln's onnx
# backend loads at run time (dlopen; the Go build does not need it).
#
# It takes libonnxruntime.so.1 (linux x64) from the onnxruntime-node npm
# package, fetched with `npm pack` (never `npm install`: the package has a
# postinstall script that downloads more), and checks its sha256. Running it
# again when DEST already holds the right file does nothing.
#
# DEST defaults to third_party/onnxruntime. Point KILN_ORT_LIB at another
# copy to use that instead.
set -euo pipefail

VER=1.30.0
SO_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
MEMBER=package/bin/napi-v6/linux/x64/libonnxruntime.so.1
DEST=${1:-third_party/onnxruntime}
LIB="$DEST/libonnxruntime.so.1"

die() { echo "fetch-ort: $*" >&2; exit 1; }

matches() { [ -f "$1" ] && echo "$SO_SHA256  $1" | sha256sum -c --quiet --status 2>/dev/null; }

if matches "$LIB"; then
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) die "only linux/x86_64 is supported (this is $(uname -s)/$(uname -m)); set KILN_ORT_LIB to an onnxruntime $VER library instead" ;;
esac
command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js/npm (apt-get install -y npm) or set KILN_ORT_LIB to an existing libonnxruntime.so.1"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"

mkdir -p "$DEST" || die "cannot create $DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch-ort: fetching onnxruntime-node@$VER with npm pack ..." >&2
if ! (cd "$tmp" && npm pack --silent "onnxruntime-node@$VER" >"$tmp/npm.log" 2>&1); then
  cat "$tmp/npm.log" >&2
  die "npm pack onnxruntime-node@$VER failed (network or registry problem?)"
fi
tgz="$tmp/onnxruntime-node-$VER.tgz"
[ -f "$tgz" ] || die "npm pack did not produce $(basename "$tgz")"
tar -xzf "$tgz" -C "$tmp" "$MEMBER" || die "$MEMBER not found in $(basename "$tgz")"

got=$(sha256sum "$tmp/$MEMBER" | cut -d' ' -f1)
[ "$got" = "$SO_SHA256" ] || die "checksum mismatch for libonnxruntime.so.1: got $got, want $SO_SHA256"

install -m 0644 "$tmp/$MEMBER" "$LIB.tmp.$$" || die "cannot write into $DEST"
mv -f "$LIB.tmp.$$" "$LIB"
matches "$LIB" || die "installed $LIB does not verify"
echo "fetch-ort: installed $LIB (onnxruntime $VER)" >&2
