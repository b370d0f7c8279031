using System.IO.Compression;
using System.Text;

namespace FineTune.Core.Data;

/// <summary>
/// Unpacks a dataset .zip safely. Every entry name is checked before anything is written (escaping the folder, links,
/// duplicates, a file clashing with a folder, names too long or not text); the bytes written are counted against the
/// expansion cap (the smaller of <see cref="DatasetOptions.MaxExpandedBytes"/> and the free disk space less
/// <see cref="DatasetOptions.DiskSpaceKeptFree"/>), whatever the headers declare. Any problem is the archive's: an
/// <see cref="InvalidDatasetException"/> naming the entry, and nothing unpacked is left behind.
/// </summary>
internal static class ZipExtraction
{
    // Linux's limits: one name part (NAME_MAX) and a whole path (PATH_MAX), in bytes.
    private const int MaxNamePartBytes = 255;
    private const int MaxPathBytes = 4095;

    /// <summary>Unpacks <paramref name="zip"/> (which the user calls <paramref name="name"/>) into <paramref name="destination"/>; returns the folder the dataset is in.</summary>
    public static string Extract(string zip, string name, DatasetOptions options, string destination)
    {
        // A folder left by an earlier try may hold files this archive lacks.
        if (Directory.Exists(destination)) Directory.Delete(destination, recursive: true);
        Directory.CreateDirectory(destination);
        try
        {
            return ExtractArchive(zip, name, options, destination);
        }
        catch (InvalidDataException e)
        {
            Directory.Delete(destination, recursive: true);
            throw new InvalidDatasetException($"{name}: not a readable zip archive ({e.Message})");
        }
        catch
        {
            Directory.Delete(destination, recursive: true);
            throw;
        }
    }

    /// <summary>The most bytes an archive may expand to in <paramref name="destination"/>, and what sets it.</summary>
    internal static (long Bytes, string Limit) Cap(DatasetOptions options, string destination)
    {
        long free = new DriveInfo(Path.GetFullPath(destination)).AvailableFreeSpace - options.DiskSpaceKeptFree;
        return free < options.MaxExpandedBytes
            ? (Math.Max(0, free), $"the {Math.Max(0, free)} bytes of disk this worker can spare")
            : (options.MaxExpandedBytes, $"the {options.MaxExpandedBytes}-byte limit");
    }

    private static string ExtractArchive(string zip, string name, DatasetOptions options, string destination)
    {
        using var archive = ZipFile.OpenRead(zip);
        if (archive.Entries.Count > options.MaxZipEntries)
            throw new InvalidDatasetException($"{name}: {archive.Entries.Count} entries is over the {options.MaxZipEntries}-entry limit");
        // Names first: what is wrong with the archive itself is reported whatever the disk has free.
        string root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        var targets = CheckNames(archive, name, root);
        var (cap, limit) = Cap(options, destination);
        if (archive.Entries.Sum(e => e.Length) > cap)
            throw new InvalidDatasetException($"{name}: expands to more than {limit}");
        long written = 0;
        var buffer = new byte[1 << 16];
        foreach (var (entry, target) in targets)
        {
            try
            {
                if (entry.FullName.EndsWith('/')) { Directory.CreateDirectory(target); continue; }
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                using var input = entry.Open();
                using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write);
                for (int read; (read = input.Read(buffer)) > 0;)
                {
                    // Headers can lie about sizes: count what really comes out.
                    written += read;
                    if (written > cap)
                        throw new InvalidDatasetException($"{name}: expands to more than {limit} (at entry '{entry.FullName}')");
                    output.Write(buffer, 0, read);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The runtime's message names this worker's path: the entry is named instead.
                throw new InvalidDatasetException($"{name}: entry '{entry.FullName}' cannot be unpacked: {e.Message.Replace(target, "it", StringComparison.Ordinal)}");
            }
        }
        // A zip of one top folder holding the classes is unpacked into that folder; a lone split folder
        // (train/) is not one: it stays a split folder, so it fails as it does unzipped.
        var top = Directory.GetDirectories(destination);
        return top.Length == 1 && Directory.GetFiles(destination).Length == 0 && FolderSource.ClassFolders(top[0]).Count > 0
            && Directory.GetFiles(top[0]).Length == 0 && DatasetSplits.Of(Path.GetFileName(top[0])) is null ? top[0] : destination;
    }

    /// <summary>Every entry with the path it unpacks to, after checking every name: nothing is written for an archive with one bad name.</summary>
    private static List<(ZipArchiveEntry Entry, string Target)> CheckNames(ZipArchive archive, string name, string root)
    {
        var targets = new List<(ZipArchiveEntry, string)>();
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        var folders = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in archive.Entries)
        {
            string entryName = entry.FullName;
            InvalidDatasetException Bad(string why) => new($"{name}: entry '{Printable(entryName)}' {why}");
            if (entryName.Contains('\uFFFD'))
                throw Bad("has a name that is not UTF-8 text");
            if (entryName.Any(char.IsControl))
                throw Bad("has control characters in its name");
            string target = Path.GetFullPath(Path.Combine(root, entryName));
            if (!target.StartsWith(root, StringComparison.Ordinal) || Path.IsPathRooted(entryName))
                throw Bad("points outside the archive");
            if (entryName.Split('/').FirstOrDefault(part => Encoding.UTF8.GetByteCount(part) > MaxNamePartBytes) is { } longPart)
                throw Bad($"has a name part of {Encoding.UTF8.GetByteCount(longPart)} bytes, over the {MaxNamePartBytes} a file system allows");
            if (Encoding.UTF8.GetByteCount(target) > MaxPathBytes)
                throw Bad($"has a name too long to unpack ({Encoding.UTF8.GetByteCount(entryName)} bytes)");
            // Unix mode in the high bits: an archived link is refused, never unpacked as a file or followed.
            if ((entry.ExternalAttributes >> 16 & 0xF000) == 0xA000)
                throw Bad("is a symbolic link; a dataset holds image files");
            string relative = Path.TrimEndingDirectorySeparator(target[root.Length..]);
            bool isFolder = entryName.EndsWith('/');
            if (isFolder ? files.TryGetValue(relative, out var file) : folders.TryGetValue(relative, out file))
                throw Bad($"clashes with entry '{Printable(file)}': one name cannot be both a file and a folder");
            if (!isFolder && !files.TryAdd(relative, entryName))
                throw Bad("is in the archive twice");
            for (string? parent = isFolder ? relative : Path.GetDirectoryName(relative); !string.IsNullOrEmpty(parent); parent = Path.GetDirectoryName(parent))
            {
                if (files.TryGetValue(parent, out var clash))
                    throw Bad($"clashes with entry '{Printable(clash)}': one name cannot be both a file and a folder");
                folders.TryAdd(parent, entryName);
            }
            targets.Add((entry, target));
        }
        return targets;
    }

    /// <summary>A name as it may be shown: control characters escaped, long names cut.</summary>
    private static string Printable(string entryName)
    {
        var text = new StringBuilder();
        foreach (char c in entryName.Length > 120 ? entryName[..120] : entryName)
            text.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c);
        return entryName.Length > 120 ? text + $"… ({entryName.Length} characters)" : text.ToString();
    }
}
