namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// The byte-level BPE pre-tokenizer types (<c>tokenizer.ggml.pre</c>) the managed tokenizer supports, with the
/// expressions and flags llama.cpp's <c>llama_vocab::impl::load</c> and <c>llm_tokenizer_bpe</c> give them.
/// Types llama.cpp knows but this port does not (custom splitters such as kimi-k2 or afmoe digit grouping,
/// SPM-style BPE of gemma4, regexes whose std::regex semantics .NET cannot reproduce) are listed in
/// <see cref="KnownUnsupported"/> so the error can say so.
/// </summary>
internal static class LlamaPreTypes
{
    internal sealed record PreType(string Kind, string[] Expressions, bool IgnoreMerges = false, bool CleanSpaces = true,
        bool AddBos = false, bool NoBos = false);

    // expressions, copied verbatim from llm_tokenizer_bpe's constructor
    private const string Llama3 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Qwen2 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Qwen35 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
    private const string Jais2 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}";
    private const string Deepseek3Main = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
    private const string Spark25Main = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+";
    private const string Cjk = "[一-龥぀-ゟ゠-ヿ]+";
    private const string YoutuCjk = "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+";
    private const string YoutuMain = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Poro = " ?[^(\\s|.,!?…。，、।۔،)]+";
    private const string Tekken = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Gpt4o = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string GraniteEmbMulti = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Bailingmoe = "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
    private const string SeedCoder = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Ufakzeka = "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string ExaoneMoe = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
    private const string Minicpm5 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    private static readonly string[] DefaultExprs = ["[\\p{P}\\$\\+<=>\\^~\\|]+", Gpt2, "\\p{N}+", "[0-9][0-9][0-9]"];
    private static readonly string[] StarcoderExprs = ["\\p{N}", Gpt2];
    private static readonly string[] Deepseek3Exprs = ["\\p{N}{1,3}", Cjk, Deepseek3Main];

    private static readonly Dictionary<string, PreType> s_types = Build();

    private static Dictionary<string, PreType> Build()
    {
        var d = new Dictionary<string, PreType>(StringComparer.Ordinal);
        void Add(PreType t, params string[] names) { foreach (var n in names) d.Add(n, t); }

        Add(new("default", DefaultExprs), "default", "");
        Add(new("minicpm5", ["\\p{N}{1,3}", Minicpm5], IgnoreMerges: true), "minicpm5");
        Add(new("llama3", [Llama3], IgnoreMerges: true, AddBos: true),
            "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano");
        Add(new("deepseek-coder", ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"], CleanSpaces: false), "deepseek-coder");
        Add(new("deepseek-v3", Deepseek3Exprs, CleanSpaces: false), "deepseek-v3", "hunyuan-dense", "hy_v4", "joyai-llm");
        Add(new("spark2_5", ["\\p{N}{1,3}", Cjk, Spark25Main, "\\p{N}"], CleanSpaces: false), "spark2_5");
        Add(new("youtu", [YoutuCjk, YoutuMain], IgnoreMerges: true, CleanSpaces: false), "youtu");
        Add(new("falcon", ["[\\p{P}\\$\\+<=>\\^~\\|`]+", Gpt2, "[0-9][0-9][0-9]"]), "falcon");
        Add(new("gpt2", [Gpt2]), "mpt", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
            "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "olmo", "jais", "exaone4");
        Add(new("gpt2", [Gpt2], CleanSpaces: false), "trillion", "granite-docling");
        Add(new("starcoder", StarcoderExprs), "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2");
        Add(new("starcoder", StarcoderExprs, CleanSpaces: false), "command-r", "smollm");
        Add(new("jais-2", [Jais2]), "jais-2");
        Add(new("qwen2", [Qwen2], CleanSpaces: false), "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "grok-2", "solar-open");
        Add(new("qwen2", [Qwen2]), "stablelm2", "megrez");
        Add(new("qwen35", [Qwen35], CleanSpaces: false), "qwen35");
        Add(new("llama3", [Llama3]), "dbrx", "smaug-bpe");
        Add(new("poro", [Poro], CleanSpaces: false), "poro-chat");
        Add(new("poro", [Poro]), "bloom", "gpt3-finnish");
        Add(new("chatglm4", [Llama3], NoBos: true), "glm4", "chatglm-bpe");
        Add(new("viking", [Poro, "\\p{N}"], CleanSpaces: false), "viking");
        Add(new("tekken", [Tekken], IgnoreMerges: true, CleanSpaces: false, AddBos: true), "tekken");
        Add(new("exaone-moe", [ExaoneMoe]), "exaone-moe");
        Add(new("gpt-4o", [Gpt4o], CleanSpaces: false), "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2");
        Add(new("granite-embed-multi", [GraniteEmbMulti], IgnoreMerges: true, CleanSpaces: false), "granite-embed-multi-97m");
        Add(new("bailingmoe", [Bailingmoe], CleanSpaces: false), "bailingmoe", "bailingmoe2", "llada-moe");
        Add(new("seed-coder", [SeedCoder], CleanSpaces: false), "seed-coder");
        Add(new("ufakzeka", [Ufakzeka], CleanSpaces: false), "ufakzeka");
        Add(new("laguna", ["[^\\n]+|[\\n]+", Qwen2], CleanSpaces: false), "laguna");
        return d;
    }

    /// <summary>Pre-tokenizer names llama.cpp accepts that this port does not implement.</summary>
    public static readonly IReadOnlySet<string> KnownUnsupported = new HashSet<string>(StringComparer.Ordinal)
    {
        "deepseek-llm", "gemma4", "granite-embed-multi-311m", "sarvam-moe", "whitespace", "chameleon", "tiny_aya", "cohere2moe",
        "superbpe", "kimi-k2", "afmoe",
    };

    /// <summary>The names this port supports.</summary>
    public static IEnumerable<string> SupportedNames => s_types.Keys.Where(k => k.Length > 0).Order(StringComparer.Ordinal);

    public static PreType? Find(string name) => s_types.GetValueOrDefault(name);
}
