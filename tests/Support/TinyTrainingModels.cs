using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tests.Support;

/// <summary>
/// Random-weight GGUF models for the trainer-side tests (Model, Analysis, RL, CLI) that check properties holding for any
/// model (autograd, export round trips, parity with llama.cpp), so they run without ../shared. The vocabulary is the
/// generated 512-token SentencePiece one (<see cref="RandomTestModels.SpmVocab"/>), which encodes English and math text.
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

    /// <summary><see cref="RandomTestModels.StoriesShape"/> with the trainer tests' seed (11).</summary>
    public static RandomModelSpec StoriesShape { get; } = RandomTestModels.StoriesShape with { Seed = 11 };

    /// <summary>The generated 512-token SentencePiece vocabulary GGUF (tokenizer only, no weights).</summary>
    public static string Vocab
    {
        get
        {
            lock (Gate) return RandomTestModels.SpmVocab(Folder.Value);
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
