using System.Numerics;
using System.Text;
using static FineTune.Core.Weights.StateDictValidation;

namespace FineTune.Core.Weights;

/// <summary>TorchSharp's <c>Module.save</c> format: its validator, and the varint its reader and the validator share.</summary>
internal static class TorchSharpFormat
{
    /// <summary>
    /// Throws <see cref="InvalidWeightsException"/> unless TorchSharp's format (a varint count, then per tensor a
    /// length-prefixed name, a dtype, a shape and the raw bytes) describes exactly the bytes the file has, to its
    /// last byte. The format has no signature, so any file not recognised otherwise is read as one: a reason says
    /// what failed, never a number or name read from the file. Returns the tensors, each at its data's offset in the
    /// file. Leaves the stream at 0.
    /// </summary>
    public static List<StoredTensor> Validate(Stream stream)
    {
        stream.Position = 0;
        try
        {
            using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
            long count = ReadVarint(reader);
            if (count < 0 || count > MaxTensors) throw Invalid($"TorchSharp format: not 0 to {MaxTensors} tensors");
            var tensors = new List<StoredTensor>((int)count);
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (long i = 0; i < count; i++)
            {
                long nameLength = ReadVarint(reader);
                if (nameLength < 0 || nameLength > 4096 || nameLength > stream.Length - stream.Position)
                    throw Invalid($"TorchSharp format: tensor {i} has a name longer than 4096 bytes or than the file");
                string name = Encoding.UTF8.GetString(reader.ReadBytes((int)nameLength));
                if (!names.Add(name)) throw Invalid($"TorchSharp format: tensor {i} has the name of an earlier one");
                var dtype = (TorchSharp.torch.ScalarType)ReadVarint(reader);
                int size = ElementBytes(dtype) ?? throw Invalid($"TorchSharp format: tensor {i} has an unknown dtype");
                long dimensions = ReadVarint(reader);
                if (dimensions < 0 || dimensions > MaxDimensions) throw Invalid($"TorchSharp format: tensor {i} has more than {MaxDimensions} dimensions");
                var shape = new long[dimensions];
                BigInteger bytes = size;
                for (long d = 0; d < dimensions; d++)
                {
                    long extent = ReadVarint(reader);
                    if (extent < 0) throw Invalid($"TorchSharp format: tensor {i} has a negative size");
                    shape[d] = extent;
                    bytes *= extent;
                }
                if (bytes > stream.Length - stream.Position)
                    throw Invalid($"TorchSharp format: tensor {i} needs more bytes than the file has left");
                tensors.Add(new StoredTensor(name, dtype, shape, stream.Position));
                stream.Seek((long)bytes, SeekOrigin.Current);
            }
            if (stream.Position != stream.Length)
                throw Invalid("TorchSharp format: bytes follow the last tensor");
            return tensors;
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

    /// <summary>TorchSharp writes counts, dtypes and sizes as LEB128 varints (BinaryWriter's 7-bit encoding): its reader and this validator read them here.</summary>
    public static long ReadVarint(BinaryReader reader)
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
}
