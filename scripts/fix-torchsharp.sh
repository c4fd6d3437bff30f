#!/usr/bin/env bash
# Makes TorchSharp 0.107.0 load on systems whose libstdc++ lacks GLIBCXX_3.4.32 (Debian 12: GCC 12).
# libLibTorchSharp.so needs that version for one symbol only (std::ios_base_library_init, GCC 13);
# we mark the requirement weak in every copy under OUTDIR and put a tiny library that defines the
# symbol next to it (TorchRuntime preloads it). Idempotent; a no-op where libstdc++ is new enough.
# Usage: fix-torchsharp.sh OUTDIR
set -euo pipefail
outdir=${1:?usage: fix-torchsharp.sh OUTDIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(uname -s)" = Linux ] || exit 0

libs=$(find "$outdir" -name libLibTorchSharp.so -type f 2>/dev/null || true)
[ -n "$libs" ] || exit 0

stdcxx=$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64|libstdc\+\+\.so\.6 \(libc6,x86-64\)/{print $NF; exit}')
[ -n "$stdcxx" ] || stdcxx=$(g++ -print-file-name=libstdc++.so.6 2>/dev/null || true)
if [ -n "$stdcxx" ] && [ -f "$stdcxx" ] && grep -qa GLIBCXX_3.4.32 "$stdcxx"; then
  exit 0 # the system's libstdc++ already provides the version: nothing to fix
fi

tools="$root/.native/torchsharp-compat"
src="$root/native/torchsharp-compat"
mkdir -p "$tools"
if [ ! -x "$tools/weaken_vernaux" ] || [ "$src/weaken_vernaux.c" -nt "$tools/weaken_vernaux" ]; then
  gcc -O2 -o "$tools/weaken_vernaux.tmp" "$src/weaken_vernaux.c" && mv -f "$tools/weaken_vernaux.tmp" "$tools/weaken_vernaux"
fi
if [ ! -f "$tools/libbupo_glibcxx_compat.so" ] || [ "$src/ios_base_library_init.cpp" -nt "$tools/libbupo_glibcxx_compat.so" ]; then
  g++ -O2 -shared -fPIC -o "$tools/libbupo_glibcxx_compat.so.tmp" "$src/ios_base_library_init.cpp" \
    && mv -f "$tools/libbupo_glibcxx_compat.so.tmp" "$tools/libbupo_glibcxx_compat.so"
fi

for lib in $libs; do
  dir=$(dirname "$lib")
  # Patch a copy and rename it over the original: never edit a file that may be linked to the NuGet cache.
  cp -f "$lib" "$lib.bupo-tmp"
  rc=0; "$tools/weaken_vernaux" "$lib.bupo-tmp" GLIBCXX_3.4.32 >/dev/null || rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then rm -f "$lib.bupo-tmp"; echo "fix-torchsharp: patching $lib failed" >&2; exit 1; fi
  touch -r "$lib" "$lib.bupo-tmp" # keep the timestamp so incremental copies stay incremental
  mv -f "$lib.bupo-tmp" "$lib"
  cmp -s "$tools/libbupo_glibcxx_compat.so" "$dir/libbupo_glibcxx_compat.so" 2>/dev/null || cp -f "$tools/libbupo_glibcxx_compat.so" "$dir/"
done
