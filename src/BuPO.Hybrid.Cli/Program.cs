using System.CommandLine;
using BuPO.Hybrid.Cli;
using BuPO.Hybrid.Cli.Commands;

var root = new RootCommand("bupo-hybrid: Bottom-up Policy Optimization (BuPO) and internal-policy probes for GGUF models");
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(AnalyzeCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
return CliHost.Run(root, args);
