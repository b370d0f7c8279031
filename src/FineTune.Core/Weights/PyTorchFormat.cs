using System.IO.Compression;
using static FineTune.Core.Weights.StateDictValidation;

namespace FineTune.Core.Weights;

/// <summary>
/// torch.save's validator (a zip holding a pickle): the pickle only calls what a state dict needs, every storage's
/// bytes are in the archive, every tensor fits in its storage, and what they claim is at most
/// <see cref="MaxTotalBytes"/> and what the archive's compressed bytes can expand to.
/// </summary>
internal static partial class PyTorchFormat
{
    public const long MaxPickleBytes = 64L * 1024 * 1024;
    public const long MaxTotalBytes = 4L * 1024 * 1024 * 1024;

    /// <summary>Deflate expands a byte to at most 1032: an entry claiming more than that is lying.</summary>
    private const long MaxDeflateRatio = 1032;

    /// <summary>The storage types a state dict may use, and what each holds (its element size: <see cref="ElementBytes"/>).</summary>
    private static readonly Dictionary<string, TorchSharp.torch.ScalarType> ScalarTypes = new(StringComparer.Ordinal)
    {
        ["DoubleStorage"] = TorchSharp.torch.ScalarType.Float64,
        ["FloatStorage"] = TorchSharp.torch.ScalarType.Float32,
        ["HalfStorage"] = TorchSharp.torch.ScalarType.Float16,
        ["BFloat16Storage"] = TorchSharp.torch.ScalarType.BFloat16,
        ["LongStorage"] = TorchSharp.torch.ScalarType.Int64,
        ["IntStorage"] = TorchSharp.torch.ScalarType.Int32,
        ["ShortStorage"] = TorchSharp.torch.ScalarType.Int16,
        ["CharStorage"] = TorchSharp.torch.ScalarType.Int8,
        ["ByteStorage"] = TorchSharp.torch.ScalarType.Byte,
        ["BoolStorage"] = TorchSharp.torch.ScalarType.Bool,
        ["ComplexDoubleStorage"] = TorchSharp.torch.ScalarType.ComplexFloat64,
        ["ComplexFloatStorage"] = TorchSharp.torch.ScalarType.ComplexFloat32,
    };

    /// <summary>
    /// Throws <see cref="InvalidWeightsException"/> unless the torch.save archive's pickle is a plain state dict
    /// whose storages are in the archive and whose tensors fit their storages; returns its tensors, each naming its
    /// storage by the archive entry that holds it. Leaves the stream at 0.
    /// </summary>
    public static List<StoredTensor> Validate(Stream stream)
    {
        stream.Position = 0;
        try
        {
            using var archive = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            if (archive.Entries.Count > MaxTensors + 16)
                throw Invalid($"PyTorch archive: {archive.Entries.Count} entries");
            var pickle = archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') <= 1)
                ?? throw Invalid("PyTorch archive: no data.pkl (not a torch.save file)");
            if (pickle.Length > MaxPickleBytes)
                throw Invalid($"PyTorch archive: data.pkl is {pickle.Length} bytes");
            string folder = pickle.FullName[..^"data.pkl".Length];
            var storages = archive.Entries.Where(e => e.FullName.StartsWith(folder + "data/", StringComparison.Ordinal))
                .ToDictionary(e => e.FullName[(folder.Length + 5)..], e => Math.Min(e.Length, e.CompressedLength * MaxDeflateRatio + 64), StringComparer.Ordinal);
            byte[] bytes;
            using (var input = pickle.Open())
            using (var buffer = new MemoryStream())
            {
                input.CopyTo(buffer);
                if (buffer.Length > MaxPickleBytes) throw Invalid($"PyTorch archive: data.pkl is over {MaxPickleBytes} bytes");
                bytes = buffer.ToArray();
            }
            return new PickleScan(bytes, storages).Run().Select(t => t with { Storage = folder + "data/" + t.Storage }).ToList();
        }
        catch (InvalidDataException e)
        {
            throw Invalid($"PyTorch archive: not a readable zip ({e.Message})");
        }
        finally
        {
            stream.Position = 0;
        }
    }
}
