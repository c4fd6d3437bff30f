using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tests.Support;

/// <summary>
/// Random-weight GGUF models for the trainer-side tests (Model, Analysis, RL, CLI) that check properties holding for any
/// model (autograd, export round trips, parity with llama.cpp), so they run without ../shared. The vocabulary is the
/// generated 512-token SentencePiece one (<see cref="BenchModels.WriteTinyVocab"/>), which encodes English and math text.
/// Files are written once per process into a temporary folder deleted at exit.
/// </summary>
public static class TinyTrainingModels
{
    private static readonly object Gate = new();
    private static readonly Dictionary<string, string> Paths = new();
    private static readonly Lazy<string> Folder = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("bupo-tiny-models-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return dir;
    });

    /// <summary>The shape of stories260K (llama, 5 blocks, width 64, 8 heads / 4 KV heads, FFN 172, own output.weight), random weights.</summary>
    public static RandomModelSpec StoriesShape { get; } = new()
    {
        Architecture = "llama", Name = "random-stories-shape", Layers = 5, Embedding = 64, Heads = 8, KvHeads = 4, FeedForward = 172,
        ContextLength = 512, RopeBase = 10000f, RmsEps = 1e-5f, TiedEmbeddings = false, Seed = 11,
    };

    /// <summary>The generated 512-token SentencePiece vocabulary GGUF (tokenizer only, no weights).</summary>
    public static string Vocab
    {
        get
        {
            lock (Gate) return BenchModels.WriteTinyVocab(Path.Combine(Folder.Value, "tiny-vocab.gguf"));
        }
    }

    /// <summary>A random model of the stories260K shape with the generated vocabulary.</summary>
    public static string StoriesShaped => Write("stories-shape", StoriesShape);

    /// <summary>A random model of <paramref name="spec"/> with the generated vocabulary, written once per <paramref name="key"/>.</summary>
    public static string Write(string key, RandomModelSpec spec)
    {
        var vocab = Vocab;
        lock (Gate)
        {
            if (Paths.TryGetValue(key, out var p)) return p;
            p = Path.Combine(Folder.Value, key + ".gguf");
            RandomGgufModel.Write(p, spec, vocab);
            return Paths[key] = p;
        }
    }
}
