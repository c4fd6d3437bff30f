using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Gguf.Tests;

public class GgufReaderTests
{
    [Fact]
    public void ReadsStories260KHeaderAndTensors()
    {
        using var f = GgufFile.Open(SharedAssets.RequireFile(SharedAssets.StoriesModel));
        Assert.Equal("llama", f.Architecture);
        Assert.Equal(5, f.RequireInt("llama.block_count"));
        Assert.Equal(64, f.RequireInt("llama.embedding_length"));
        var embd = f.GetTensor("token_embd.weight");
        Assert.Equal(new long[] { 64, 512 }, embd.Shape);
        Assert.Equal(GgmlType.F32, embd.Type);
        var w = f.ReadTensorFloat(embd);
        Assert.Equal(64 * 512, w.Length);
        Assert.Contains(w, v => v != 0);
        Assert.All(w, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(512, f.GetArray("tokenizer.ggml.tokens")!.Count);
    }

    [Fact]
    public void RejectsNonGguf()
    {
        var p = Path.GetTempFileName();
        File.WriteAllText(p, "this is not a gguf file at all, just text");
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(p));
        Assert.Contains("magic", e.Message);
        File.Delete(p);
    }
    [Fact]
    public void ASmallFileTruncatedAfterOpeningStaysReadable()
    {
        // Read into memory below InMemoryThreshold: a truncation under an open file cannot turn a tensor read into SIGBUS.
        using var tmp = new TempDir();
        var path = tmp.File("small.gguf");
        File.Copy(RandomTestModels.StoriesShaped(tmp.Path), path);
        using var file = GgufFile.Open(path);
        var before = file.ReadTensorFloat(file.Tensors[^1].Name);
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(0);
        Assert.Equal(before, file.ReadTensorFloat(file.Tensors[^1].Name));
        Assert.All(file.Tensors, t => file.ReadTensorFloat(t));
    }
}
