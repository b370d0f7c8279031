using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Text;
using System.Text.Json;

namespace FineTune.Core.Weights;

/// <summary>
/// Checks a weights file's own description of its tensors against the file before anything is allocated: a
/// small file must not make the reader build huge tensors. Safetensors: the JSON header's offsets lie inside
/// the data, entries never overlap, each entry's length is its shape × dtype size. PyTorch (a zip holding a
/// pickle): the pickle only calls what a state dict needs, every storage's bytes are in the archive, and every
/// tensor fits in its storage, and what they claim is at most <see cref="MaxTotalBytes"/> and what the archive's
/// compressed bytes can expand to. TorchSharp's format: every tensor's dtype and shape ask for bytes the file has.
/// A reason never quotes the file: tensor names, strings and unknown codes are the file's content (a file named as
/// weights may be anyone's), so entries are named by their position and only sizes and offsets are given.
/// </summary>
public static class StateDictHeaders
{
    public const int MaxTensors = 100_000;
    public const long MaxHeaderBytes = 100_000_000;
    public const long MaxPickleBytes = 64L * 1024 * 1024;
    public const int MaxDimensions = 16;
    public const long MaxTotalBytes = 4L * 1024 * 1024 * 1024;

    /// <summary>Deflate expands a byte to at most 1032: an entry claiming more than that is lying.</summary>
    private const long MaxDeflateRatio = 1032;

