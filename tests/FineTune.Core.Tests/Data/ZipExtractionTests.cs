using FineTune.Core.Data;

namespace FineTune.Core.Tests.Data;

/// <summary>
/// Hostile and broken .zip datasets: each is bad input at once (never an IOException a worker would retry), names the
/// entry at fault, and leaves nothing unpacked on disk.
/// </summary>
public sealed class ZipExtractionTests : IDisposable
{
    private const long MiB = 1 << 20;

    private readonly string _dir = Directory.CreateTempSubdirectory("zips-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Unzipped => Path.Combine(_dir, "unzipped");

    public static TheoryData<string, string[], string> BadArchives => new()
    {
        { "a file and a folder of one name", ["a/1.png", "b/1.png", "a/x.png", "a/x.png/y.png"], "entry 'a/x.png/y.png' clashes with entry 'a/x.png'" },
        { "a folder and then a file of one name", ["a/1.png", "b/1.png", "a/x.png/y.png", "a/x.png"], "entry 'a/x.png' clashes with entry 'a/x.png/y.png'" },
        { "a folder entry and a file of one name", ["a/1.png", "b/1.png", "a/x/", "a/x"], "entry 'a/x' clashes with entry 'a/x/'" },
        { "a 300-character name", ["a/1.png", "b/1.png", "a/" + new string('n', 296) + ".png"], "has a name part of 300 bytes, over the 255" },
        { "a path too long to unpack", ["a/1.png", "b/1.png", "a/" + string.Join('/', Enumerable.Repeat(new string('d', 200), 25)) + ".png"], "has a name too long to unpack" },
        { "one entry twice", ["a/1.png", "b/1.png", "a/1.png"], "entry 'a/1.png' is in the archive twice" },
        { "one entry twice, spelled two ways", ["a/1.png", "b/1.png", "a/./1.png"], "entry 'a/./1.png' is in the archive twice" },
        { "a control character", ["a/1.png", "b/1.png", "a/bell\u0007.png"], "entry 'a/bell\\u0007.png' has control characters in its name" },
        { "a NUL in a name", ["a/1.png", "b/1.png", "a/x\0.png"], "entry 'a/x\\u0000.png' has control characters in its name" },
        { "an absolute name", ["a/1.png", "b/1.png", "/tmp/evil.png"], "entry '/tmp/evil.png' points outside the archive" },
        { "a name leaving the folder", ["a/1.png", "b/1.png", "a/../../evil.png"], "entry 'a/../../evil.png' points outside the archive" },
    };

    [Theory]
    [MemberData(nameof(BadArchives))]
    public void EveryExtractionErrorIsBadInputNamingTheEntryAndLeavesNothing(string kind, string[] entries, string expected)
    {
        string zip = Write("bad.zip", HostileFiles.ZipOf(entries));

        var error = Assert.ThrowsAny<BadInputException>(() => DatasetLoader.Load(zip, new DatasetOptions(), Unzipped, name: "blob:datasets/bad.zip"));

        Assert.True(error.Message.StartsWith("blob:datasets/bad.zip: ", StringComparison.Ordinal), $"{kind}: {error.Message}");
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain(_dir, error.Message);
        Assert.False(Directory.Exists(Unzipped), $"{kind}: the unpacked files stay");
        Assert.False(File.Exists(Path.Combine(_dir, "evil.png")));
    }

    [Fact]
    public void ANameThatIsNotUtf8IsBadInputNamingTheEntry()
    {
        string zip = Write("encoding.zip", HostileFiles.ZipWithUndecodableName());

        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(zip, new DatasetOptions(), Unzipped));

        Assert.Contains("entry 'a/\uFFFD\uFFFD.png' has a name that is not UTF-8 text", error.Message);
        Assert.False(Directory.Exists(Unzipped));
    }

