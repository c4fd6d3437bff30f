using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// A training checkpoint: the folder <c>checkpoints/step-NNNNNN/</c> holding <c>state.json</c> (step, resolved settings,
/// BuPO layer, optimizer step counts), <c>model.bin</c> (every parameter, exact bits), <c>optimizer.bin</c> (AdamW
/// moments) and <c>sampler.gguf</c> (the GGUF the sampler had loaded, hard-linked where possible; absent while it
/// was still the source model). It is written into a temporary folder and renamed into place, so a checkpoint folder
/// is either complete or absent; a step that runs again (after a resume) replaces its old checkpoint. state.json records
/// each file's length and XXH128 checksum, which <see cref="Load"/> verifies, and weights are checked to be finite when written
/// and when restored. Nothing else carries state: data order, sampling seeds and mini-batch shuffles derive from
/// (seed, step), so resuming continues bit-identically.
/// </summary>
public sealed class TrainingCheckpoint
{
    public const int FormatVersion = 1;
    public const string StateFile = "state.json";

    public required string Directory { get; init; }
    public required int Step { get; init; }
    public int? BupoLayer { get; init; }
    /// <summary>The sampler GGUF inside the checkpoint, or null when the sampler still used the source model.</summary>
    public string? SamplerGguf { get; init; }
    public required JsonObject Options { get; init; }
    public required Dictionary<string, long> OptimizerSteps { get; init; }
    /// <summary>The LoRA adapter GGUF the sampler had applied (LoRA runs), or null.</summary>
    public string? SamplerLora { get; init; }

    public static string FolderName(int step) => $"step-{step:D6}";

