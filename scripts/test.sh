#!/usr/bin/env bash
# Runs every test. Restores NuGet packages (llama.cpp comes with them: LLamaSharp.Backend.Cpu) and applies the TorchSharp fix
# as part of the build (all idempotent). Extra arguments go to `dotnet test` (e.g. --filter).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dotnet build BuPO.Hybrid.sln -c Release --nologo -clp:ErrorsOnly
dotnet test BuPO.Hybrid.sln -c Release --no-build --nologo "$@"