    [Fact]
    public void AZipBombUnderTheCapUnpacksAndOneOverItStopsAtTheCapAndLeavesNothing()
    {
        // 48 MiB of zeros in about 50 KB, honestly declared: under a 64 MiB cap it unpacks (disk measured), and the 32 MiB
        // cap refuses it before writing a byte.
        byte[] bomb = HostileFiles.ZipWithZeros(48 * MiB);
        string zip = Write("bomb.zip", bomb);
        Assert.True(bomb.Length < MiB, $"{bomb.Length} bytes");

        var unpacked = DatasetLoader.Load(zip, new DatasetOptions { MaxExpandedBytes = 64 * MiB, MaxBadFraction = 0.5, ValidationFraction = 0.5 }, Unzipped);
        long underCap = FolderBytes(Unzipped);
        Assert.EndsWith("bomb.zip!/a/zeros.png", unpacked.Skipped.Single().Path, StringComparison.Ordinal);
        Assert.InRange(underCap, 48 * MiB, 49 * MiB);

        var declared = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(zip, new DatasetOptions { MaxExpandedBytes = 32 * MiB }, Unzipped));
        Assert.Contains($"bomb.zip: expands to more than the {32 * MiB}-byte limit", declared.Message);
        Assert.False(Directory.Exists(Unzipped));

        // Headers declaring 16 bytes an entry: the runtime stops each entry there (the photos come out truncated and the
        // scan refuses them); whatever it made of the lie, no more than the cap reaches the disk.
        string liar = Write("liar.zip", DeclaringSmallSizes(bomb));
        var lied = Record.Exception(() => DatasetLoader.Load(liar, new DatasetOptions { MaxExpandedBytes = 32 * MiB }, Unzipped));
        Assert.True(lied is BadInputException, lied?.ToString());
        Assert.InRange(FolderBytes(Unzipped), 0, 32 * MiB);
    }

    [Fact]
    public void TheCapIsNeverMoreThanTheFreeDiskLessTheMarginKeptFree()
    {
        string zip = Write("small.zip", HostileFiles.ZipWithZeros(16 * MiB));
        long free = new DriveInfo(_dir).AvailableFreeSpace;

        // A margin that leaves about 1 MiB to spare: the 16 MiB archive is refused, naming the disk, not the limit.
        var error = Assert.Throws<InvalidDatasetException>(() =>
            DatasetLoader.Load(zip, new DatasetOptions { DiskSpaceKeptFree = free - MiB }, Unzipped));

        Assert.Contains("bytes of disk this worker can spare", error.Message);
        Assert.False(Directory.Exists(Unzipped));
    }

    [Fact]
    public void FilesAreNamedAsTheUserNamesTheArchiveAndAStaleUnpackedFolderIsReplaced()
    {
        string zip = Write("photos.zip", HostileFiles.ZipOf("a/1.png", "a/2.png", "b/1.png", "b/2.png"));
        // What an earlier archive left there is not part of this one.
        Directory.CreateDirectory(Path.Combine(Unzipped, "c"));
        File.WriteAllBytes(Path.Combine(Unzipped, "c", "old.png"), HostileFiles.Photo());

        var dataset = DatasetLoader.Load(zip, new DatasetOptions { ValidationFraction = 0.5 }, Unzipped, name: "blob:datasets/photos.zip");

        Assert.Equal(["a", "b"], dataset.Classes);
        Assert.All(dataset.Train.Concat(dataset.Validation), s =>
        {
            Assert.StartsWith("blob:datasets/photos.zip!/", s.Name, StringComparison.Ordinal);
            Assert.StartsWith(Unzipped, s.Path, StringComparison.Ordinal);
        });
    }

    /// <summary><paramref name="zip"/> with every central-directory entry declaring 16 bytes uncompressed.</summary>
    private static byte[] DeclaringSmallSizes(byte[] zip)
    {
        var bytes = zip.ToArray();
        for (int at = 0; at + 46 < bytes.Length; at++)
            if (bytes[at] == 'P' && bytes[at + 1] == 'K' && bytes[at + 2] == 1 && bytes[at + 3] == 2)
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + 24), 16);
        return bytes;
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static long FolderBytes(string folder) => !Directory.Exists(folder) ? 0
        : Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
}
