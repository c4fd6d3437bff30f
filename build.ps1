# PowerShell entry points for Windows users, equivalent to the bash scripts:
#   ./build.ps1 test            runs every test (scripts/test.sh)
#   ./build.ps1 run ARGS...     runs the CLI (scripts/bupo-hybrid)
# On Windows, llama.cpp libraries are not fetched automatically: build llama.cpp (or take a release's
# DLLs) and set BUPO_LLAMA_LIB_DIR to the folder holding llama.dll and ggml*.dll.
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
