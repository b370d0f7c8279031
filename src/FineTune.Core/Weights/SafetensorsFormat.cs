using System.Buffers.Binary;
using System.Numerics;
using System.Text.Json;
using static FineTune.Core.Weights.StateDictValidation;
using static TorchSharp.torch;

namespace FineTune.Core.Weights;

/// <summary>
/// Safetensors' validator: the JSON header's offsets lie inside the data, entries never overlap, each entry's
/// length is its shape × dtype size.
/// </summary>
internal static class SafetensorsFormat
{
    /// <summary>The most header bytes a file may claim; a larger length in the first 8 bytes means another format.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private static readonly Dictionary<string, int> Dtypes = new(StringComparer.Ordinal)
    {
        ["F64"] = 8,
        ["F32"] = 4,
        ["F16"] = 2,
        ["BF16"] = 2,
        ["I64"] = 8,
        ["I32"] = 4,
        ["I16"] = 2,
        ["I8"] = 1,
        ["U64"] = 8,
        ["U32"] = 4,
        ["U16"] = 2,
        ["U8"] = 1,
        ["BOOL"] = 1,
        ["F8_E4M3"] = 1,
        ["F8_E5M2"] = 1,
    };

    /// <summary>The dtypes a TorchSharp tensor can hold (the rest of <see cref="Dtypes"/> is refused when read).</summary>
    private static readonly Dictionary<string, ScalarType> ScalarTypes = new(StringComparer.Ordinal)
    {
        ["F64"] = ScalarType.Float64,
        ["F32"] = ScalarType.Float32,
        ["F16"] = ScalarType.Float16,
        ["BF16"] = ScalarType.BFloat16,
        ["I64"] = ScalarType.Int64,
        ["I32"] = ScalarType.Int32,
        ["I16"] = ScalarType.Int16,
        ["I8"] = ScalarType.Int8,
        ["U8"] = ScalarType.Byte,
        ["BOOL"] = ScalarType.Bool,
    };

    /// <summary>The safetensors name of a dtype TorchSharp writes.</summary>
    public static string DtypeOf(ScalarType dtype) =>
        ScalarTypes.FirstOrDefault(kv => kv.Value == dtype).Key ?? throw new NotSupportedException($"safetensors has no dtype for {dtype}");

    /// <summary>
    /// Throws <see cref="InvalidWeightsException"/> naming the entry when the header does not describe the file;
    /// returns the tensors in the header's order, each at its data's offset in the file. Leaves the stream at 0.
    /// </summary>
    public static List<StoredTensor> Validate(Stream stream)
    {
        long length = stream.Length;
        Span<byte> prefix = stackalloc byte[8];
        stream.Position = 0;
        if (stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
            throw Invalid("safetensors: the file is shorter than its 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)Math.Min(MaxHeaderBytes, length - 8))
            throw Invalid($"safetensors: the header claims {headerLength} bytes, the file has {length - 8} after the length");
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        stream.Position = 0;
        long dataLength = length - 8 - (long)headerLength;

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Invalid($"safetensors: the header is not JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Invalid("safetensors: the header is not a JSON object");
            var spans = new List<(long Begin, long End, int Entry)>();
            var tensors = new List<StoredTensor>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            int index = 0;
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                if (spans.Count == MaxTensors)
                    throw Invalid($"safetensors: more than {MaxTensors} tensors");
                if (!names.Add(entry.Name))
                    throw Invalid($"safetensors: tensor {index} has the name of an earlier one");
                var span = Entry(entry.Value, index++, dataLength);
                spans.Add(span);
                string dtype = entry.Value.GetProperty("dtype").GetString()!;
                if (!ScalarTypes.TryGetValue(dtype, out var scalarType))
                    throw Invalid($"safetensors: tensor {span.Entry} is {dtype}, which TorchSharp has no dtype for");
                var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                tensors.Add(new StoredTensor(entry.Name, scalarType, shape, 8 + (long)headerLength + span.Begin));
            }
            spans.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            for (int i = 1; i < spans.Count; i++)
                if (spans[i].Begin < spans[i - 1].End)
                    throw Invalid($"safetensors: tensor {spans[i].Entry} overlaps tensor {spans[i - 1].Entry} in the data (counting the header's tensors from 0)");
            return tensors;
        }
    }

    /// <param name="name">the tensor's position in the header: its name is the file's content</param>
    private static (long Begin, long End, int Entry) Entry(JsonElement value, int name, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw Invalid($"safetensors: tensor {name} needs dtype, shape and data_offsets [begin, end]");
        if (!Dtypes.TryGetValue(dtype.GetString()!, out int size))
            throw Invalid($"safetensors: tensor {name} has a dtype that is none of {string.Join(", ", Dtypes.Keys)}");
        if (shape.GetArrayLength() > MaxDimensions)
            throw Invalid($"safetensors: tensor {name} has {shape.GetArrayLength()} dimensions");
        BigInteger bytes = size;
        foreach (var dimension in shape.EnumerateArray())
        {
            if (dimension.ValueKind != JsonValueKind.Number || !dimension.TryGetInt64(out long d) || d < 0)
                throw Invalid($"safetensors: tensor {name} has a shape that is not a list of sizes");
            bytes *= d;
        }
        if (!offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Invalid($"safetensors: tensor {name} has data_offsets that are not 0 <= begin <= end");
        if (end > dataLength)
            throw Invalid($"safetensors: tensor {name} ends at byte {end} of the data, which has {dataLength}");
        if (bytes != end - begin)
            throw Invalid($"safetensors: tensor {name} spans {end - begin} bytes, its shape and dtype need {bytes}");
        return (begin, end, name);
    }
}