    private static readonly Dictionary<string, int> SafetensorsDtypes = new(StringComparer.Ordinal)
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1,
        ["U64"] = 8, ["U32"] = 4, ["U16"] = 2, ["U8"] = 1, ["BOOL"] = 1, ["F8_E4M3"] = 1, ["F8_E5M2"] = 1,
    };

    private static readonly Dictionary<string, int> StorageElementBytes = new(StringComparer.Ordinal)
    {
        ["DoubleStorage"] = 8, ["FloatStorage"] = 4, ["HalfStorage"] = 2, ["BFloat16Storage"] = 2, ["LongStorage"] = 8,
        ["IntStorage"] = 4, ["ShortStorage"] = 2, ["CharStorage"] = 1, ["ByteStorage"] = 1, ["BoolStorage"] = 1,
        ["ComplexDoubleStorage"] = 16, ["ComplexFloatStorage"] = 8,
    };

    /// <summary>Throws <see cref="InvalidWeightsException"/> naming the entry when the header does not describe the file. Leaves the stream at 0.</summary>
    public static void ValidateSafetensors(Stream stream)
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
            int index = 0;
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                if (spans.Count == MaxTensors)
                    throw Invalid($"safetensors: more than {MaxTensors} tensors");
                spans.Add(SafetensorsEntry(entry.Value, index++, dataLength));
            }
            spans.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            for (int i = 1; i < spans.Count; i++)
                if (spans[i].Begin < spans[i - 1].End)
                    throw Invalid($"safetensors: tensor {spans[i].Entry} overlaps tensor {spans[i - 1].Entry} in the data (counting the header's tensors from 0)");
        }
    }

    /// <param name="name">the tensor's position in the header: its name is the file's content</param>
    private static (long Begin, long End, int Entry) SafetensorsEntry(JsonElement value, int name, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw Invalid($"safetensors: tensor {name} needs dtype, shape and data_offsets [begin, end]");
        if (!SafetensorsDtypes.TryGetValue(dtype.GetString()!, out int size))
            throw Invalid($"safetensors: tensor {name} has a dtype that is none of {string.Join(", ", SafetensorsDtypes.Keys)}");
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

    /// <summary>
    /// Throws <see cref="InvalidWeightsException"/> unless the torch.save archive's pickle is a plain state dict
    /// whose storages are in the archive and whose tensors fit their storages. Leaves the stream at 0.
    /// </summary>
    public static void ValidatePyTorch(Stream stream)
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
            new PickleScan(bytes, storages).Run();
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

    /// <summary>
    /// Throws <see cref="InvalidWeightsException"/> unless TorchSharp's format (a varint count, then per tensor a
    /// length-prefixed name, a dtype, a shape and the raw bytes) describes exactly the bytes the file has, to its
    /// last byte. The format has no signature, so any file not recognised otherwise is read as one: a reason says
    /// what failed, never a number or name read from the file. Leaves the stream at 0.
    /// </summary>
    public static void ValidateTorchSharp(Stream stream)
    {
        stream.Position = 0;
        try
        {
            using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
            long count = Varint(reader);
            if (count < 0 || count > MaxTensors) throw Invalid($"TorchSharp format: not 0 to {MaxTensors} tensors");
            for (long i = 0; i < count; i++)
            {
                long nameLength = Varint(reader);
                if (nameLength < 0 || nameLength > 4096 || nameLength > stream.Length - stream.Position)
                    throw Invalid($"TorchSharp format: tensor {i} has a name longer than 4096 bytes or than the file");
                stream.Seek(nameLength, SeekOrigin.Current);
                var dtype = (TorchSharp.torch.ScalarType)Varint(reader);
                int size = ElementBytes(dtype) ?? throw Invalid($"TorchSharp format: tensor {i} has an unknown dtype");
                long dimensions = Varint(reader);
                if (dimensions < 0 || dimensions > MaxDimensions) throw Invalid($"TorchSharp format: tensor {i} has more than {MaxDimensions} dimensions");
                BigInteger bytes = size;
                for (long d = 0; d < dimensions; d++)
                {
                    long extent = Varint(reader);
                    if (extent < 0) throw Invalid($"TorchSharp format: tensor {i} has a negative size");
                    bytes *= extent;
                }
                if (bytes > stream.Length - stream.Position)
                    throw Invalid($"TorchSharp format: tensor {i} needs more bytes than the file has left");
                stream.Seek((long)bytes, SeekOrigin.Current);
            }
            if (stream.Position != stream.Length)
                throw Invalid("TorchSharp format: bytes follow the last tensor");
        }
        catch (EndOfStreamException)
        {
            throw Invalid("TorchSharp format: the file is truncated");
        }
        finally
        {
            stream.Position = 0;
        }
    }

    private static int? ElementBytes(TorchSharp.torch.ScalarType dtype) => dtype switch
    {
        TorchSharp.torch.ScalarType.Byte or TorchSharp.torch.ScalarType.Int8 or TorchSharp.torch.ScalarType.Bool => 1,
        TorchSharp.torch.ScalarType.Int16 or TorchSharp.torch.ScalarType.Float16 or TorchSharp.torch.ScalarType.BFloat16 => 2,
        TorchSharp.torch.ScalarType.Int32 or TorchSharp.torch.ScalarType.Float32 => 4,
        TorchSharp.torch.ScalarType.Int64 or TorchSharp.torch.ScalarType.Float64 or TorchSharp.torch.ScalarType.ComplexFloat32 => 8,
        TorchSharp.torch.ScalarType.ComplexFloat64 => 16,
        _ => null,
    };

    /// <summary>TorchSharp writes counts, dtypes and sizes as LEB128 varints (BinaryWriter's 7-bit encoding).</summary>
    private static long Varint(BinaryReader reader)
    {
        long value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = reader.ReadByte();
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw Invalid("TorchSharp format: malformed varint");
    }

    private static InvalidWeightsException Invalid(string reason) => new(reason);

    /// <summary>
    /// Walks the pickle's opcodes with a stack of placeholders, never building a tensor: the subset torch.save
    /// writes for a state dict (protocols 2–4). Any global a state dict does not use is refused, so the file can
    /// run no code and build no other object.
    /// </summary>
    /// <param name="storageEntries">per storage key, the bytes its archive entry can really hold</param>
    private sealed class PickleScan(byte[] pickle, Dictionary<string, long> storageEntries)
    {
        private sealed record Global(string Module, string Name);
        private sealed record Storage(string Key, long Elements, int ElementBytes);
        private sealed class Opaque;

        private static readonly object Mark = new();
        private readonly List<object?> _stack = [];
        private readonly Dictionary<long, object?> _memo = [];
        private readonly Dictionary<string, Storage> _storages = new(StringComparer.Ordinal);
        private int _at;
        private int _tensors;

        public void Run()
        {
            while (true)
            {
                if (_at >= pickle.Length) throw Invalid("PyTorch archive: data.pkl ends without STOP");
                byte op = pickle[_at++];
                switch (op)
                {
                    case 0x80: Take(1); break; // PROTO
                    case 0x95: Take(8); break; // FRAME
                    case (byte)'.': Finish(); return; // STOP
                    case (byte)'(': _stack.Add(Mark); break;
                    case (byte)')': _stack.Add(Array.Empty<object?>()); break;
                    case 0x85: Push(PopN(1)); break;
                    case 0x86: Push(PopN(2)); break;
                    case 0x87: Push(PopN(3)); break;
                    case (byte)'t': Push(PopToMark()); break;
                    case (byte)']': Push(new List<object?>()); break;
                    case (byte)'}': Push(new Opaque()); break;
                    case (byte)'a': Pop(); break; // APPEND
                    case (byte)'e': PopToMark(); break; // APPENDS
                    case (byte)'s': Pop(); Pop(); break; // SETITEM
                    case (byte)'u': PopToMark(); break; // SETITEMS
                    case (byte)'N': Push(null); break;
                    case 0x88: Push(true); break;
                    case 0x89: Push(false); break;
                    case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
                    case (byte)'K': Push((long)Take(1)[0]); break;
                    case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
                    case 0x8a: Push(Long(Take(Take(1)[0]))); break; // LONG1
                    case (byte)'G': Take(8); Push(0.0); break;
                    case (byte)'X': Push(Text(Take(Length(4)))); break;
                    case 0x8c: Push(Text(Take(Take(1)[0]))); break;
                    case 0x8d: Push(Text(Take(Length(8)))); break;
                    case (byte)'T': Push(Text(Take(Length(4)))); break;
                    case (byte)'U': Push(Text(Take(Take(1)[0]))); break;
                    case (byte)'B': Take(Length(4)); Push(new Opaque()); break;
                    case (byte)'C': Take(Take(1)[0]); Push(new Opaque()); break;
                    case (byte)'c': Push(Allowed(Line(), Line())); break; // GLOBAL
                    case 0x93: { var name = Pop() as string; var module = Pop() as string; Push(Allowed(module ?? "?", name ?? "?")); break; }
                    case (byte)'q': _memo[Take(1)[0]] = Peek(); break;
                    case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek(); break;
                    case 0x94: _memo[_memo.Count] = Peek(); break;
                    case (byte)'h': Push(Memo(Take(1)[0])); break;
                    case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;
                    case (byte)'Q': Push(PersistentStorage(Pop())); break; // BINPERSID
                    case (byte)'R': case 0x81: { var args = Pop(); var callable = Pop(); Push(Call(callable, args)); break; } // REDUCE, NEWOBJ
                    case (byte)'b': Pop(); break; // BUILD: the state of an OrderedDict
                    case (byte)'0': Pop(); break;
                    case (byte)'1': PopToMark(); break;
                    case (byte)'2': Push(Peek()); break;
                    default: throw Invalid($"PyTorch archive: data.pkl uses a pickle opcode at byte {_at - 1} that a state dict never needs");
                }
            }
        }

        private void Finish()
        {
            long total = _storages.Values.Sum(s => s.Elements * s.ElementBytes);
            if (total > MaxTotalBytes)
                throw Invalid($"PyTorch archive: its storages claim {total} bytes, over the {MaxTotalBytes}-byte limit");
        }

        private static Global Allowed(string module, string name) => (module, name) switch
        {
            ("collections", "OrderedDict") or ("torch._utils", "_rebuild_tensor_v2") or ("torch._utils", "_rebuild_tensor") => new Global(module, name),
            ("torch", _) when StorageElementBytes.ContainsKey(name) => new Global(module, name),
            _ => throw Invalid("PyTorch archive: data.pkl calls a function other than torch's tensor and storage rebuilders and collections.OrderedDict, which a state dict of tensors never does"),
        };

        private Storage PersistentStorage(object? id)
        {
            if (id is not object?[] { Length: 5 } parts || parts[0] is not "storage" || parts[1] is not Global { Module: "torch" } type
                || parts[2] is not string key || parts[4] is not long elements || elements < 0)
                throw Invalid("PyTorch archive: data.pkl names a storage that is not ('storage', type, key, location, size)");
            int elementBytes = StorageElementBytes[type.Name];
            if (!storageEntries.TryGetValue(key, out long entryLength))
                throw Invalid("PyTorch archive: data.pkl names a storage that is not in the archive");
            if (elements > entryLength / elementBytes)
                throw Invalid($"PyTorch archive: a storage claims {elements} elements of {elementBytes} bytes, the archive holds {entryLength} bytes for it");
            return _storages[key] = new Storage(key, elements, elementBytes);
        }

        private Opaque Call(object? callable, object? args)
        {
            if (callable is not Global global || args is not object?[] arguments)
                throw Invalid("PyTorch archive: data.pkl calls something that is not an allowed function");
            if (global.Module == "collections") return new Opaque();
            if (global.Module != "torch._utils")
                throw Invalid($"PyTorch archive: data.pkl calls {global.Module}.{global.Name} with arguments");
            if (++_tensors > MaxTensors) throw Invalid($"PyTorch archive: more than {MaxTensors} tensors");
            if (arguments.Length < 4 || arguments[0] is not Storage storage || arguments[1] is not long offset
                || arguments[2] is not object?[] shape || arguments[3] is not object?[] stride || shape.Length != stride.Length || shape.Length > MaxDimensions)
                throw Invalid("PyTorch archive: data.pkl rebuilds a tensor from arguments that are not (storage, offset, shape, stride, ...)");
            long elements = 1, extent = offset;
            for (int i = 0; i < shape.Length; i++)
            {
                if (shape[i] is not long size || stride[i] is not long step || size < 0 || step < 0)
                    throw Invalid("PyTorch archive: a tensor has a shape or stride that is not sizes");
                elements = size == 0 || elements == 0 ? 0 : elements <= storage.Elements / size ? elements * size : long.MaxValue;
                if (size > 0) extent += (size - 1) * Math.Min(step, storage.Elements);
            }
            if (offset < 0 || elements > storage.Elements || (elements > 0 && extent >= storage.Elements))
                throw Invalid($"PyTorch archive: a tensor reaches past its storage's {storage.Elements} elements");
            return new Opaque();
        }

        private int Length(int bytes)
        {
            long length = bytes == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(Take(4)) : (long)BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
            if (length < 0 || length > pickle.Length - _at) throw Invalid("PyTorch archive: data.pkl is truncated");
            return (int)length;
        }

        private ReadOnlySpan<byte> Take(int count)
        {
            if (count > pickle.Length - _at) throw Invalid("PyTorch archive: data.pkl is truncated");
            var span = pickle.AsSpan(_at, count);
            _at += count;
            return span;
        }

        private string Line()
        {
            int end = Array.IndexOf(pickle, (byte)'\n', _at);
            if (end < 0) throw Invalid("PyTorch archive: data.pkl is truncated");
            string line = Encoding.UTF8.GetString(pickle, _at, end - _at);
            _at = end + 1;
            return line;
        }

        private static string Text(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

        private static long Long(ReadOnlySpan<byte> bytes) =>
            bytes.Length == 0 ? 0 : bytes.Length <= 8 ? (long)new BigInteger(bytes, isUnsigned: false, isBigEndian: false) : long.MaxValue;

        private object? Memo(long key) => _memo.TryGetValue(key, out var value) ? value : throw Invalid("PyTorch archive: data.pkl reads a memo entry it never wrote");

        private void Push(object? value) => _stack.Add(value);

        private object? Peek() => _stack.Count > 0 && _stack[^1] != Mark ? _stack[^1] : throw Invalid("PyTorch archive: data.pkl is malformed (empty stack)");

        private object? Pop()
        {
            var value = Peek();
            _stack.RemoveAt(_stack.Count - 1);
            return value;
        }

        private object?[] PopN(int count)
        {
            var values = new object?[count];
            for (int i = count - 1; i >= 0; i--) values[i] = Pop();
            return values;
        }

        private object?[] PopToMark()
        {
            int mark = _stack.LastIndexOf(Mark);
            if (mark < 0) throw Invalid("PyTorch archive: data.pkl is malformed (no mark)");
            var values = _stack.GetRange(mark + 1, _stack.Count - mark - 1).ToArray();
            _stack.RemoveRange(mark, _stack.Count - mark);
            return values;
        }
    }
}
