using BuPO.Hybrid.Cli;

return CliHost.Run(CliHost.CreateRoot(), args);
