using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

public class ModelForwardTests
{
    private readonly ITestOutputHelper _out;
    public ModelForwardTests(ITestOutputHelper output) => _out = output;

    [Fact]
    public void ReadsStoriesConfig()
    {
        var c = TransformerConfig.FromGguf(SharedAssets.RequireFile(SharedAssets.StoriesModel));
        _out.WriteLine(c.ToString());
        Assert.Equal("llama", c.Architecture);
        Assert.Equal(5, c.LayerCount);
        Assert.Equal(64, c.EmbeddingLength);
        Assert.Equal(512, c.VocabSize);
        Assert.Equal(c.EmbeddingLength / c.HeadCount, c.HeadDim);
        // stories260K's GGUF carries its own output.weight (llama2.c export), so it is not tied in the GGUF sense.
        using (var f = Gguf.GgufFile.Open(SharedAssets.StoriesModel))
            Assert.Equal(f.FindTensor("output.weight") is null, c.TiedEmbeddings);
        Assert.Equal(RopeStyle.Norm, c.Rope);
        Assert.False(c.QkvBias);
        Assert.False(c.QkNorm);
        Assert.True(c.RmsEps > 0 && c.RmsEps < 1e-3);
    }

    [Fact]
    public void NonModelGgufIsAUserError()
    {
        // A vocabulary file has an architecture but no weights: a one-line BupoException, not a crash.
        var vocab = TinyTrainingModels.Vocab;
        var e = Assert.ThrowsAny<BupoException>(() => TransformerConfig.FromGguf(vocab));
        _out.WriteLine(e.Message);
        Assert.Contains(vocab, e.Message);
    }

    [Fact]
    public void ForwardShapesAndCaptures()
    {
        using var model = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        var c = model.Config;
        using var batch = TokenBatch.Create(TestModels.Sequences(c.VocabSize, 1, 7, 3, 5));
        using var r = model.Forward(batch, new ForwardOptions
        {
            CaptureEmbeddings = true, CaptureFinalNormed = true,
            Residuals = ForwardOptions.AllBlocks(c.LayerCount),
            AttnNormInputs = ForwardOptions.Blocks(0, 2), AttnOutputs = ForwardOptions.Blocks(0, 2), FfnInputs = ForwardOptions.Blocks(2),
            FfnNormInputs = ForwardOptions.Blocks(2), FfnOutputs = ForwardOptions.Blocks(2),
        });
        Assert.Equal(new long[] { 3, 7, c.VocabSize }, r.Logits!.shape);
        Assert.Equal(new long[] { 3, 7, c.EmbeddingLength }, r.Residuals[4].shape);
        Assert.Equal(c.LayerCount, r.Residuals.Count);
        Assert.Same(r.LastHidden, r.Residuals[4]);
        // M = h_{k-1} + A, H = M + F
        Assert.True(TestModels.MaxAbsDiff(r.FfnInputs[2], r.Residuals[1].add(r.AttnOutputs[2], ScalarConstants.One)) < 1e-6);
        Assert.True(TestModels.MaxAbsDiff(r.Residuals[2], r.FfnInputs[2].add(r.FfnOutputs[2], ScalarConstants.One)) < 1e-6);
        Assert.True(TestModels.MaxAbsDiff(r.Logits!, nn.functional.linear(r.FinalNormed!, model.Unembedding)) < 1e-5);
        Assert.Empty(r.FfnOutputs.Keys.Except([2]));
    }

    [Fact]
    public void StopAfterBlockRunsOnlyTheLowerBlocks()
    {
        using var model = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(model.Config.VocabSize, 2, 6, 4));
        using var full = model.Forward(batch, new ForwardOptions { Residuals = ForwardOptions.Blocks(1) });
        using var part = model.Forward(batch, new ForwardOptions { StopAfterBlock = 1 });
        Assert.Null(part.Logits);
        Assert.Equal(1, part.LastBlock);
        Assert.Equal(0.0, TestModels.MaxAbsDiff(full.Residuals[1], part.LastHidden));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(batch, new ForwardOptions { StopAfterBlock = 1, Residuals = ForwardOptions.Blocks(3) }));
    }

    [Theory]
    [InlineData(PaddingSide.Right)]
    [InlineData(PaddingSide.Left)]
    public void PaddedBatchGivesTheLogitsOfEachSequenceAlone(PaddingSide side)
    {
        using var model = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        var seqs = TestModels.Sequences(model.Config.VocabSize, 3, 9, 2, 5, 1);
        using var batch = TokenBatch.Create(seqs, side: side);
        using var r = model.Forward(batch);
        double worst = 0;
        for (var i = 0; i < seqs.Length; i++)
        {
            using var alone = TokenBatch.Create([seqs[i]]);
            using var ra = model.Forward(alone);
            var rows = r.Logits!.select(0, i).narrow(0, batch.Offsets[i], seqs[i].Length);
            worst = Math.Max(worst, TestModels.MaxAbsDiff(rows, ra.Logits!.select(0, 0)));
        }
        _out.WriteLine($"{side} padding: max |Δlogit| batch vs alone = {worst:E2}");
        Assert.True(worst < 1e-4, $"max |Δlogit| {worst}");
    }

    [Fact]
    public void GreedyTeacherForcingMatchesTheLlama2cReference()
    {
        // stories260K.greedy_reference.txt: argmax continuations from an independent float64 port of llama2.c run.c.
        var path = SharedAssets.RequireFile(SharedAssets.StoriesGreedyReference);
        var ids = File.ReadAllLines(path).Where(l => l.StartsWith("ids: ", StringComparison.Ordinal))
            .Select(l => l[5..].Trim('[', ']').Split(',').Select(s => int.Parse(s.Trim())).ToArray()).ToArray();
        Assert.NotEmpty(ids);
        var prompts = File.ReadAllLines(path).Where(l => l.StartsWith("prompt ids: ", StringComparison.Ordinal))
            .Select(l => l[12..].Trim('[', ']').Split(',').Length).ToArray();
        using var model = TestModels.Stories();
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(ids);
        using var r = model.Forward(batch);
        var argmax = r.Logits!.argmax(-1);
        int checkedCount = 0, mismatches = 0;
        for (var i = 0; i < ids.Length; i++)
            for (var p = prompts[i] - 1; p < ids[i].Length - 1; p++)
            {
                checkedCount++;
                if (argmax[i, p].item<long>() != ids[i][p + 1]) mismatches++;
            }
        _out.WriteLine($"greedy next-token agreement: {checkedCount - mismatches}/{checkedCount}");
        Assert.Equal(0, mismatches);
    }
}
