using System.Collections;
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
        Span<byte> head = stackalloc byte[16];
        int read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        stream.Position = 0;
        try
        {
            return Detect(head[..read]) switch
            {
                StateDictFormat.PyTorch => FromPickle(Validated(stream, PyTorchFormat.Validate, s => PyTorchUnpickler.UnpickleStateDict(s, leaveOpen: true))),
                StateDictFormat.Safetensors => Validated(stream, SafetensorsFormat.Validate, s => Safetensors.LoadStateDict(s, leaveOpen: true)),
                _ => Validated(stream, ValidateAsLastResort, ReadTorchSharp),
            };
        }
        catch (Exception e) when (e is not InvalidWeightsException and not OutOfMemoryException)
        {
            // The reader's own message may quote the file (a name, a type it met): only its kind is said.
            // Not chained either: a failure's innermost message is what a run reports.
            throw new InvalidWeightsException($"{NotACheckpoint} (its reader failed: {e.GetType().Name})");
        }
    }

    /// <summary>What a file that is no state dict is called; nothing of its content is ever added.</summary>
    public const string NotACheckpoint = "not a PyTorch, safetensors or TorchSharp checkpoint";

    /// <summary>TorchSharp's format has no signature: a file that is not one is any file not recognised, and said so.</summary>
    private static void ValidateAsLastResort(Stream stream)
    {
        try
        {
            TorchSharpFormat.Validate(stream);
        }
        catch (InvalidWeightsException e)
        {
            throw new InvalidWeightsException($"{NotACheckpoint} ({e.Message})");
        }
    }

    /// <summary>The header is checked against the file before the reader allocates anything it describes.</summary>
    private static T Validated<T>(Stream stream, Action<Stream> validate, Func<Stream, T> read)
    {
        validate(stream);
        return read(stream);
    }

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

    /// <summary>PyBridge's writer with <see cref="SafetensorsMetadata"/> added: data offsets count from the end of the header, so only the header changes.</summary>
    private static void WriteSafetensors(Dictionary<string, Tensor> stateDict, Stream stream)
    {
        using var plain = new MemoryStream(SizeHint(stateDict));
        Safetensors.SaveStateDict(plain, stateDict, leaveOpen: true);
        var bytes = plain.GetBuffer().AsSpan(0, (int)plain.Length);
        int length = checked((int)BitConverter.ToUInt64(bytes[..8]));
        var header = System.Text.Json.Nodes.JsonNode.Parse(bytes.Slice(8, length))!.AsObject();
        header.Remove("__metadata__");
        var metadata = new System.Text.Json.Nodes.JsonObject();
        foreach (var (key, value) in SafetensorsMetadata) metadata[key] = value;
        var withMetadata = new System.Text.Json.Nodes.JsonObject { ["__metadata__"] = metadata };
        foreach (var (key, value) in header.ToList())
        {
            header.Remove(key);
            withMetadata[key] = value;
        }
        // The format pads the header with spaces so the data starts 8-byte aligned.
        byte[] json = Encoding.UTF8.GetBytes(withMetadata.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        Span<byte> prefix = stackalloc byte[8];
        BitConverter.TryWriteBytes(prefix, (ulong)padded);
        stream.Write(prefix);
        stream.Write(json);
        for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        stream.Write(bytes[(8 + length)..]);
    }

    private static Dictionary<string, Tensor> FromPickle(Hashtable table)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (DictionaryEntry entry in table)
        {
            if (entry.Key is not string key || entry.Value is not Tensor tensor)
                throw new InvalidWeightsException($"the pickle holds a {entry.Value?.GetType().Name ?? "null"} under a {entry.Key?.GetType().Name ?? "null"} key: only a state dict of tensors can be imported");
            result[key] = tensor;
        }
        return result;
    }

    /// <summary>After <see cref="TorchSharpFormat.Validate"/>, which bounds the count and every tensor.</summary>
    private static Dictionary<string, Tensor> ReadTorchSharp(Stream stream)
    {
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        long count = TorchSharpFormat.ReadVarint(reader);
        var result = new Dictionary<string, Tensor>((int)count);
        for (long i = 0; i < count; i++)
        {
            string key = reader.ReadString();
            result[key] = Tensor.Load(reader);
        }
        return result;
    }
}

/// <summary>Weights that cannot be used: unreadable, or not fitting the model family.</summary>
public sealed class InvalidWeightsException(string message, Exception? inner = null) : BadInputException(message, inner);
