using System.CommandLine;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary><c>bupo-hybrid inspect MODEL.gguf</c>: architecture, hyperparameters, tokenizer and tensors of a GGUF.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "GGUF file to inspect" };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables" };
        var cmd = new Command("inspect", "Show a GGUF model's architecture, hyperparameters, tokenizer and tensor table") { model, json };
        cmd.SetAction(parse =>
        {
            var file = parse.GetValue(model)!;
            if (!file.Exists) throw new BupoException($"{file.FullName}: file not found");
            Console.WriteLine(file.FullName);
            return 0;
        });
        return cmd;
    }
}
