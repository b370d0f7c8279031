using System.Runtime.InteropServices;

namespace FineTune.Core.Data;

/// <summary>
/// Keeps a dataset's files inside the dataset: a manifest row names a file under the manifest's folder, and a
/// file reached through a link must end up under the dataset's root, so no input makes a run read (or report
/// on) other files of the machine.
/// </summary>
public static partial class DatasetPaths
{
    /// <summary>
    /// The full path of a manifest row's <paramref name="relative"/> path under <paramref name="folder"/>; null
    /// with the reason when it is absolute or leaves the folder.
    /// </summary>
    public static (string? Path, string? Problem) UnderFolder(string folder, string relative)
    {
        if (Path.IsPathRooted(relative) || relative.Contains('\\') || relative.Contains('\0'))
            return (null, $"'{relative}' is not a path relative to the manifest's folder");
        string root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)) + Path.DirectorySeparatorChar;
        string full = Path.GetFullPath(Path.Combine(root, relative));
        return full.StartsWith(root, StringComparison.Ordinal)
            ? (full, null)
            : (null, $"'{relative}' leaves the manifest's folder");
    }

    /// <summary>Whether <paramref name="path"/>, every link on the way resolved, is under <paramref name="root"/> (also resolved).</summary>
    public static bool ResolvesInside(string root, string path)
    {
        string? realRoot = RealPath(root), realPath = RealPath(path);
        if (realRoot is null || realPath is null) return false;
        return realPath.StartsWith(Path.TrimEndingDirectorySeparator(realRoot) + Path.DirectorySeparatorChar, StringComparison.Ordinal);
    }

    /// <summary>The path with every symbolic link resolved (POSIX realpath); null when it does not exist.</summary>
    public static string? RealPath(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return Path.GetFullPath(path);
        nint resolved = realpath(path, 0);
        if (resolved == 0) return null;
        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            free(resolved);
        }
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint realpath(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void free(nint pointer);
}
