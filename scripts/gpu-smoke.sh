#!/usr/bin/env bash
# GPU smoke test of bupo-hybrid, in two steps.
#
#   scripts/gpu-smoke.sh prepare [DIR]
#       On a machine with network, the .NET SDK, npm and xz (the development machine). Writes into DIR (default
#       .gpu-smoke/, git-ignored) everything the GPU machine needs, about 35 MiB (it checks the total is under 60 MiB):
#         app.tar.xz             the CLI published framework-dependent, without libtorch (PyTorch's is used there)
#                                and without the CPU llama.cpp libraries (llama.cpp is built there with CUDA)
#         dotnet-runtime.tar.xz  dotnet, host/ and shared/Microsoft.NETCore.App/<version> of this machine's SDK
#         llama.cpp-src.tar.xz   the llama.cpp sources of npm node-llama-cpp@3.19.1's package/llama/gitRelease.bundle
#                                (llama.cpp b10068, the nearest served release to the 815a2a59 LLamaSharp 0.30.0 binds, but
#                                its llama_model_params differs: the layout check refuses it, see below)
#                                (sha256-pinned), only the folders a library build needs (CMakeLists.txt, cmake/, ggml/,
#                                src/, include/, common/, vendor/, licenses/): 3.5 MB instead of the bundle's 35 MB.
#                                GPU_SMOKE_FULL_BUNDLE=1 brings the bundle itself instead (then ~67 MiB in all: too
#                                much for a 64 MiB transfer).
#         vocab-qwen2.gguf.xz    ../shared's Qwen2/Qwen3 vocabulary (the random Qwen3-0.6B shape needs its 151,936 tokens)
#         stories260K.gguf.xz    ../shared's small llama model, when present
#
#   scripts/gpu-smoke.sh dry-run
#       Both steps on this machine without a GPU (GPU_SMOKE_CPU=1, no llama.cpp sources: LLamaSharp.Backend.Cpu's
#       libraries, libtorch of the CLI's Release build); what CI runs after the tests.
#
#   scripts/gpu-smoke.sh run [DIR]
#       On the GPU machine (no network needed; CUDA toolkit with nvcc, cmake, ninja or make, g++, python3 with PyTorch).
#       Unpacks into GPU_SMOKE_WORK (default /tmp/bupo-gpu-smoke), builds llama.cpp with CUDA as README's CUDA section
#       says (skipped when already built there), points LD_LIBRARY_PATH at PyTorch's torch/lib (TorchSharp loads CUDA
#       libtorch from there) and runs: inspect, generate --gpu-layers 999, analyze --device cuda (both engines),
#       bench train --device cuda (Qwen3-0.6B shape, bf16, 8 x 1024), the PyTorch reference step
#       (bench/pytorch/train_step.py, same shape) side by side, bench rollout, bench sync, bench analyze --device cuda,
#       bench tokenize.
#       Every step's output goes to WORK/logs/ (and, when $OUT is set, WORK/logs as $OUT/gpu-smoke-logs.tar.gz); a summary lists each step's result and the exit
#       code is the number of failed steps. Re-running continues where a previous run left off (no rebuild).
#       Settings: CUDA_ARCH (default 90: H100/H200), GPU_SMOKE_STEP_TIMEOUT (seconds, default 900),
#       GPU_SMOKE_CPU=1 (a dry run on a machine without a GPU: CPU llama.cpp build, --device cpu, tiny batches),
#       GPU_SMOKE_LLAMA_LIB_DIR (use these llama.cpp libraries instead of building), GPU_SMOKE_TORCH_LIB (libtorch folder
#       instead of PyTorch's torch/lib).
#
# Status: the prepare step and a GPU_SMOKE_CPU=1 dry run of the run step passed on the CPU development machine before
# the move to LLamaSharp 0.30.0. Since then the llama.cpp half cannot pass as pinned: LLamaSharp 0.30.0 binds commit
# 815a2a59, no package registry serves those sources (npm's node-llama-cpp 3.19.1 bundles b10068, 3.20.0 b10361, and
# neither has 815a2a59's structs), and the layout check refuses the b10068 build (llama_model_params differs; measured
# with scripts/llama-source.sh test on the CPU). Give GPU_SMOKE_LLAMA_LIB_DIR a build of 815a2a59 (e.g. the cuda12 folder
# of LLamaSharp.Backend.Cuda12 from your own feed) for those steps; the TorchSharp steps (bench train, the PyTorch
# reference, analyze --engine torch) do not depend on it. The CUDA path has NOT been run: no GPU machine was drawn.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The pinned llama.cpp sources (node-llama-cpp 3.19.1's bundle, b10068) and fetch_llama_bundle, shared with llama-source.sh.
# shellcheck source=lib/llama-pin.sh
. "$root/scripts/lib/llama-pin.sh"
llama_src_paths=(CMakeLists.txt cmake ggml src include common vendor licenses LICENSE)
budget_mib=60

