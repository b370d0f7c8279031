using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using static FineTune.Core.Weights.StateDictValidation;

namespace FineTune.Core.Weights;

internal static partial class PyTorchFormat
{
    /// <summary>
    /// Walks the pickle's opcodes with a stack of placeholders, never building a tensor: the subset torch.save
    /// writes for a state dict (protocols 2–4). Any global a state dict does not use is refused, so the file can
    /// run no code and build no other object. What it finds is the state dict's description: each tensor's name,
    /// storage, offset, shape and stride, for a reader to fill tensors from the archive one at a time.
    /// </summary>
    /// <param name="storageEntries">per storage key, the bytes its archive entry can really hold</param>
    private sealed class PickleScan(byte[] pickle, Dictionary<string, long> storageEntries)
    {
        private sealed record Global(string Module, string Name);
        private sealed record Storage(string Key, long Elements, int ElementBytes, string TypeName);
        /// <param name="Contiguous">whether its elements lie in row-major order in the storage, so a reader takes its bytes alone</param>
        private sealed record TensorView(Storage Storage, long Offset, long[] Shape, long[] Stride, bool Contiguous, long Elements)
        {
            /// <summary>What reading it takes from its storage: its own bytes when contiguous, else the whole storage.</summary>
            public long BytesRead => (Contiguous ? Elements : Storage.Elements) * Storage.ElementBytes;
        }
        private sealed class Opaque;

        /// <summary>A dict or OrderedDict: its items in the order the pickle sets them.</summary>
        private sealed class Dict
        {
            public readonly List<(object? Key, object? Value)> Items = [];
        }

        private static readonly object Mark = new();
        private readonly List<object?> _stack = [];
        private readonly Dictionary<long, object?> _memo = [];
        private readonly Dictionary<string, Storage> _storages = new(StringComparer.Ordinal);
        private int _at;
        private int _tensors;

