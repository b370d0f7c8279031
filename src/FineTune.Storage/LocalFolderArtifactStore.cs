using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FineTune.Storage;

/// <summary>Artifacts as files under a folder: the store of the <c>finetune</c> command when no Azure is used.</summary>
public sealed partial class LocalFolderArtifactStore : IArtifactStore
{
    private const string TempPrefix = ".incoming-";
    private readonly string _root;

    public LocalFolderArtifactStore(string root)
    {
        _root = Path.GetFullPath(root);
        Directory.CreateDirectory(_root);
    }

    public string Location => _root;

    public async Task WriteAsync(string name, Stream content, WriteMode mode, CancellationToken cancellationToken)
    {
        string path = PathOf(name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (mode == WriteMode.CreateNew && File.Exists(path)) throw new ArtifactExistsException(name, Location);
        // Written beside the target, then renamed: readers never see a partial file.
        string temp = Path.Combine(Path.GetDirectoryName(path)!, TempPrefix + Guid.NewGuid().ToString("N"));
        try
        {
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                await content.CopyToAsync(file, cancellationToken);
                await file.FlushAsync(cancellationToken);
                file.Flush(flushToDisk: true);
            }
            if (mode == WriteMode.Overwrite) File.Move(temp, path, overwrite: true);
            else if (!TryMoveToNewName(temp, path)) throw new ArtifactExistsException(name, Location);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    public Task<Stream> OpenReadAsync(string name, CancellationToken cancellationToken)
    {
        string path = PathOf(name);
        try
        {
            return Task.FromResult<Stream>(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ArtifactNotFoundException(name, Location);
        }
    }

    public Task<bool> ExistsAsync(string name, CancellationToken cancellationToken) => Task.FromResult(File.Exists(PathOf(name)));

    public async IAsyncEnumerable<ArtifactInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        prefix = ArtifactNames.RequirePrefix(prefix);
        int slash = prefix.LastIndexOf('/');
        string start = slash < 0 ? _root : Path.Combine(_root, prefix[..slash]);
        if (!Directory.Exists(start)) yield break;
        // Only the entries the prefix's last, partial segment names are walked: "runs/sweep-t" does not walk every run.
        string partial = prefix[(slash + 1)..];
        var names = Directory.EnumerateFileSystemEntries(start)
            .Where(entry => Path.GetFileName(entry).StartsWith(partial, StringComparison.Ordinal))
            .SelectMany(entry => File.Exists(entry) ? [entry] : FilesUnder(entry))
            .Where(f => !Path.GetFileName(f).StartsWith(TempPrefix, StringComparison.Ordinal))
            .Select(f => Path.GetRelativePath(_root, f).Replace(Path.DirectorySeparatorChar, '/'))
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);
        foreach (var name in names)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var info = new FileInfo(Path.Combine(_root, name));
            if (info.Exists) yield return new ArtifactInfo(name, info.Length, info.LastWriteTimeUtc);
        }
        await Task.CompletedTask;
    }

    /// <summary>A folder's files at any depth; none when it was deleted meanwhile (a pruned checkpoint, a purged run).</summary>
    private static List<string> FilesUnder(string folder)
    {
        try
        {
            return [.. Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)];
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
    }

    public Task<bool> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        string path = PathOf(name);
        if (!File.Exists(path)) return Task.FromResult(false);
        File.Delete(path);
        // Folders exist only to hold artifacts: drop the ones this left empty, as blob prefixes vanish.
        for (var folder = Path.GetDirectoryName(path); folder is not null && folder.Length > _root.Length; folder = Path.GetDirectoryName(folder))
        {
            if (Directory.EnumerateFileSystemEntries(folder).Any()) break;
            Directory.Delete(folder);
        }
        return Task.FromResult(true);
    }

    /// <summary>
    /// Gives <paramref name="temp"/> the name <paramref name="path"/> unless that name exists, as one step: on Unix,
    /// <see cref="File.Move(string, string, bool)"/> checks the name and then renames, so of two concurrent writers
    /// both could win and the first one's file be silently replaced. A hard link fails atomically when the name exists.
    /// </summary>
    private static bool TryMoveToNewName(string temp, string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            if (link(temp, path) == 0) return true;
            if (File.Exists(path)) return false;
            // A file system without hard links (FAT, some network mounts): only the checked rename is left.
        }
        try
        {
            File.Move(temp, path, overwrite: false);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string existing, string created);

    private string PathOf(string name) => Path.Combine(_root, ArtifactNames.Require(name));
}
