using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Llama.Native;

internal static unsafe partial class LlamaNative
{
    // llama_sampler_sample: builds the candidates from the context's logits row, applies the chain, accepts the token.
    [LibraryImport(Llama)] public static partial int llama_sampler_sample(SafeLlamaSamplerHandle sampler, SafeLlamaContextHandle ctx, int idx);
}
