using BuPO.Hybrid.Bench.Models;
using BuPO.Hybrid.Bench.Text;

namespace BuPO.Hybrid.Bench.Tests;

[Collection("bench")]
public class BenchModelResolverTests(BenchFixture fx)
{
    [Fact]
    public void RandomModelIsWrittenOnceAndReused()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-bench-reuse-").FullName;
        try
        {
            var settings = fx.Settings("llama-tiny") with { CacheDir = dir };
            var logs = new List<string>();
            var first = BenchModelResolver.Resolve(settings, logs.Add);
            Assert.False(first.CacheHit);
            Assert.Contains(logs, l => l.StartsWith("writing random-weight llama-tiny", StringComparison.Ordinal));
            var written = File.GetLastWriteTimeUtc(first.Path);
            logs.Clear();
            var second = BenchModelResolver.Resolve(settings, logs.Add);
            Assert.True(second.CacheHit);
            Assert.Equal(first.Path, second.Path);
            Assert.Empty(logs);
            Assert.Equal(written, File.GetLastWriteTimeUtc(second.Path));
            Assert.Equal(BenchVocabKind.Generated, second.VocabKind);
            Assert.Equal("llama-tiny", second.RandomShape);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void RandomLayersChangeTheFileAndTheLabel()
    {
        var model = BenchModelResolver.Resolve(fx.Settings("qwen3-tiny") with { RandomLayers = 1 });
        Assert.Contains("-L1", Path.GetFileName(model.Path));
        Assert.Equal("random qwen3-tiny-L1 (F32)", model.Label);
        Assert.Equal(1, Model.TransformerConfig.FromGguf(model.Path).LayerCount);
    }

    [Fact]
    public void AModelFileUsesItsOwnVocabulary()
    {
        var model = BenchModelResolver.Resolve(new BenchModelSettings { ModelPath = fx.QwenTiny.Path });
        Assert.Equal(BenchVocabKind.Model, model.VocabKind);
        Assert.Equal(fx.QwenTiny.VocabSize, model.VocabSize);
        Assert.Null(model.RandomShape);
        Assert.Contains("the model's own (gpt2/qwen2", model.Vocab);
    }

    [Fact]
    public void GivingBothOrNeitherModelIsAnError()
    {
        Assert.Throws<BupoException>(() => BenchModelResolver.Resolve(new BenchModelSettings()));
        Assert.Throws<BupoException>(() => BenchModelResolver.Resolve(new BenchModelSettings { ModelPath = fx.QwenTiny.Path, RandomShape = "qwen3-tiny" }));
    }

    [Fact]
    public void GeneratedVocabIsAByteLevelBpe()
    {
        var (tokens, merges) = BenchVocab.Train(BenchText.Generated(50), 40);
        Assert.Equal(256 + merges.Count, tokens.Count);
        Assert.Equal(40, merges.Count);
        Assert.All(merges, m => Assert.Single(m.Split(' ').Skip(1)));
    }

    [Fact]
    public void GeneratedTextIsDeterministicAndSharedLinesNeedAFolder()
    {
        Assert.Equal(BenchText.Generated(20, seed: 3), BenchText.Generated(20, seed: 3));
        Assert.NotEqual(BenchText.Generated(20, seed: 3), BenchText.Generated(20, seed: 4));
        Assert.Null(BenchText.SharedLines(null));
        Assert.Null(BenchText.SharedLines(Directory.CreateTempSubdirectory("bupo-nodata-").FullName));
    }
}
