using System.Runtime.CompilerServices;
using System.Text;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// Codepoint categories, UTF-8 helpers and the GPT-2 byte-to-unicode map, all as llama.cpp's unicode.cpp
/// defines them (its own category table, generated into <see cref="LlamaUnicodeData"/>), so that text is
/// split exactly as llama.cpp splits it whatever Unicode version .NET ships.
/// </summary>
internal static class LlamaUnicode
{
    public const ushort Undefined = 0x0001, Number = 0x0002, Letter = 0x0004, Separator = 0x0008, AccentMark = 0x0010,
        Punctuation = 0x0020, Symbol = 0x0040, Control = 0x0080, CategoryMask = 0x00FF, Whitespace = 0x0100;

    public const int MaxCodepoints = 0x110000;

    private static readonly ushort[] s_flags = BuildFlags();

    /// <summary>GPT-2 byte-level encoding: byte -> the char standing for it in byte-level BPE vocabularies.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Inverse of <see cref="ByteToChar"/>, indexed by char (all are below 0x144); -1 where none.</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    private static ushort[] BuildFlags()
    {
        var starts = LlamaUnicodeData.RangeStarts;
        var flags = LlamaUnicodeData.RangeFlags;
        var table = new ushort[MaxCodepoints];
        for (var i = 0; i + 1 < starts.Length; i++)
            table.AsSpan((int)starts[i], (int)(starts[i + 1] - starts[i])).Fill(flags[i]);
        foreach (var cpt in LlamaUnicodeData.Whitespace) table[cpt] |= Whitespace;
        return table;
    }

    /// <summary>unicode_cpt_flags_from_cpt: the flags of a codepoint (UNDEFINED beyond U+10FFFF).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Flags(int cpt) => (uint)cpt < MaxCodepoints ? s_flags[cpt] : Undefined;

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var assigned = new bool[256];
        for (var ch = 0x21; ch <= 0x7E; ch++) { map[ch] = (char)ch; assigned[ch] = true; }
        for (var ch = 0xA1; ch <= 0xAC; ch++) { map[ch] = (char)ch; assigned[ch] = true; }
        for (var ch = 0xAE; ch <= 0xFF; ch++) { map[ch] = (char)ch; assigned[ch] = true; }
        var n = 0;
        for (var ch = 0; ch < 256; ch++)
            if (!assigned[ch]) map[ch] = (char)(256 + n++);
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var inv = new short[0x144];
        inv.AsSpan().Fill(-1);
        var map = BuildByteToChar();
        for (var b = 0; b < 256; b++) inv[map[b]] = (short)b;
        return inv;
    }

    /// <summary>The codepoints of a UTF-16 string (lone surrogates become U+FFFD, as UTF-8 conversion makes them).</summary>
    public static int DecodeCodepoints(ReadOnlySpan<char> text, Span<int> cpts)
    {
        var n = 0;
        for (var i = 0; i < text.Length; i++)
        {
            int c = text[i];
            if (char.IsHighSurrogate((char)c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                c = char.ConvertToUtf32((char)c, text[++i]);
            }
            else if (char.IsSurrogate((char)c))
            {
                c = 0xFFFD;
            }
            cpts[n++] = c;
        }
        return n;
    }

    /// <summary>Replaces lone surrogates by U+FFFD, so that the string and its UTF-8 bytes correspond one to one
    /// (llama.cpp sees the UTF-8 bytes that <see cref="Encoding.UTF8"/> produces, where a lone surrogate is U+FFFD).</summary>
    public static string Sanitize(string text)
    {
        var span = text.AsSpan();
        var first = span.IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first < 0) return text;
        var ok = true;
        for (var i = first; i < span.Length; i++)
        {
            if (!char.IsSurrogate(span[i])) continue;
            if (char.IsHighSurrogate(span[i]) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1])) { i++; continue; }
            ok = false;
            break;
        }
        if (ok) return text;
        var sb = new StringBuilder(text.Length);
        for (var i = 0; i < span.Length; i++)
        {
            var c = span[i];
            if (char.IsHighSurrogate(c) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1])) { sb.Append(c).Append(span[++i]); continue; }
            sb.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
        }
        return sb.ToString();
    }

    /// <summary>Lowercases what llama.cpp's contraction rules compare against (only ASCII letters matter there:
    /// the non-ASCII codepoints whose lowercase is ASCII, U+0130 and U+212A, map to 'i' and 'k', never to s/t/r/e/v/m/l/d).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ToLowerForContraction(int cpt) => (uint)(cpt - 'A') <= 'Z' - 'A' ? cpt + 32 : cpt;

    /// <summary>C's isspace in the "C" locale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsCSpace(char c) => c == ' ' || (c >= '\t' && c <= '\r');
}
