#!/usr/bin/env bash
# llama.cpp from source, as the second route to the native libraries (the first, and the default, is NuGet's
# LLamaSharp.Backend.Cpu). Not part of the README's two commands nor of .ci/run, which stay NuGet-only.
#
#   scripts/llama-source.sh build [DIR]
#       Fetches the pinned sources (scripts/lib/llama-pin.sh: node-llama-cpp 3.19.1's bundle, llama.cpp b10068; needs npm
#       and the npm registry), and builds them into DIR (default .llama-b10068/, git-ignored) as shared CPU libraries
#       (libllama.so, libggml*.so in DIR/build/bin) plus llama.cpp's own llama-batched-bench (the anchor of
#       BENCHMARKS.md's rollout table). 10 minutes on 2 cores when they are free (40 on 2026-12-01 beside other builds). LLAMA_CMAKE_FLAGS adds cmake flags (e.g.
#       "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=89" for a CUDA build; then point --llama-lib-dir at it).
#
#   scripts/llama-source.sh test [DIR] [dotnet test arguments]
#       Runs the whole suite (scripts/test.sh) with BUPO_LLAMA_LIB_DIR=DIR/build/bin: every llama.cpp call, the struct
#       layout check included, then goes to the source build instead of LLamaSharp.Backend.Cpu's 815a2a59 build. With the
#       b10068 pin every test that loads llama.cpp stops at the layout check (llama_model_params differs from 815a2a59's;
#       README, "CUDA"): the run shows the check at work, and is the test to repeat once a matching release is pinned.
#
#   scripts/llama-source.sh batched-bench [DIR] [MODEL]
#       llama.cpp's llama-batched-bench on MODEL (default ../shared/models/stories260K.gguf) with the settings of
#       `bench rollout --threads 1` (128-token prompt, 256 generated, B = 1,16,64,256, one stream per sequence).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/llama-pin.sh
. "$root/scripts/lib/llama-pin.sh"
die() { echo "llama-source: $*" >&2; exit 1; }
log() { echo "llama-source: $*" >&2; }

build() {
  local dir=${1:-$root/.llama-b10068}
  command -v cmake >/dev/null || die "cmake is needed"
  command -v git >/dev/null || die "git is needed"
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
  local src="$dir/llama.cpp"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    local tmp bundle
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: tmp is local
    trap "rm -rf '$tmp'" EXIT
    log "fetching $llama_pkg"
    bundle=$(fetch_llama_bundle "$tmp") || die "could not fetch the llama.cpp sources"
    rm -rf "$src.partial"
    git clone -q "$bundle" "$src.partial" 2>/dev/null || die "git clone of $bundle failed"
    cp "$tmp/package/llama/llama.cpp.info.json" "$src.partial/"
    mv "$src.partial" "$src"
  fi
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  # shellcheck disable=SC2086  # LLAMA_CMAKE_FLAGS is a list of flags
  cmake -S "$src" -B "$src/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF ${LLAMA_CMAKE_FLAGS:-} >&2
  cmake --build "$src/build" --target llama llama-batched-bench -j"$(nproc)" >&2
  ls "$src/build/bin"/libllama.so* >/dev/null 2>&1 || die "no libllama.so in $src/build/bin after the build"
  log "built $(cat "$src/llama.cpp.info.json" 2>/dev/null | tr -d '\n ') in $src/build/bin"
  echo "$src/build/bin"
}

libdir_of() {
  local dir=${1:-$root/.llama-b10068}
  local bin="$dir/llama.cpp/build/bin"
  ls "$bin"/libllama.so* >/dev/null 2>&1 || die "no llama.cpp build in $dir: run 'scripts/llama-source.sh build $dir' first"
  (cd "$bin" && pwd)
}

run_tests() {
  local bin
  bin=$(libdir_of "${1:-}")
  [ $# -gt 0 ] && shift
  log "running the suite against $bin"
  BUPO_LLAMA_LIB_DIR="$bin" LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" bash "$root/scripts/test.sh" "$@"
}

batched_bench() {
  local bin model=${2:-$root/../shared/models/stories260K.gguf}
  bin=$(libdir_of "${1:-}")
  [ -f "$model" ] || die "$model not found"
  # -npp 128 -ntg 256: prompt and generated tokens per sequence, each sequence with its own prompt (no -pps: that would
  # prefill one prompt and copy it); -no-kvu: one KV stream per sequence (bench rollout's default layout); -c: room for
  # 256 x (128 + 256) cells; -t 1 -tb 1: one thread, as bench rollout --threads 1. llama-batched-bench decodes random
  # tokens and samples nothing: its rate is decode alone, an upper bound for any loop that also samples.
  LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$bin/llama-batched-bench" -m "$model" -c 98304 -b 2048 -ub 512 \
    -npp 128 -ntg 256 -npl "${BATCHES:-1,16,64,256}" -no-kvu -t 1 -tb 1 2>&1 | tee /dev/stderr |
    awk -F'|' '$2 ~ /^ *[0-9]+ *$/ && NF >= 11 {
      b = $4 + 0; tg = $3 + 0; t = $10 + 0
      printf "B=%d generated tok/s (B x TG / (T_PP + T_TG)) = %.1f\n", b, b * tg / t
    }'
}

case "${1:-}" in
  build) shift; build "$@" ;;
  test) shift; run_tests "$@" ;;
  batched-bench) shift; batched_bench "$@" ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
