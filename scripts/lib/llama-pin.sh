# shellcheck shell=bash
# The llama.cpp sources this project builds from when it does not use LLamaSharp.Backend.Cpu's libraries: npm
# node-llama-cpp 3.19.1's package/llama/gitRelease.bundle, llama.cpp b10068, the nearest release a registry serves to
# commit 815a2a59 (whose struct layout LLamaSharp 0.30.0 passes by value). It is NOT a match: b10068's
# llama_context_params has 815a2a59's fields, but its llama_model_params still has use_mmap/use_direct_io/use_mlock
# where 815a2a59 has load_mode and load_mtp, and the layout check refuses it with one line (README, "CUDA"). The next
# release served, 3.20.0's b10361, has 815a2a59's llama_model_params but adds n_outputs_max_per_seq to
# llama_context_params. Change the pin when a matching release is served.
# Sourced by scripts/gpu-smoke.sh and scripts/llama-source.sh.
llama_pkg="node-llama-cpp@3.19.1"
# sha256 of the npm tarball, taken from `npm pack node-llama-cpp@3.19.1` on 2026-12-01.
llama_pkg_sha256="ebf8f8dfad68e9dba54c8fe8b8e1e638b9ba1d4111566ccf4f3dfd86de72d70e"

# fetch_llama_bundle TMP: npm-packs the pinned package into TMP, checks its sha256 and leaves the bundle at
# TMP/package/llama/gitRelease.bundle (prints that path).
fetch_llama_bundle() {
  local tmp=$1 tgz actual
  command -v npm >/dev/null || { echo "npm is needed to fetch $llama_pkg" >&2; return 1; }
  (cd "$tmp" && npm pack --silent "$llama_pkg" >/dev/null)
  tgz=$(ls "$tmp"/node-llama-cpp-*.tgz)
  actual=$(sha256sum "$tgz" | cut -d' ' -f1)
  if [ "$actual" != "$llama_pkg_sha256" ]; then
    echo "sha256 mismatch for $llama_pkg: got $actual, want $llama_pkg_sha256" >&2
    return 1
  fi
  tar -C "$tmp" -xzf "$tgz" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
  echo "$tmp/package/llama/gitRelease.bundle"
}
