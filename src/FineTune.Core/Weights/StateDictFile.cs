using System.Text;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace FineTune.Core.Weights;

public enum StateDictFormat
{
    /// <summary>torch.save of a state dict (.pth/.pt): a zip archive holding a pickle.</summary>
    PyTorch,
    /// <summary>.safetensors: an 8-byte header length, a JSON header, raw tensor data.</summary>
    Safetensors,
    /// <summary>TorchSharp's own Module.save format.</summary>
    TorchSharp,
}

/// <summary>Reads and writes state dicts (name → tensor) in the formats weights arrive in.</summary>
public static class StateDictFile
{
    /// <summary>The format, told by the file's first bytes rather than its name.</summary>
    public static StateDictFormat Detect(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
            return StateDictFormat.PyTorch;
        if (head.Length >= 9 && head[8] == '{' && BitConverter.ToUInt64(head[..8]) < SafetensorsFormat.MaxHeaderBytes)
            return StateDictFormat.Safetensors;
        return StateDictFormat.TorchSharp;
    }

    public static Dictionary<string, Tensor> Read(string path)
    {
        using var stream = File.OpenRead(path);
        return Read(stream);
    }

    /// <summary>Reads a whole state dict from a seekable stream. The caller owns the returned tensors.</summary>
    public static Dictionary<string, Tensor> Read(Stream stream)
    {
        using var reader = StateDictReader.Open(stream, leaveOpen: true);
        var result = new Dictionary<string, Tensor>(reader.Tensors.Count, StringComparer.Ordinal);
        try
        {
            foreach (var tensor in reader.Tensors) result[tensor.Name] = reader.Read(tensor);
            return result;
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>What a file that is no state dict is called; nothing of its content is ever added.</summary>
    public const string NotACheckpoint = "not a PyTorch, safetensors or TorchSharp checkpoint";

    public static void Write(IReadOnlyDictionary<string, Tensor> stateDict, string path, StateDictFormat format)
    {
        using var stream = File.Create(path);
        Write(stateDict, stream, format);
    }

    public static void Write(IReadOnlyDictionary<string, Tensor> stateDict, Stream stream, StateDictFormat format)
    {
        var ordered = stateDict.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
        try
        {
            switch (format)
            {
                case StateDictFormat.PyTorch:
                    PyTorchPickler.PickleStateDict(stream, ordered, leaveOpen: true);
                    break;
                case StateDictFormat.Safetensors:
                    WriteSafetensors(ordered, stream);
                    break;
                default:
                    using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
                        nn.Module.save_state_dict(writer, ordered);
                    break;
            }
        }
        finally
        {
            foreach (var (key, tensor) in ordered)
                if (!ReferenceEquals(tensor, stateDict[key])) tensor.Dispose();
        }
    }

    /// <summary>
    /// About the bytes <see cref="Write(IReadOnlyDictionary{string, Tensor}, Stream, StateDictFormat)"/> writes: the tensors'
    /// data and room for headers, the capacity that spares a growing buffer its copies.
    /// </summary>
    public static int SizeHint(IReadOnlyDictionary<string, Tensor> stateDict) =>
        (int)Math.Min(Array.MaxLength, stateDict.Values.Sum(t => t.NumberOfElements * t.ElementSize) + (1 << 20));

    /// <summary>One float tensor as a .safetensors file (a published mean image).</summary>
    public static byte[] SafetensorsOf(string name, float[] values, long[] shape)
    {
        using var scope = NewDisposeScope();
        using var stream = new MemoryStream();
        Write(new Dictionary<string, Tensor> { [name] = tensor(values).reshape(shape) }, stream, StateDictFormat.Safetensors);
        return stream.ToArray();
    }

    /// <summary>
    /// What Hugging Face's loaders expect in a safetensors header: <c>{"format": "pt"}</c> says the tensors are
    /// PyTorch's (transformers refuses a file without it).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> SafetensorsMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>
    /// The safetensors layout with <see cref="SafetensorsMetadata"/>, written tensor by tensor from their memory: no
    /// buffer of the whole file (a 2.5 GB model would not fit one array).
    /// </summary>
    private static void WriteSafetensors(Dictionary<string, Tensor> stateDict, Stream stream)
    {
        using var header = new MemoryStream();
        using (var json = new System.Text.Json.Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (var (key, value) in SafetensorsMetadata) json.WriteString(key, value);
            json.WriteEndObject();
            long offset = 0;
            foreach (var (name, tensor) in stateDict)
            {
                long length = tensor.NumberOfElements * tensor.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", SafetensorsFormat.DtypeOf(tensor.dtype));
                json.WriteStartArray("shape");
                foreach (long extent in tensor.shape) json.WriteNumberValue(extent);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += length;
            }
            json.WriteEndObject();
        }
        // The format pads the header with spaces so the data starts 8-byte aligned.
        int padded = (int)(header.Length + 7) / 8 * 8;
        Span<byte> prefix = stackalloc byte[8];
        BitConverter.TryWriteBytes(prefix, (ulong)padded);
        stream.Write(prefix);
        stream.Write(header.GetBuffer().AsSpan(0, (int)header.Length));
        for (long i = header.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var tensor in stateDict.Values) WriteBytes(tensor, stream);
    }

    /// <summary>A contiguous CPU tensor's bytes, from its memory.</summary>
    private static void WriteBytes(Tensor tensor, Stream stream)
    {
        long bytes = tensor.NumberOfElements * tensor.ElementSize;
        if (bytes == 0) return;
        if (bytes <= Array.MaxLength) stream.Write(tensor.bytes);
        else tensor.WriteBytesToStream(stream, 1 << 20);
    }
}

/// <summary>Weights that cannot be used: unreadable, or not fitting the model family.</summary>
public sealed class InvalidWeightsException(string message, Exception? inner = null) : BadInputException(message, inner);