        /// <summary>The state dict's tensors in the pickle's order; throws <see cref="InvalidWeightsException"/> when the pickle is not one.</summary>
        public List<StoredTensor> Run()
        {
            while (true)
            {
                if (_at >= pickle.Length) throw Invalid("PyTorch archive: data.pkl ends without STOP");
                byte op = pickle[_at++];
                switch (op)
                {
                    case 0x80: Take(1); break; // PROTO
                    case 0x95: Take(8); break; // FRAME
                    case (byte)'.': return Finish(); // STOP
                    case (byte)'(': _stack.Add(Mark); break;
                    case (byte)')': _stack.Add(Array.Empty<object?>()); break;
                    case 0x85: Push(PopN(1)); break;
                    case 0x86: Push(PopN(2)); break;
                    case 0x87: Push(PopN(3)); break;
                    case (byte)'t': Push(PopToMark()); break;
                    case (byte)']': Push(new List<object?>()); break;
                    case (byte)'}': Push(new Dict()); break;
                    case (byte)'a': Pop(); break; // APPEND
                    case (byte)'e': PopToMark(); break; // APPENDS
                    case (byte)'s': { var value = Pop(); var key = Pop(); SetItems(Peek(), [key, value]); break; } // SETITEM
                    case (byte)'u': { var items = PopToMark(); SetItems(Peek(), items); break; } // SETITEMS
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

        private List<StoredTensor> Finish()
        {
            // Each storage is at most MaxTotalBytes (checked where it is named), so the sum fits a BigInteger, never wraps.
            var total = _storages.Values.Aggregate(BigInteger.Zero, (sum, s) => sum + (BigInteger)s.Elements * s.ElementBytes);
            if (total > MaxTotalBytes)
                throw Invalid($"PyTorch archive: its storages claim {total} bytes, over the {MaxTotalBytes}-byte limit");
            if (Pop() is not Dict stateDict)
                throw Invalid("PyTorch archive: data.pkl holds something other than a dict: only a state dict of tensors can be imported");
            var tensors = new List<StoredTensor>(stateDict.Items.Count);
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            BigInteger read = 0;
            foreach (var (key, value) in stateDict.Items)
            {
                if (key is not string name || value is not TensorView view)
                    throw Invalid($"PyTorch archive: the dict holds a {Kind(value)} under a {Kind(key)} key: only a state dict of tensors can be imported");
                // A reader reads each tensor on its own (a view through its whole storage), however many keys share one:
                // what all of them read is bounded like the storages.
                read += view.BytesRead;
                if (read > MaxTotalBytes)
                    throw Invalid($"PyTorch archive: its tensors read over {MaxTotalBytes} bytes from their storages (a storage named under many keys?)");
                var tensor = new StoredTensor(name, ScalarTypes[view.Storage.TypeName], view.Shape, view.Offset)
                {
                    Storage = view.Storage.Key,
                    StorageElements = view.Storage.Elements,
                    Stride = view.Stride,
                    Contiguous = view.Contiguous,
                };
                // A key set again replaces its value, as in Python.
                if (seen.TryGetValue(name, out int at)) tensors[at] = tensor;
                else
                {
                    seen[name] = tensors.Count;
                    tensors.Add(tensor);
                }
            }
            return tensors;
        }

        private static string Kind(object? value) => value switch
        {
            null => "None",
            string => "string",
            TensorView => "tensor",
            Dict => "dict",
            long => "int",
            _ => "value of another kind",
        };

        private static void SetItems(object? target, object?[] items)
        {
            if (items.Length % 2 != 0) throw Invalid("PyTorch archive: data.pkl sets a dict item without a value");
            if (target is not Dict dict) return;
            for (int i = 0; i < items.Length; i += 2) dict.Items.Add((items[i], items[i + 1]));
        }

        private static Global Allowed(string module, string name) => (module, name) switch
        {
            ("collections", "OrderedDict") or ("torch._utils", "_rebuild_tensor_v2") or ("torch._utils", "_rebuild_tensor") => new Global(module, name),
            ("torch", _) when ScalarTypes.ContainsKey(name) => new Global(module, name),
            _ => throw Invalid("PyTorch archive: data.pkl calls a function other than torch's tensor and storage rebuilders and collections.OrderedDict, which a state dict of tensors never does"),
        };

        private Storage PersistentStorage(object? id)
        {
            if (id is not object?[] { Length: 5 } parts || parts[0] is not "storage" || parts[1] is not Global { Module: "torch" } type
                || parts[2] is not string key || parts[4] is not long elements || elements < 0)
                throw Invalid("PyTorch archive: data.pkl names a storage that is not ('storage', type, key, location, size)");
            int elementBytes = ElementBytes(ScalarTypes[type.Name])!.Value;
            if (!storageEntries.TryGetValue(key, out long entryLength))
                throw Invalid("PyTorch archive: data.pkl names a storage that is not in the archive");
            if (elements > entryLength / elementBytes)
                throw Invalid($"PyTorch archive: a storage claims {elements} elements of {elementBytes} bytes, the archive holds {entryLength} bytes for it");
            if (elements > MaxTotalBytes / elementBytes)
                throw Invalid($"PyTorch archive: a storage claims {elements} elements of {elementBytes} bytes, over the {MaxTotalBytes}-byte limit");
            return _storages[key] = new Storage(key, elements, elementBytes, type.Name);
        }

        private object Call(object? callable, object? args)
        {
            if (callable is not Global global || args is not object?[] arguments)
                throw Invalid("PyTorch archive: data.pkl calls something that is not an allowed function");
            if (global.Module == "collections") return new Dict();
            if (global.Module != "torch._utils")
                throw Invalid($"PyTorch archive: data.pkl calls {global.Module}.{global.Name} with arguments");
            if (++_tensors > MaxTensors) throw Invalid($"PyTorch archive: more than {MaxTensors} tensors");
            if (arguments.Length < 4 || arguments[0] is not Storage storage || arguments[1] is not long offset
                || arguments[2] is not object?[] shape || arguments[3] is not object?[] stride || shape.Length != stride.Length || shape.Length > MaxDimensions)
                throw Invalid("PyTorch archive: data.pkl rebuilds a tensor from arguments that are not (storage, offset, shape, stride, ...)");
            // In BigIntegers: sizes and strides are the file's, and long arithmetic on them could wrap past the checks.
            BigInteger elements = 1, extent = offset;
            bool contiguous = true;
            BigInteger expectedStride = 1;
            for (int i = shape.Length - 1; i >= 0; i--)
            {
                if (shape[i] is not long size || stride[i] is not long step || size < 0 || step < 0)
                    throw Invalid("PyTorch archive: a tensor has a shape or stride that is not sizes");
                elements *= size;
                if (size > 0) extent += (BigInteger)(size - 1) * step;
                if (size != 1 && step != expectedStride) contiguous = false;
                expectedStride *= size;
            }
            if (offset < 0 || offset > storage.Elements || elements > storage.Elements || (elements > 0 && extent >= storage.Elements))
                throw Invalid($"PyTorch archive: a tensor reaches past its storage's {storage.Elements} elements");
            return new TensorView(storage, offset, shape.Select(d => (long)d!).ToArray(), stride.Select(d => (long)d!).ToArray(), contiguous, (long)elements);
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