die() { echo "gpu-smoke: $*" >&2; exit 1; }
log() { echo "gpu-smoke: $*" >&2; }

prepare() {
  local dir=${1:-$root/.gpu-smoke}
  local xz_level=${GPU_SMOKE_XZ_LEVEL:-9} sources=${GPU_SMOKE_SOURCES:-1}
  command -v dotnet >/dev/null || die "dotnet (the .NET SDK) is needed to publish the app"
  [ "$sources" = 0 ] || command -v npm >/dev/null || die "npm is needed to fetch $llama_pkg"
  command -v xz >/dev/null || die "xz is needed"
  rm -rf "$dir" && mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT

  log "publishing the CLI (framework-dependent, linux-x64)"
  dotnet publish "$root/src/BuPO.Hybrid.Cli/BuPO.Hybrid.Cli.csproj" -c Release -r linux-x64 --self-contained false \
    -o "$tmp/publish" --nologo -v quiet -clp:ErrorsOnly >&2
  mkdir -p "$tmp/app"
  # Managed assemblies, the runtime config and TorchSharp's own native glue; no deps.json (so the host does not
  # demand the libtorch files it lists: libtorch comes from PyTorch via LD_LIBRARY_PATH), no libtorch, no CPU llama.cpp.
  cp "$tmp/publish"/*.dll "$tmp/publish/bupo-hybrid.runtimeconfig.json" "$tmp/app/"
  cp "$tmp/publish/libLibTorchSharp.so" "$tmp/app/"
  [ -f "$tmp/publish/libbupo_glibcxx_compat.so" ] && cp "$tmp/publish/libbupo_glibcxx_compat.so" "$tmp/app/"
  tar -C "$tmp" -cf - app | xz "-$xz_level" -T0 > "$dir/app.tar.xz"

  local dotnet_root version
  dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  version=$(sed -n 's/.*"version": *"\([0-9][^"]*\)".*/\1/p' "$tmp/app/bupo-hybrid.runtimeconfig.json" | head -n1)
  [ -n "$version" ] || die "cannot read the runtime version from bupo-hybrid.runtimeconfig.json"
  # The newest installed Microsoft.NETCore.App with the same major.minor (roll-forward picks the latest patch).
  local runtime
  runtime=$(find "$dotnet_root/shared/Microsoft.NETCore.App" -mindepth 1 -maxdepth 1 -type d -name "${version%.*}.*" -printf '%f\n' | sort -V | tail -n1)
  [ -n "$runtime" ] || die "no Microsoft.NETCore.App ${version%.*}.* under $dotnet_root/shared"
  log "packing the .NET runtime $runtime from $dotnet_root"
  tar -C "$dotnet_root" -cf - dotnet host "shared/Microsoft.NETCore.App/$runtime" | xz "-$xz_level" -T0 > "$dir/dotnet-runtime.tar.xz"

  if [ "$sources" = 0 ]; then
    log "GPU_SMOKE_SOURCES=0: no llama.cpp sources (the run step then needs GPU_SMOKE_LLAMA_LIB_DIR)"
  else
    log "fetching $llama_pkg (the llama.cpp source bundle)"
    local bundle
    bundle=$(fetch_llama_bundle "$tmp") || die "could not fetch the llama.cpp sources"
    if [ "${GPU_SMOKE_FULL_BUNDLE:-0}" = 1 ]; then
      cp "$bundle" "$dir/gitRelease.bundle"
    else
      git clone -q "$bundle" "$tmp/llama.cpp" 2>/dev/null
      git -C "$tmp/llama.cpp" rev-parse HEAD > "$dir/llama.cpp.commit"
      git -C "$tmp/llama.cpp" archive --format=tar --prefix=llama.cpp/ HEAD "${llama_src_paths[@]}" | xz "-$xz_level" -T0 > "$dir/llama.cpp-src.tar.xz"
    fi
  fi

  local shared=${BUPO_SHARED_DIR:-$root/../shared}
  if [ -f "$shared/models/vocab/ggml-vocab-qwen2.gguf" ]; then
    xz "-$xz_level" -T0 -c "$shared/models/vocab/ggml-vocab-qwen2.gguf" > "$dir/vocab-qwen2.gguf.xz"
  else
    log "warning: $shared/models/vocab/ggml-vocab-qwen2.gguf not found: the run step falls back to a generated vocabulary (not Qwen3's 151,936 tokens)"
  fi
  if [ -f "$shared/models/stories260K.gguf" ]; then xz "-$xz_level" -c "$shared/models/stories260K.gguf" > "$dir/stories260K.gguf.xz"; fi

  local bytes
  bytes=$(du -cb "$dir" | tail -n1 | cut -f1)
  ls -l "$dir" >&2
  log "$(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB in %s", b / 1048576, ARGV[1] }' "$dir")"
  [ "$bytes" -le $((budget_mib * 1024 * 1024)) ] || die "more than $budget_mib MiB: it will not fit a 64 MiB transfer beside the working tree"
}