    /// <summary>Writes a checkpoint of <paramref name="step"/> under <paramref name="checkpointsDir"/> (atomically); returns its folder.</summary>
    public static string Save(string checkpointsDir, int step, TrainOptions options, int? bupoLayer, TransformerModel model, AdamW optimizer,
        string samplerGguf, bool samplerIsSource, LoraSet? lora = null, string? samplerLora = null)
    {
        System.IO.Directory.CreateDirectory(checkpointsDir);
        var final = Path.Combine(checkpointsDir, FolderName(step));
        var weights = model.GgufParameters.Concat(lora?.Parameters ?? []).Select(kv => (kv.Key, (Tensor)kv.Value)).ToList();
        // A NaN that got into the weights must stop the run here, not become the checkpoint a resume trusts.
        if (FirstNonFinite(weights) is { } bad)
            throw new BupoException($"step {step}: the weights of '{bad}' hold non-finite values; no checkpoint written (the last good one is the previous)");
        var tmp = Path.Combine(checkpointsDir, $".{FolderName(step)}.tmp-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(tmp);
        try
        {
            TensorFile.Write(Path.Combine(tmp, "model.bin"), weights);
            var (tensors, steps) = optimizer.ExportState();
            TensorFile.Write(Path.Combine(tmp, "optimizer.bin"), tensors);
            if (!samplerIsSource) LinkOrCopy(samplerGguf, Path.Combine(tmp, "sampler.gguf"));
            if (samplerLora != null) LinkOrCopy(samplerLora, Path.Combine(tmp, "adapter.gguf"));
            var files = new JsonObject();
            foreach (var f in new[] { "model.bin", "optimizer.bin", "sampler.gguf", "adapter.gguf" })
            {
                var path = Path.Combine(tmp, f);
                if (File.Exists(path)) files[f] = new JsonObject { ["bytes"] = new FileInfo(path).Length, ["xxh128"] = Checksum(path) };
            }
            var state = new JsonObject
            {
                ["format"] = FormatVersion,
                ["step"] = step,
                ["bupo_layer"] = bupoLayer,
                ["sampler_gguf"] = samplerIsSource ? null : "sampler.gguf",
                ["sampler_lora"] = samplerLora == null ? null : "adapter.gguf",
                ["optimizer_steps"] = new JsonObject(steps.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
                ["options"] = JsonNode.Parse(TrainConfig.ToJson(options)),
                ["files"] = files,
                ["saved_at"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
            };
            File.WriteAllText(Path.Combine(tmp, StateFile), state.ToJsonString(JsonFormat.Indented));
            // Replace an older checkpoint of this step (a step run again after a resume): move it aside, move the new one
            // in, then delete the old. A crash in between leaves a dot-folder that the next start removes.
            string? old = null;
            if (System.IO.Directory.Exists(final))
            {
                old = Path.Combine(checkpointsDir, $".{FolderName(step)}.old-{Guid.NewGuid():N}");
                System.IO.Directory.Move(final, old);
            }
            System.IO.Directory.Move(tmp, final);
            if (old != null) TryDeleteFolder(old);
            return final;
        }
        catch
        {
            TryDeleteFolder(tmp);
            throw;
        }
    }

    /// <summary>Removes what a killed run left under <paramref name="checkpointsDir"/>: half-written (.tmp-) and replaced (.old-) checkpoint folders.</summary>
    public static int RemoveLeftovers(string checkpointsDir)
    {
        if (!System.IO.Directory.Exists(checkpointsDir)) return 0;
        var n = 0;
        foreach (var d in System.IO.Directory.GetDirectories(checkpointsDir, ".step-*"))
        {
            var name = Path.GetFileName(d);
            if (!name.Contains(".tmp-", StringComparison.Ordinal) && !name.Contains(".old-", StringComparison.Ordinal)) continue;
            if (TryDeleteFolder(d)) n++;
        }
        return n;
    }

    /// <summary>Removes the checkpoints of steps after <paramref name="step"/> (on resume: the future the run replaces); returns how many went.</summary>
    public static int RemoveAfter(string checkpointsDir, int step)
    {
        if (!System.IO.Directory.Exists(checkpointsDir)) return 0;
        var n = 0;
        foreach (var d in System.IO.Directory.GetDirectories(checkpointsDir, "step-*"))
            if (int.TryParse(Path.GetFileName(d).AsSpan("step-".Length), NumberStyles.None, CultureInfo.InvariantCulture, out var st) && st > step && TryDeleteFolder(d))
                n++;
        return n;
    }

    /// <summary>The checkpoint folder <paramref name="resume"/> names: a folder, or "latest" under <paramref name="checkpointsDir"/>.</summary>
    public static string ResolveFolder(string resume, string checkpointsDir)
    {
        var dir = resume.Equals("latest", StringComparison.OrdinalIgnoreCase)
            ? Latest(checkpointsDir) ?? throw new BupoException($"--resume latest: no checkpoint under {checkpointsDir}")
            : resume;
        if (!System.IO.Directory.Exists(dir)) throw new BupoException($"--resume: checkpoint folder not found: {dir}");
        return dir;
    }

    private static bool TryDeleteFolder(string dir)
    {
        try { System.IO.Directory.Delete(dir, recursive: true); return true; }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>XXH128 of the file: it finds corruption, not tampering, at memory speed (SHA-256 added 4.5 s to a 2.3 GB checkpoint on the 2-core machine, more than the write).</summary>
    private static string Checksum(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        var hash = new System.IO.Hashing.XxHash128();
        var buf = new byte[1 << 20];
        int n;
        while ((n = fs.Read(buf, 0, buf.Length)) > 0) hash.Append(buf.AsSpan(0, n));
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    /// <summary>The name of the first tensor holding a NaN or an infinity, or null.</summary>
    private static string? FirstNonFinite(IEnumerable<(string Name, Tensor Tensor)> tensors)
    {
        foreach (var (name, t) in tensors)
        {
            if (!t.is_floating_point()) continue;
            using var scope = NewDisposeScope();
            if (!isfinite(t.detach()).all().item<bool>()) return name;
        }
        return null;
    }

    /// <summary>The settings a checkpoint was written with (its state.json's "options"), without verifying its files.</summary>
    public static JsonObject ReadOptions(string dir) =>
        ReadState(dir)["options"] as JsonObject ?? throw new BupoException($"{Path.Combine(dir, StateFile)}: the checkpoint state has no options");

    private static JsonNode ReadState(string dir)
    {
        var statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) throw new BupoException($"--resume: {dir} is not a checkpoint folder (no {StateFile})");
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(statePath)) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new BupoException($"{statePath}: invalid checkpoint state ({e.Message.ReplaceLineEndings(" ")})"); }
        try
        {
            if ((int?)root["format"] != FormatVersion) throw new BupoException($"{statePath}: unsupported checkpoint format {root["format"]?.ToJsonString()}");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException) { throw new BupoException($"{statePath}: invalid checkpoint state (format)"); }
        return root;
    }

    /// <summary>Reads a checkpoint folder's state and verifies its files' checksums (weights are loaded by <see cref="Restore"/>).</summary>
    public static TrainingCheckpoint Load(string dir)
    {
        var root = ReadState(dir);
        var sampler = (string?)root["sampler_gguf"];
        var samplerPath = sampler == null ? null : Path.Combine(dir, sampler);
        if (samplerPath != null && !File.Exists(samplerPath)) throw new BupoException($"{dir}: the checkpoint's sampler GGUF is missing ({samplerPath})");
        var lora = (string?)root["sampler_lora"];
        var loraPath = lora == null ? null : Path.Combine(dir, lora);
        if (loraPath != null && !File.Exists(loraPath)) throw new BupoException($"{dir}: the checkpoint's LoRA adapter is missing ({loraPath})");
        foreach (var f in new[] { "model.bin", "optimizer.bin" })
            if (!File.Exists(Path.Combine(dir, f))) throw new BupoException($"{dir}: the checkpoint lacks {f}");
        // Every file against the length and checksum recorded when it was written (checkpoints from before checksums have none).
        if (root["files"] is JsonObject files)
        {
            foreach (var (name, node) in files)
            {
                var path = Path.Combine(dir, name);
                if (!File.Exists(path)) throw new BupoException($"{path}: missing from the checkpoint");
                var length = new FileInfo(path).Length;
                if ((long?)node?["bytes"] is { } expected && expected != length)
                    throw new BupoException($"{path}: corrupted checkpoint file ({length} bytes, {expected} were written)");
                if ((string?)node?["xxh128"] is { } sum && !string.Equals(Checksum(path), sum, StringComparison.OrdinalIgnoreCase))
                    throw new BupoException($"{path}: corrupted checkpoint file (its checksum differs from the one recorded when it was written)");
            }
        }
        return new TrainingCheckpoint
        {
            Directory = Path.GetFullPath(dir),
            Step = (int)root["step"]!,
            BupoLayer = (int?)root["bupo_layer"],
            SamplerGguf = samplerPath,
            SamplerLora = loraPath,
            Options = root["options"]!.AsObject(),
            OptimizerSteps = root["optimizer_steps"]!.AsObject().ToDictionary(kv => kv.Key, kv => (long)kv.Value!),
        };
    }

    /// <summary>The newest complete checkpoint under <paramref name="checkpointsDir"/>, or null.</summary>
    public static string? Latest(string checkpointsDir)
    {
        if (!System.IO.Directory.Exists(checkpointsDir)) return null;
        return System.IO.Directory.GetDirectories(checkpointsDir, "step-*")
            .Where(d => File.Exists(Path.Combine(d, StateFile)))
            .OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal)
            .LastOrDefault();
    }

    /// <summary>Copies the checkpoint's weights and optimizer state into <paramref name="model"/> and <paramref name="optimizer"/>.</summary>
    public void Restore(TransformerModel model, AdamW optimizer, LoraSet? lora = null)
    {
        var weights = TensorFile.Read(Path.Combine(Directory, "model.bin"));
        try
        {
            using var _ = no_grad();
            foreach (var (name, p) in model.GgufParameters.Concat(lora?.Parameters ?? []))
            {
                if (!weights.TryGetValue(name, out var t))
                    throw new BupoException($"{Directory}: the checkpoint has no weights for '{name}' (a different model{(name.EndsWith(".lora_a", StringComparison.Ordinal) || name.EndsWith(".lora_b", StringComparison.Ordinal) ? " or LoRA setting" : "")}?)");
                if (!t.shape.SequenceEqual(p.shape)) throw new BupoException($"{Directory}: '{name}' has shape [{string.Join(", ", t.shape)}], the model's is [{string.Join(", ", p.shape)}]");
                if (FirstNonFinite([(name, t)]) != null) throw new BupoException($"{Path.Combine(Directory, "model.bin")}: the weights of '{name}' hold non-finite values");
                p.copy_(t.to(p.dtype));
            }
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
        var state = TensorFile.Read(Path.Combine(Directory, "optimizer.bin"));
        try { optimizer.ImportState(state, OptimizerSteps); }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }

    /// <summary>Deletes all but the newest <paramref name="keep"/> checkpoints (0 keeps all).</summary>
    public static void Prune(string checkpointsDir, int keep)
    {
        if (keep <= 0 || !System.IO.Directory.Exists(checkpointsDir)) return;
        var all = System.IO.Directory.GetDirectories(checkpointsDir, "step-*").OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal).ToList();
        foreach (var d in all.Take(Math.Max(0, all.Count - keep))) TryDeleteFolder(d);
    }

    [DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link([MarshalAs(UnmanagedType.LPUTF8Str)] string oldPath, [MarshalAs(UnmanagedType.LPUTF8Str)] string newPath);

    /// <summary>A hard link (no copy of a multi-GB file) where the file system allows, else a copy.</summary>
    internal static void LinkOrCopy(string source, string dest)
    {
        if (!OperatingSystem.IsWindows())
        {
            try { if (Link(source, dest) == 0) return; }
            catch (DllNotFoundException) { }
            catch (EntryPointNotFoundException) { }
        }
        File.Copy(source, dest, overwrite: true);
    }
}
