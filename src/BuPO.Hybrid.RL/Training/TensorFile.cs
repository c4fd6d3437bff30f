using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// A small exact tensor container for checkpoints: magic, count, then per tensor its name, dtype, shape and raw bytes
/// (little-endian, as in memory). Reading gives back the same bits.
/// </summary>
public static class TensorFile
{
    private static readonly byte[] Magic = "BUPOTNS1"u8.ToArray();

    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(fs, Encoding.UTF8);
        var list = tensors.ToList();
        w.Write(Magic);
        w.Write(list.Count);
        foreach (var (name, t) in list)
        {
            using var scope = NewDisposeScope();
            var cpu = t.detach().cpu().contiguous();
            w.Write(name);
            w.Write((int)cpu.dtype);
            w.Write(cpu.dim());
            foreach (var d in cpu.shape) w.Write(d);
            var bytes = cpu.bytes;
            w.Write((long)bytes.Length);
            w.Write(bytes);
        }
    }

    public static Dictionary<string, Tensor> Read(string path)
    {
        if (!File.Exists(path)) throw new BupoException($"checkpoint file missing: {path}");
        using var fs = File.OpenRead(path);
        using var r = new BinaryReader(fs, Encoding.UTF8);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            if (!r.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic)) throw new BupoException($"{path}: not a bupo-hybrid tensor file");
            var count = r.ReadInt32();
            for (var i = 0; i < count; i++)
            {
                var name = r.ReadString();
                var dtype = (ScalarType)r.ReadInt32();
                var ndim = r.ReadInt64();
                if (!Enum.IsDefined(dtype) || ndim is < 0 or > 16) throw new BupoException($"{path}: corrupted tensor header of '{name}'");
                var shape = new long[ndim];
                for (var d = 0; d < ndim; d++) shape[d] = r.ReadInt64();
                var len = r.ReadInt64();
                if (len < 0 || len > fs.Length - fs.Position || len > Array.MaxLength) throw new BupoException($"{path}: corrupted tensor header of '{name}' ({len} bytes)");
                var bytes = r.ReadBytes((int)len);
                if (bytes.Length != len) throw new EndOfStreamException();
                var t = empty(shape, dtype);
                t.bytes = bytes;
                result[name] = t.DetachFromDisposeScope();
            }
        }
        catch (EndOfStreamException)
        {
            foreach (var t in result.Values) t.Dispose();
            throw new BupoException($"{path}: truncated checkpoint file");
        }
        catch (Exception e) when (e is BupoException or ArgumentException or OverflowException)
        {
            foreach (var t in result.Values) t.Dispose();
            if (e is BupoException) throw;
            throw new BupoException($"{path}: corrupted checkpoint file ({e.Message})");
        }
        return result;
    }
}
