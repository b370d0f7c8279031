using System.Runtime.InteropServices;

namespace FineTune.Core.Runtime;

/// <summary>
/// What kind of file a path names, asked before it is opened: opening a FIFO blocks until a writer comes, and a
/// device (/dev/zero, /dev/urandom) never ends, so only regular files are read as inputs. .NET tells files from
/// folders only, so Linux's statx is asked (its buffer layout is the same on every architecture).
/// </summary>
public static partial class FileKinds
{
    private const int AtCurrentDirectory = -100;
    private const uint StatxType = 0x1;
    private const int StatxBufferBytes = 256;
    private const int ModeOffset = 28;
    private const int TypeMask = 0xF000;
    private const int RegularType = 0x8000;

    /// <summary>Whether <paramref name="path"/>, links followed, is a regular file (false when it does not exist).</summary>
    public static unsafe bool IsRegularFile(string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path);
        byte* buffer = stackalloc byte[StatxBufferBytes];
        if (statx(AtCurrentDirectory, path, 0, StatxType, buffer) != 0) return false;
        return (*(ushort*)(buffer + ModeOffset) & TypeMask) == RegularType;
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(int directory, string path, int flags, uint mask, byte* buffer);
}
