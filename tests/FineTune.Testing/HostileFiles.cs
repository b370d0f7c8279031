using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace FineTune.Testing;

/// <summary>
/// Small files that attack the service: each is a few KB to a few MB on disk and claims far more (pixels,
/// tensor bytes, expanded bytes), or points outside where it should stay.
/// </summary>
public static class HostileFiles
{
    /// <summary>A class folder per name, each with <paramref name="perClass"/> copies of real photos.</summary>
    public static string ImageFolder(string root, int perClass, params string[] classes)
    {
        var photos = TuxPaintStamps.Images("animals", 40);
        int next = 0;
        foreach (var name in classes)
        {
            var folder = Directory.CreateDirectory(Path.Combine(root, name)).FullName;
            for (int i = 0; i < perClass; i++) File.Copy(photos[next++ % photos.Count], Path.Combine(folder, $"img{i}.png"));
        }
        return root;
    }

    public static byte[] Photo() => File.ReadAllBytes(TuxPaintStamps.Images("animals", 1)[0]);

    /// <summary>A PNG of <paramref name="width"/>×<paramref name="height"/> grey pixels, or only a row of them under a header claiming that size (<paramref name="headerOnly"/>).</summary>
    public static byte[] Png(int width, int height, bool headerOnly = false)
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8; // bit depth
        header[9] = 2; // RGB
        Chunk(png, "IHDR", header);
        using (var raw = new MemoryStream())
        {
            using (var zlib = new ZLibStream(raw, CompressionLevel.SmallestSize, leaveOpen: true))
            {
                var row = new byte[1 + 3 * width];
                row.AsSpan(1).Fill(128);
                for (int y = 0; y < (headerOnly ? 1 : height); y++) zlib.Write(row);
            }
            Chunk(png, "IDAT", raw.ToArray());
        }
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream png, string type, byte[] data)
    {
        Span<byte> field = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(field, data.Length);
        png.Write(field);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        png.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(field, Crc32(typed));
        png.Write(field);
    }

    /// <summary>PNG's CRC-32 (ISO 3309, reflected 0xEDB88320).</summary>
    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>A safetensors file: <paramref name="header"/> (JSON) and <paramref name="dataBytes"/> zero bytes of data.</summary>
    public static byte[] Safetensors(string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
        json.CopyTo(file, 8);
        return file;
    }

    /// <summary>A zip of photos under each of <paramref name="entryNames"/>, in order (a name may repeat).</summary>
    public static byte[] ZipOf(params string[] entryNames)
    {
        using var file = new MemoryStream();
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var name in entryNames)
            {
                using var stream = zip.CreateEntry(name).Open();
                if (!name.EndsWith('/')) stream.Write(Photo());
            }
        return file.ToArray();
    }

    /// <summary>A zip of two photo classes plus <c>a/NAME.png</c> whose name bytes are not UTF-8 (0xFF 0xFE), as some Windows zip tools write them.</summary>
    public static byte[] ZipWithUndecodableName()
    {
        var bytes = ZipOf("a/1.png", "b/1.png", "a/@@.png");
        // The name is in the local header and in the central directory: both are patched.
        for (int at = 0; at + 1 < bytes.Length; at++)
            if (bytes[at] == '@' && bytes[at + 1] == '@') (bytes[at], bytes[at + 1]) = (0xFF, 0xFE);
        return bytes;
    }

    /// <summary>A zip of two photo classes plus <c>a/zeros.png</c>: <paramref name="bytes"/> zeros, honestly declared, deflated to about 1/1000.</summary>
    public static byte[] ZipWithZeros(long bytes)
    {
        using var file = new MemoryStream();
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var name in new[] { "a/1.png", "a/2.png", "b/1.png", "b/2.png" })
                using (var stream = zip.CreateEntry(name).Open()) stream.Write(Photo());
            using var zeros = zip.CreateEntry("a/zeros.png", CompressionLevel.SmallestSize).Open();
            var block = new byte[1 << 20];
            for (long left = bytes; left > 0; left -= block.Length) zeros.Write(block, 0, (int)Math.Min(block.Length, left));
        }
        return file.ToArray();
    }

    /// <summary>
    /// <paramref name="count"/> tensors that all claim the same 4 MiB of data: 4 MiB on disk, <paramref name="count"/> × 4 MiB
    /// once built (the attack that took a worker to 1.34 GB).
    /// </summary>
    public static byte[] OverlappingSafetensors(int count = 128)
    {
        const int elements = 1 << 20;
        var entries = Enumerable.Range(0, count).Select(i => $"\"t{i}\":{{\"dtype\":\"F32\",\"shape\":[{elements}],\"data_offsets\":[0,{4 * elements}]}}");
        return Safetensors("{" + string.Join(",", entries) + "}", 4 * elements);
    }

    /// <summary>A torch.save archive whose pickle is <paramref name="pickle"/> and whose storage "0" holds <paramref name="storageBytes"/> bytes.</summary>
    public static byte[] TorchArchive(byte[] pickle, int storageBytes = 16)
    {
        using var file = new MemoryStream();
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
        {
            using (var entry = zip.CreateEntry("archive/data.pkl", CompressionLevel.NoCompression).Open()) entry.Write(pickle);
            using (var entry = zip.CreateEntry("archive/data/0", CompressionLevel.NoCompression).Open()) entry.Write(new byte[storageBytes]);
            using (var entry = zip.CreateEntry("archive/version", CompressionLevel.NoCompression).Open()) entry.Write("3\n"u8);
        }
        return file.ToArray();
    }

    /// <summary>A pickle that calls <c>posix.system("id")</c> when a plain unpickler loads it.</summary>
    public static byte[] PickleCallingSystem() =>
        [0x80, 2, .. "cposix\nsystem\n"u8, .. Unicode("id"), 0x85, (byte)'R', (byte)'.'];

    /// <summary>A state dict of one tensor "w" claiming <paramref name="elements"/> floats of a 16-byte storage.</summary>
    public static byte[] PickleClaimingElements(int elements)
    {
        byte[] orderedDict = [.. "ccollections\nOrderedDict\n"u8, (byte)')', (byte)'R'];
        return
        [
            0x80, 2, .. orderedDict, (byte)'(', .. Unicode("w"),
            .. "ctorch._utils\n_rebuild_tensor_v2\n"u8, (byte)'(',
            (byte)'(', .. Unicode("storage"), .. "ctorch\nFloatStorage\n"u8, .. Unicode("0"), .. Unicode("cpu"), .. Int(elements), (byte)'t', (byte)'Q',
            (byte)'K', 0, (byte)'(', .. Int(elements), (byte)'t', (byte)'(', (byte)'K', 1, (byte)'t', 0x89, .. orderedDict,
            (byte)'t', (byte)'R', (byte)'u', (byte)'.',
        ];
    }

    /// <summary>TorchSharp's format: one float tensor "w" whose shape asks for <paramref name="elements"/> floats, followed by 16 bytes.</summary>
    public static byte[] TorchSharpClaimingElements(int elements) =>
        [1, 1, (byte)'w', 6 /* Float32 */, 1, .. Leb128(elements), .. new byte[16]];

    private static byte[] Leb128(long value)
    {
        var bytes = new List<byte>();
        do
        {
            byte b = (byte)(value & 0x7f);
            value >>= 7;
            bytes.Add(value == 0 ? b : (byte)(b | 0x80));
        } while (value != 0);
        return [.. bytes];
    }

    private static byte[] Int(int value)
    {
        var bytes = new byte[5];
        bytes[0] = (byte)'J';
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(1), value);
        return bytes;
    }

    private static byte[] Unicode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var result = new byte[5 + bytes.Length];
        result[0] = (byte)'X';
        BinaryPrimitives.WriteInt32LittleEndian(result.AsSpan(1), bytes.Length);
        bytes.CopyTo(result, 5);
        return result;
    }

    /// <summary>A zip with one entry named <paramref name="entryName"/> (e.g. <c>../evil.png</c>) holding a real photo, or a link.</summary>
    public static byte[] ZipWith(string entryName, bool symbolicLink = false)
    {
        using var file = new MemoryStream();
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
        {
            var entry = zip.CreateEntry(entryName);
            // Unix mode in the high bits, as Info-ZIP stores it: 0xA000 is a symbolic link (its content, the target).
            if (symbolicLink) entry.ExternalAttributes = unchecked((int)0xA1FF0000);
            using var stream = entry.Open();
            stream.Write(symbolicLink ? "/etc/passwd"u8.ToArray() : Photo());
        }
        return file.ToArray();
    }

    /// <summary>
    /// A zip of six tiny entries whose central directory claims 4 GB each: what a decompression bomb's headers
    /// say, without the 24 GB behind them.
    /// </summary>
    public static byte[] ZipBomb()
    {
        using var file = new MemoryStream();
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
            for (int i = 0; i < 6; i++)
                using (var stream = zip.CreateEntry($"cats/bomb{i}.png", CompressionLevel.NoCompression).Open()) stream.Write(new byte[16]);
        var bytes = file.ToArray();
        // Central directory headers (PK\1\2): the uncompressed size is at offset 24.
        for (int at = 0; at + 46 < bytes.Length; at++)
            if (bytes[at] == 'P' && bytes[at + 1] == 'K' && bytes[at + 2] == 1 && bytes[at + 3] == 2)
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + 24), 0xF0000000);
        return bytes;
    }
}
