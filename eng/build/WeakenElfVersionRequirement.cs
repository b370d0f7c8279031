#nullable enable
// Compiled twice: by MSBuild's RoslynCodeTaskFactory (netstandard2.0 API surface, so no spans or newer
// File APIs) from eng/build/TorchSharp.targets, and into tests/FineTune.Build.Tests.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace FineTune.Build
{
    /// <summary>
    /// Reads and edits the symbol-version sections of a 64-bit little-endian ELF shared object.
    /// </summary>
    public static class ElfVersionRequirements
    {
        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        /// <summary>VER_FLG_WEAK: a missing version is reported as a warning by ld.so instead of failing the load.</summary>
        public const ushort VerFlagWeak = 0x2;

        /// <summary>One entry of <c>.gnu.version_r</c>: a version the object needs from a library.</summary>
        public sealed class Requirement
        {
            public Requirement(string library, string version, ushort flags, long flagsOffset)
            {
                Library = library;
                Version = version;
                Flags = flags;
                FlagsOffset = flagsOffset;
            }

            public string Library { get; }
            public string Version { get; }
            public ushort Flags { get; }
            /// <summary>File offset of the entry's vna_flags field.</summary>
            public long FlagsOffset { get; }
            public bool IsWeak => (Flags & VerFlagWeak) != 0;
        }

        public static IReadOnlyList<Requirement> ReadRequirements(byte[] elf)
        {
            var result = new List<Requirement>();
            foreach (var section in Sections(elf))
            {
                if (section.Type != ShtGnuVerneed) continue;
                var strings = SectionAt(elf, section.Link);
                long entry = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    ushort auxCount = U16(elf, entry + 2);
                    string library = CString(elf, strings.Offset + U32(elf, entry + 4));
                    long aux = entry + U32(elf, entry + 8);
                    for (int j = 0; j < auxCount; j++)
                    {
                        ushort flags = U16(elf, aux + 4);
                        string version = CString(elf, strings.Offset + U32(elf, aux + 8));
                        result.Add(new Requirement(library, version, flags, aux + 4));
                        aux += U32(elf, aux + 12);
                    }
                    entry += U32(elf, entry + 12);
                }
            }
            return result;
        }

        /// <summary>The version names a library defines in <c>.gnu.version_d</c> (what it can satisfy).</summary>
        public static IReadOnlyList<string> ReadDefinitions(byte[] elf)
        {
            var result = new List<string>();
            foreach (var section in Sections(elf))
            {
                if (section.Type != ShtGnuVerdef) continue;
                var strings = SectionAt(elf, section.Link);
                long entry = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    long aux = entry + U32(elf, entry + 12);
                    result.Add(CString(elf, strings.Offset + U32(elf, aux)));
                    entry += U32(elf, entry + 16);
                }
            }
            return result;
        }

        /// <summary>
        /// Marks the requirement of <paramref name="version"/> from <paramref name="library"/> weak, in place in
        /// <paramref name="elf"/>. Returns how many entries changed: 0 when absent or already weak.
        /// </summary>
        public static int Weaken(byte[] elf, string library, string version)
        {
            int changed = 0;
            foreach (var requirement in ReadRequirements(elf))
            {
                if (requirement.Library != library || requirement.Version != version || requirement.IsWeak) continue;
                ushort flags = (ushort)(requirement.Flags | VerFlagWeak);
                elf[requirement.FlagsOffset] = (byte)flags;
                elf[requirement.FlagsOffset + 1] = (byte)(flags >> 8);
                changed++;
            }
            return changed;
        }

        /// <summary>
        /// Weakens the requirement in the file at <paramref name="path"/>. The edit goes into a copy that then
        /// replaces the file by rename, so a hard link to a shared copy (the NuGet cache) is never written
        /// through; mode and timestamp are kept so MSBuild's incremental copy still sees the file as current.
        /// </summary>
        public static int WeakenFile(string path, string library, string version)
        {
            byte[] elf = File.ReadAllBytes(path);
            var original = (byte[])elf.Clone();
            int changed = Weaken(elf, library, version);
            if (changed == 0) return 0;
            var lastWrite = File.GetLastWriteTimeUtc(path);
            string temp = path + ".weakening";
            File.Copy(path, temp, overwrite: true);
            using (var stream = new FileStream(temp, FileMode.Open, FileAccess.Write))
            {
                for (int i = 0; i < elf.Length; i++)
                {
                    if (elf[i] == original[i]) continue;
                    stream.Position = i;
                    stream.WriteByte(elf[i]);
                }
            }
            File.SetLastWriteTimeUtc(temp, lastWrite);
            File.Replace(temp, path, null);
            return changed;
        }

        private struct Section
        {
            public uint Type;
            public long Offset;
            public uint Link;
            public uint Info;
        }

        private static IEnumerable<Section> Sections(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("only 64-bit little-endian ELF is supported");
            long tableOffset = (long)U64(elf, 0x28);
            ushort entrySize = U16(elf, 0x3a);
            ushort count = U16(elf, 0x3c);
            for (int i = 0; i < count; i++)
                yield return ReadSection(elf, tableOffset + (long)i * entrySize);
        }

        private static Section SectionAt(byte[] elf, uint index) =>
            ReadSection(elf, (long)U64(elf, 0x28) + (long)index * U16(elf, 0x3a));

        private static Section ReadSection(byte[] elf, long header) => new Section
        {
            Type = U32(elf, header + 4),
            Offset = (long)U64(elf, header + 0x18),
            Link = U32(elf, header + 0x28),
            Info = U32(elf, header + 0x2c),
        };

        private static ushort U16(byte[] b, long at) => (ushort)(b[at] | b[at + 1] << 8);
        private static uint U32(byte[] b, long at) => (uint)(U16(b, at) | U16(b, at + 2) << 16);
        private static ulong U64(byte[] b, long at) => U32(b, at) | (ulong)U32(b, at + 4) << 32;

        private static string CString(byte[] b, long at)
        {
            long end = at;
            while (b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)at, (int)(end - at));
        }
    }

    /// <summary>
    /// Makes the copies of a native library in a build output loadable where the system library lacks a symbol
    /// version that the copy requires but never binds (TorchSharp 0.107's GLIBCXX_3.4.32 on Debian 12).
    /// </summary>
    public sealed class WeakenElfVersionRequirement : Microsoft.Build.Utilities.Task
    {
        [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
        /// <summary>The needed library's soname, e.g. libstdc++.so.6.</summary>
        [Required] public string Library { get; set; } = "";
        [Required] public string Version { get; set; } = "";
        /// <summary>Where the dynamic loader finds the system copy of <see cref="Library"/>; the first holding it is read.</summary>
        public string[] SystemLibraryDirectories { get; set; } = DefaultSystemLibraryDirectories;

        public static readonly string[] DefaultSystemLibraryDirectories =
        {
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
        };

        public override bool Execute()
        {
            string? system = SystemLibraryDirectories.Select(d => Path.Combine(d, Library)).FirstOrDefault(File.Exists);
            if (system != null && ElfVersionRequirements.ReadDefinitions(File.ReadAllBytes(system)).Contains(Version))
            {
                Log.LogMessage(MessageImportance.Low, "{0} defines {1}: nothing to weaken", system, Version);
                return true;
            }
            foreach (var file in Files)
            {
                int changed = ElfVersionRequirements.WeakenFile(file.ItemSpec, Library, Version);
                if (changed > 0)
                    Log.LogMessage(MessageImportance.Normal, "Weakened {0} {1} requirement in {2}", Library, Version, file.ItemSpec);
            }
            return !Log.HasLoggedErrors;
        }
    }
}
