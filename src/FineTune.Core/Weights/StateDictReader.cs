using System.IO.Compression;
using static TorchSharp.torch;

namespace FineTune.Core.Weights;

/// <summary>
/// A tensor a state dict file describes, read only when asked. <see cref="Offset"/> is the data's byte offset in
/// the file (safetensors, TorchSharp's format) or, for a torch.save archive, the tensor's element offset in
/// <see cref="Storage"/> (the archive entry holding its storage) read with <see cref="Stride"/>.
/// </summary>
public sealed record StoredTensor(string Name, ScalarType DType, long[] Shape, long Offset)
{
    internal string? Storage { get; init; }
    internal long StorageElements { get; init; }
    internal long[]? Stride { get; init; }
    /// <summary>Whether the elements lie in row-major order from <see cref="Offset"/>, as the validator found (every tensor of the other formats).</summary>
    internal bool Contiguous { get; init; } = true;
}

/// <summary>
/// A state dict file opened for reading tensor by tensor: <see cref="Tensors"/> says what it holds (checked against
/// the file, nothing allocated), and <see cref="ReadInto"/> fills a tensor the caller owns straight from the file, so
/// loading a model's weights never holds a second copy of them (vit_h_14's are 2.5 GB).
/// </summary>
public sealed class StateDictReader : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly ZipArchive? _archive;

    private StateDictReader(Stream stream, bool leaveOpen, IReadOnlyList<StoredTensor> tensors, ZipArchive? archive)
    {
        _stream = stream;
        _leaveOpen = leaveOpen;
        Tensors = tensors;
        _archive = archive;
    }

    public IReadOnlyList<StoredTensor> Tensors { get; }

    public static StateDictReader Open(string path)
    {
        var stream = File.OpenRead(path);
        try
        {
            return Open(stream, leaveOpen: false);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads the description of any format <see cref="StateDictFile"/> knows, from a seekable stream.</summary>
    /// <exception cref="InvalidWeightsException">the stream holds no state dict, or one that does not describe its bytes</exception>
    public static StateDictReader Open(Stream stream, bool leaveOpen)
    {
        Span<byte> head = stackalloc byte[16];
        stream.Position = 0;
        int read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        stream.Position = 0;
        try
        {
            switch (StateDictFile.Detect(head[..read]))
            {
                case StateDictFormat.PyTorch:
                    var tensors = PyTorchFormat.Validate(stream);
                    return new StateDictReader(stream, leaveOpen, tensors, new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true));
                case StateDictFormat.Safetensors:
                    return new StateDictReader(stream, leaveOpen, SafetensorsFormat.Validate(stream), archive: null);
                default:
                    return new StateDictReader(stream, leaveOpen, ValidateAsLastResort(stream), archive: null);
            }
        }
        catch (Exception e) when (e is not InvalidWeightsException and not OutOfMemoryException)
        {
            // The reader's own message may quote the file (a name, a type it met): only its kind is said.
            // Not chained either: a failure's innermost message is what a run reports.
            throw new InvalidWeightsException($"{StateDictFile.NotACheckpoint} (its reader failed: {e.GetType().Name})");
        }
    }

    /// <summary>TorchSharp's format has no signature: a file that is not one is any file not recognised, and said so.</summary>
    private static List<StoredTensor> ValidateAsLastResort(Stream stream)
    {
        try
        {
            return TorchSharpFormat.Validate(stream);
        }
        catch (InvalidWeightsException e)
        {
            throw new InvalidWeightsException($"{StateDictFile.NotACheckpoint} ({e.Message})");
        }
    }

    /// <summary>A new tensor holding <paramref name="tensor"/>: the caller owns it.</summary>
    public Tensor Read(StoredTensor tensor)
    {
        var result = empty(tensor.Shape, tensor.DType);
        try
        {
            Fill(tensor, result);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies <paramref name="tensor"/> into <paramref name="destination"/>, which has its shape: straight into its memory
    /// when it is a contiguous CPU tensor of the same dtype, else through one temporary the size of this tensor.
    /// </summary>
    public void ReadInto(StoredTensor tensor, Tensor destination)
    {
        if (!destination.shape.SequenceEqual(tensor.Shape))
            throw new ArgumentException($"{tensor.Name} is [{string.Join(", ", tensor.Shape)}], the destination [{string.Join(", ", destination.shape)}]", nameof(destination));
        if (destination.dtype == tensor.DType && destination.device_type == TorchSharp.DeviceType.CPU && destination.is_contiguous())
        {
            Fill(tensor, destination);
            return;
        }
        using var temporary = Read(tensor);
        using var _ = no_grad();
        destination.copy_(temporary);
    }

    /// <summary>Fills a contiguous CPU tensor of the stored tensor's dtype and shape.</summary>
    /// <exception cref="InvalidWeightsException">the file's bytes are not what its description says (truncated, corrupt)</exception>
    private void Fill(StoredTensor tensor, Tensor destination)
    {
        if (destination.NumberOfElements == 0) return;
        try
        {
            if (_archive is null)
            {
                _stream.Position = tensor.Offset;
                ReadBytes(_stream, destination);
                return;
            }
            var entry = _archive.GetEntry(tensor.Storage!) ?? throw new InvalidWeightsException("PyTorch archive: a storage's entry went missing");
            using var storage = entry.Open();
            if (tensor.Contiguous)
            {
                Skip(storage, tensor.Offset * destination.ElementSize);
                ReadBytes(storage, destination);
                return;
            }
            // A view into a larger storage (torch.save keeps views as they were): the storage, then the view of it.
            using var whole = empty(tensor.StorageElements, tensor.DType);
            ReadBytes(storage, whole);
            using var view = whole.as_strided(tensor.Shape, tensor.Stride!, tensor.Offset);
            using var _ = no_grad();
            destination.copy_(view);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidWeightsException("the file ends inside a tensor's data");
        }
        catch (Exception e) when (e is not InvalidWeightsException and not OutOfMemoryException and not OperationCanceledException)
        {
            // A corrupt zip entry or deflate stream, or libtorch refusing a view: the file's fault, said by its kind only.
            throw new InvalidWeightsException($"{StateDictFile.NotACheckpoint} (its reader failed: {e.GetType().Name})");
        }
    }

    private static void ReadBytes(Stream source, Tensor destination)
    {
        long bytes = destination.NumberOfElements * destination.ElementSize;
        if (bytes == 0) return;
        if (bytes <= Array.MaxLength) source.ReadExactly(destination.bytes);
        else destination.ReadBytesFromStream(source, 1 << 20);
    }

    private static void Skip(Stream source, long bytes)
    {
        if (bytes == 0) return;
        if (source.CanSeek)
        {
            source.Seek(bytes, SeekOrigin.Current);
            return;
        }
        var buffer = new byte[(int)Math.Min(bytes, 1 << 16)];
        while (bytes > 0)
        {
            int read = source.Read(buffer, 0, (int)Math.Min(bytes, buffer.Length));
            if (read == 0) throw new EndOfStreamException();
            bytes -= read;
        }
    }

    public void Dispose()
    {
        _archive?.Dispose();
        if (!_leaveOpen) _stream.Dispose();
    }
}
