#!/usr/bin/env bash
# Fetches the prebuilt CPU llama.cpp libraries (release v0.5.0, the C API our binding targets) from the
# npm package @node-llama-cpp/linux-x64, checks its sha256 and unpacks the shared libraries into
# .native/llama-cpu/. Idempotent: does nothing when the pinned version is already in place.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pkg="@node-llama-cpp/linux-x64"
version="3.22.1"
sha256="0d953e1503d5ab4608d8ed5b739132308c81ac05ffeb760d2a7f30e08a9f90e0"
dest="$root/.native/llama-cpu"
stamp="$dest/.bupo-$version-$sha256"
[ -f "$stamp" ] && exit 0
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "fetch-llama: prebuilt llama.cpp libraries are fetched for Linux x86_64 only; build llama.cpp yourself and set BUPO_LLAMA_LIB_DIR (see README)" >&2; exit 0 ;;
esac
command -v npm >/dev/null || { echo "fetch-llama: npm is needed to fetch $pkg@$version (or set BUPO_LLAMA_LIB_DIR to a llama.cpp build)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "fetch-llama: fetching $pkg@$version" >&2
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
actual=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$actual" != "$sha256" ]; then echo "fetch-llama: sha256 mismatch for $pkg@$version: got $actual, want $sha256" >&2; exit 1; fi
mkdir -p "$tmp/x" && tar xzf "$tgz" -C "$tmp/x"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
cp "$tmp"/x/package/bins/linux-x64/*.so "$dest.tmp/"
touch "$dest.tmp/.bupo-$version-$sha256"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "fetch-llama: llama.cpp libraries in $dest" >&2