# ---------------------------------------------------------------------------------------------------------------- run

failed=0
summary=()

# step NAME COMMAND...: runs one smoke step with a timeout, logging to WORK/logs/NAME.log (and $OUT/NAME.log).
step() {
  local name=$1; shift
  local logfile="$work/logs/$name.log" rc=0 t0 t1
  t0=$(date +%s)
  log "step $name: $*"
  timeout "${GPU_SMOKE_STEP_TIMEOUT:-900}" "$@" > "$logfile" 2>&1 || rc=$?
  t1=$(date +%s)
  tail -n 40 "$logfile"
  if [ "$rc" -eq 0 ]; then summary+=("ok    $name ($((t1 - t0)) s)")
  else summary+=("FAIL  $name (exit $rc after $((t1 - t0)) s; log $logfile)"); failed=$((failed + 1)); fi
}

run() {
  local dir=${1:-$root/.gpu-smoke}
  [ -d "$dir" ] || die "$dir not found: run 'scripts/gpu-smoke.sh prepare' on a machine with network first"
  dir=$(cd "$dir" && pwd)
  work=${GPU_SMOKE_WORK:-/tmp/bupo-gpu-smoke}
  mkdir -p "$work/logs" "$work/models" "$work/cache"
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; fi
  local cpu=${GPU_SMOKE_CPU:-0}

  if [ ! -x "$work/dotnet/dotnet" ]; then
    mkdir -p "$work/dotnet" && tar -C "$work/dotnet" -xJf "$dir/dotnet-runtime.tar.xz"
  fi
  export DOTNET_ROOT="$work/dotnet" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
  export PATH="$DOTNET_ROOT:$PATH"
  rm -rf "$work/app" && tar -C "$work" -xJf "$dir/app.tar.xz"

  # llama.cpp: built once per machine, as README's CUDA section says (library targets only).
  local libdir=${GPU_SMOKE_LLAMA_LIB_DIR:-}
  if [ -z "$libdir" ]; then
    local src="$work/llama.cpp"
    libdir="$src/build/bin"
    if ! ls "$libdir"/libllama.so* >/dev/null 2>&1; then
      rm -rf "$src"
      if [ -f "$dir/gitRelease.bundle" ]; then git clone -q "$dir/gitRelease.bundle" "$src"
      else tar -C "$work" -xJf "$dir/llama.cpp-src.tar.xz"; fi
      local gen=() cuda=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90}")
      command -v ninja >/dev/null && gen=(-G Ninja)
      [ "$cpu" = 1 ] && cuda=(-DGGML_CUDA=OFF)
      step llama-build bash -c "cmake -S '$src' -B '$src/build' ${gen[*]} ${cuda[*]} -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF && cmake --build '$src/build' --target llama -j$(nproc)"
      ls "$libdir"/libllama.so* >/dev/null 2>&1 || { printf '%s\n' "${summary[@]}"; die "llama.cpp build failed (log $work/logs/llama-build.log)"; }
    fi
  fi
  export BUPO_LLAMA_LIB_DIR="$libdir"

  # TorchSharp's CUDA: PyTorch's own libtorch (TorchSharp 0.107 ran with PyTorch 2.11's there).
  local torchlib=${GPU_SMOKE_TORCH_LIB:-}
  if [ -z "$torchlib" ]; then
    torchlib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') \
      || die "python3 with PyTorch is needed (or set GPU_SMOKE_TORCH_LIB to a libtorch lib folder)"
  fi
  # llama.cpp's folder too: libggml.so finds libggml-cpu/-cuda.so.0 through it even when the build tree was moved.
  export LD_LIBRARY_PATH="$torchlib:$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

  local vocab=() stories="$work/models/stories260K.gguf"
  # Unpacked once: the random model's cache name depends on the vocabulary file's path, size and time.
  if [ -f "$dir/vocab-qwen2.gguf.xz" ]; then
    [ -f "$work/models/vocab-qwen2.gguf" ] || xz -dc "$dir/vocab-qwen2.gguf.xz" > "$work/models/vocab-qwen2.gguf"
    vocab=(--vocab "$work/models/vocab-qwen2.gguf")
  else
    vocab=(--vocab generated)
  fi
  if [ -f "$dir/stories260K.gguf.xz" ] && [ ! -f "$stories" ]; then xz -dc "$dir/stories260K.gguf.xz" > "$stories"; fi

  local cli=(dotnet "$work/app/bupo-hybrid.dll")
  local dev=cuda gpu=999 dtype=bf16 shape=qwen3-0.6b batch=(--batch 8 --seq 1024) steps=(--steps 5 --warmup 2)
  if [ "$cpu" = 1 ]; then dev=cpu; gpu=0; dtype=f32; shape=qwen3-tiny; batch=(--batch 1 --seq 32); steps=(--steps 1 --warmup 0); fi
  local random=(--random "$shape" "${vocab[@]}" --cache-dir "$work/cache")
  local model

  log "llama.cpp from $BUPO_LLAMA_LIB_DIR; libtorch from $torchlib; work folder $work"
  [ "$cpu" = 1 ] || step nvidia-smi nvidia-smi
  # bench tokenize first: it writes the random model into the cache (reused by every later step).
  step bench-tokenize "${cli[@]}" bench tokenize "${random[@]}" --generated-text --lines 500 --min-seconds 1 --json "$work/logs/tokenize.json"
  model=$(find "$work/cache" -maxdepth 1 -name "random-$shape-*.gguf" -print -quit)
  [ -n "$model" ] || model="$stories"
  step inspect "${cli[@]}" inspect "$model"
  step generate "${cli[@]}" generate "$model" --prompt "The answer is" --max-tokens 32 --gpu-layers "$gpu" --parallel 4 --seed 1
  [ -f "$stories" ] && step generate-stories "${cli[@]}" generate "$stories" --prompt "Once upon a time" --max-tokens 32 --gpu-layers "$gpu" --seed 1
  step analyze-torch "${cli[@]}" analyze --model "$model" --prompt "Janet has 3 apples and buys 5 more. How many apples does she have?" \
    --engine torch --device "$dev" --json "$work/logs/analyze-torch.json"
  step analyze-llama "${cli[@]}" analyze --model "$model" --prompt "Janet has 3 apples and buys 5 more. How many apples does she have?" \
    --engine llama --device "$dev" --gpu-layers "$gpu" --json "$work/logs/analyze-llama.json"
  step bench-train "${cli[@]}" bench train "${random[@]}" --device "$dev" --dtype "$dtype" "${batch[@]}" "${steps[@]}" --json "$work/logs/train.json"
  if [ "${GPU_SMOKE_PYTORCH:-1}" != 0 ] && python3 -c 'import torch' 2>/dev/null; then
    local pydev=()
    [ "$cpu" = 1 ] && pydev=(--device cpu --dtype f32)
    step pytorch-train python3 "$root/bench/pytorch/train_step.py" --gguf "$model" "${pydev[@]}" "${batch[@]}" "${steps[@]}" --json "$work/logs/train-pytorch.json"
  fi
  step bench-rollout "${cli[@]}" bench rollout --model "$model" --gpu-layers "$gpu" \
    --batch "$([ "$cpu" = 1 ] && echo 1,4 || echo 1,16,64,256)" --gen-tokens "$([ "$cpu" = 1 ] && echo 8 || echo 256)" --json "$work/logs/rollout.json"
  step bench-sync "${cli[@]}" bench sync "${random[@]}" --device "$dev" --gpu-layers "$gpu" --quant Q8_0,F16,Q4_K_M --json "$work/logs/sync.json"
  step bench-analyze "${cli[@]}" bench analyze "${random[@]}" --device "$dev" --dtype "$dtype" --gpu-layers "$gpu" \
    --sequences 4 --seq "$([ "$cpu" = 1 ] && echo 64 || echo 1024)" --json "$work/logs/bench-analyze.json"

  {
    echo "gpu-smoke summary (work folder $work):"
    printf '  %s\n' "${summary[@]}"
  } | tee "$work/logs/summary.txt"
  if [ -n "${OUT:-}" ]; then tar -C "$work" -czf "$OUT/gpu-smoke-logs.tar.gz" logs && cp "$work/logs/summary.txt" "$OUT/"; fi
  return "$failed"
}

