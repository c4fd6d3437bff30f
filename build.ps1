# PowerShell entry points for Windows users, equivalent to the bash scripts:
#   ./build.ps1 test            runs every test (scripts/test.sh)
#   ./build.ps1 run ARGS...     runs the CLI (scripts/bupo-hybrid)
# llama.cpp comes with the NuGet restore (LLamaSharp.Backend.Cpu's win-x64 libraries); BUPO_LLAMA_LIB_DIR points
# at another build of llama.cpp 815a2a59 (the folder holding llama.dll and ggml*.dll).
param([Parameter(Position = 0)][string]$Task = "test", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
$root = $PSScriptRoot
switch ($Task) {
  "test" {
    dotnet build "$root/BuPO.Hybrid.sln" -c Release --nologo -clp:ErrorsOnly; if ($LASTEXITCODE) { exit $LASTEXITCODE }
    dotnet test "$root/BuPO.Hybrid.sln" -c Release --no-build --nologo @Rest; exit $LASTEXITCODE
  }
  "run" {
    dotnet build "$root/src/BuPO.Hybrid.Cli/BuPO.Hybrid.Cli.csproj" -c Release --nologo -v quiet -clp:ErrorsOnly; if ($LASTEXITCODE) { exit $LASTEXITCODE }
    dotnet "$root/src/BuPO.Hybrid.Cli/bin/Release/net10.0/bupo-hybrid.dll" @Rest; exit $LASTEXITCODE
  }
  default { Write-Error "unknown task '$Task' (use: test | run ARGS...)"; exit 2 }
}
