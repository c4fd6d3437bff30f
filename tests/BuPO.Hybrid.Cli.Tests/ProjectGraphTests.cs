using System.Text.RegularExpressions;
using System.Xml.Linq;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary>
/// The README's project diagram (the Mermaid block under "## Projects") is the project graph: every ProjectReference in
/// src/*/*.csproj is an edge of the diagram and every edge of the diagram is a ProjectReference. A new reference that the
/// diagram does not draw fails here, and so does a diagram left behind by a change.
/// </summary>
public partial class ProjectGraphTests
{
    private static string Short(string project) => project.StartsWith("BuPO.Hybrid.", StringComparison.Ordinal) ? project["BuPO.Hybrid.".Length..] : project;

    private static SortedSet<string> CsprojEdges()
    {
        var edges = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var csproj in Directory.GetFiles(Path.Combine(SharedAssets.RepoRoot, "src"), "*.csproj", SearchOption.AllDirectories))
        {
            var from = Short(Path.GetFileNameWithoutExtension(csproj));
            foreach (var r in XDocument.Load(csproj).Descendants("ProjectReference"))
                edges.Add($"{from} --> {Short(Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value))}");
        }
        return edges;
    }

    private static SortedSet<string> DiagramEdges()
    {
        var readme = File.ReadAllText(Path.Combine(SharedAssets.RepoRoot, "README.md"));
        var section = readme.IndexOf("\n## Projects", StringComparison.Ordinal);
        Assert.True(section >= 0, "README.md has no '## Projects' section");
        var start = readme.IndexOf("```mermaid", section, StringComparison.Ordinal);
        var end = readme.IndexOf("```", start + 3, StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "README.md's '## Projects' section has no mermaid block");
        var edges = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Match m in EdgeRegex().Matches(readme[start..end])) edges.Add($"{m.Groups[1].Value} --> {m.Groups[2].Value}");
        return edges;
    }

    [Fact]
    public void TheReadmeDiagramDrawsExactlyTheProjectReferences()
    {
        var csproj = CsprojEdges();
        var diagram = DiagramEdges();
        Assert.NotEmpty(csproj);
        var undrawn = csproj.Except(diagram).ToList();
        var stale = diagram.Except(csproj).ToList();
        Assert.True(undrawn.Count == 0 && stale.Count == 0,
            $"references the README's diagram does not allow: [{string.Join("; ", undrawn)}]; diagram edges no csproj has: [{string.Join("; ", stale)}]");
    }

    [Fact]
    public void TheProjectGraphHasNoCycle()
    {
        var next = CsprojEdges().Select(e => e.Split(" --> ")).GroupBy(p => p[0]).ToDictionary(g => g.Key, g => g.Select(p => p[1]).ToList());
        var state = new Dictionary<string, int>(); // 1 = on the path, 2 = done
        bool Cycle(string n)
        {
            if (state.TryGetValue(n, out var s)) return s == 1;
            state[n] = 1;
            if (next.TryGetValue(n, out var to) && to.Any(Cycle)) return true;
            state[n] = 2;
            return false;
        }
        Assert.DoesNotContain(next.Keys, Cycle);
    }

    [GeneratedRegex(@"^\s*(\w+)\s*-->\s*(\w+)\s*$", RegexOptions.Multiline)]
    private static partial Regex EdgeRegex();
}