# dry-run: prepare (no llama.cpp sources, fast compression) and run with GPU_SMOKE_CPU=1 on this machine, with the
# CPU llama.cpp of LLamaSharp.Backend.Cpu and the libtorch of the CLI's Release build (scripts/test.sh builds it): every
# step but the CUDA parts. .ci/run runs it after the tests.
dry_run() {
  local native="$root/src/BuPO.Hybrid.Cli/bin/Release/net10.0/runtimes/linux-x64/native"
  [ -f "$native/libtorch.so" ] || die "$native/libtorch.so not found: build the CLI first (scripts/test.sh)"
  local level=noavx
  for l in avx avx2 avx512; do
    flag=$l; [ $l = avx512 ] && flag=avx512f
    grep -qw "$flag" /proc/cpuinfo && [ -f "$native/$l/libllama.so" ] && level=$l
  done
  local dir
  dir=$(mktemp -d)
  (GPU_SMOKE_SOURCES=0 GPU_SMOKE_XZ_LEVEL=1 prepare "$dir/prepared")
  local rc=0
  GPU_SMOKE_CPU=1 GPU_SMOKE_PYTORCH=0 GPU_SMOKE_WORK="$dir/work" GPU_SMOKE_LLAMA_LIB_DIR="$native/$level" GPU_SMOKE_TORCH_LIB="$native" \
    run "$dir/prepared" || rc=$?
  rm -rf "$dir"
  return "$rc"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  dry-run) shift; dry_run "$@" ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
