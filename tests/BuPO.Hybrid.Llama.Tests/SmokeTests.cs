namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class SmokeTests(LlamaFixture fx)
{
    [Fact]
    public void LoadsAndDecodes()
    {
        var m = fx.Stories;
        TestContext.Current.TestOutputHelper!.WriteLine($"{m.Architecture} {m.Description} L={m.LayerCount} d={m.EmbeddingSize} V={m.VocabSize} devices={string.Join(",", LlamaBackend.Devices)}");
        using var ctx = LlamaContext.Create(m, new LlamaContextOptions { ContextSize = 256 });
        var gen = new LlamaGenerator(ctx);
        var r = gen.Generate(["Once upon a time"], new GenerationOptions { MaxTokens = 20, Sampling = LlamaSamplerOptions.Greedy });
        TestContext.Current.TestOutputHelper!.WriteLine(string.Join(",", r[0].PromptTokens) + " | " + string.Join(",", r[0].Tokens) + " | " + r[0].Text);
        Assert.Equal(20, r[0].Tokens.Length);
    }
}
