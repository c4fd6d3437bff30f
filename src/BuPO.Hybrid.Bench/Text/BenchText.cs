using System.Globalization;
using System.Text;
using System.Text.Json;

namespace BuPO.Hybrid.Bench.Text;

/// <summary>Text for the benchmarks: GSM8K and MATH500 lines from the shared data folder, or generated word problems.</summary>
public static class BenchText
{
    /// <summary>
    /// Texts of GSM8K test (question, answer) and MATH500 test (problem, solution) records, in file order, or null when
    /// neither file exists. Each text is one "line" of the benchmark (it may hold newlines).
    /// </summary>
    public static (IReadOnlyList<string> Lines, string Source)? SharedLines(string? dataDir)
    {
        if (dataDir is null) return null;
        var lines = new List<string>();
        var used = new List<string>();
        foreach (var (dataset, fields) in new[] { ("gsm8k", new[] { "question", "answer" }), ("math500", new[] { "problem", "solution" }) })
        {
            var file = Path.Combine(dataDir, dataset, "test.jsonl");
            if (!File.Exists(file)) continue;
            var before = lines.Count;
            foreach (var raw in File.ReadLines(file))
            {
                if (string.IsNullOrWhiteSpace(raw)) continue;
                using var doc = JsonDocument.Parse(raw);
                foreach (var f in fields)
                    if (doc.RootElement.TryGetProperty(f, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s)
                        lines.Add(s);
            }
            used.Add($"{dataset} test ({lines.Count - before} texts: {string.Join(", ", fields)})");
        }
        return lines.Count == 0 ? null : (lines, string.Join(" + ", used) + $" from {dataDir}");
    }

    private static readonly string[] Names = ["Tom", "Lily", "Ava", "Noah", "Maya", "Omar", "Zoe", "Liam", "Iris", "Ben", "Sofia", "Kenji"];
    private static readonly string[] Items = ["apples", "marbles", "books", "stickers", "cookies", "pencils", "shells", "coins", "cards", "eggs"];
    private static readonly string[] Places = ["market", "school", "library", "park", "bakery", "farm"];

    /// <summary>
    /// <paramref name="count"/> deterministic English word problems with worked solutions (numbers, punctuation, LaTeX-ish
    /// markup, newlines), for when no data folder exists.
    /// </summary>
    public static IReadOnlyList<string> Generated(int count, int seed = 1)
    {
        var rng = new Random(seed);
        var lines = new List<string>(count);
        for (var i = 0; i < count; i++)
        {
            var name = Names[rng.Next(Names.Length)];
            var other = Names[rng.Next(Names.Length)];
            var item = Items[rng.Next(Items.Length)];
            var place = Places[rng.Next(Places.Length)];
            int a = rng.Next(2, 60), b = rng.Next(1, 40), c = rng.Next(2, 9), price = rng.Next(1, 12);
            var sb = new StringBuilder();
            if (i % 2 == 0)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{name} has {a} {item}. {other} gives {name} {b} more at the {place}, ");
                sb.Append(CultureInfo.InvariantCulture, $"and then {name} shares them equally among {c} friends. ");
                sb.Append(CultureInfo.InvariantCulture, $"Each {item[..^1]} costs ${price}. How much are one friend's {item} worth, in dollars?");
            }
            else
            {
                var total = a + b;
                sb.Append(CultureInfo.InvariantCulture, $"{name} starts with {a} + {b} = <<{a}+{b}={total}>>{total} {item}.\n");
                sb.Append(CultureInfo.InvariantCulture, $"Split {c} ways: $\\frac{{{total}}}{{{c}}} \\approx {(double)total / c:F2}$ each.\n");
                sb.Append(CultureInfo.InvariantCulture, $"At ${price} apiece that is {total / c * price} dollars. #### {total / c * price}");
            }
            lines.Add(sb.ToString());
        }
        return lines;
    }
}
