using System.Reflection;
using System.Runtime.InteropServices;
using FineTune.Build;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace FineTune.Build.Tests;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class WeakenElfVersionRequirementTests : IDisposable
{
    private const string LibStdCxx = "libstdc++.so.6";
    private const string Missing = "GLIBCXX_3.4.32";
    private readonly string _dir = Directory.CreateTempSubdirectory("elf-weaken-").FullName;

    private static string Pristine => typeof(WeakenElfVersionRequirementTests).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "PristineLibTorchSharp").Value!;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void PackageLibraryRequiresTheVersionStrongly()
    {
        var requirement = ElfVersionRequirements.ReadRequirements(File.ReadAllBytes(Pristine))
            .Single(r => r.Library == LibStdCxx && r.Version == Missing);
        Assert.False(requirement.IsWeak);
    }

    [Fact]
    public void WeakeningChangesOnlyThatRequirementsFlag()
    {
        var original = File.ReadAllBytes(Pristine);
        var patched = (byte[])original.Clone();

        Assert.Equal(1, ElfVersionRequirements.Weaken(patched, LibStdCxx, Missing));

        var differing = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToList();
        var target = ElfVersionRequirements.ReadRequirements(original).Single(r => r.Version == Missing);
        Assert.Equal([(int)target.FlagsOffset], differing);
        Assert.Equal(original[target.FlagsOffset] | ElfVersionRequirements.VerFlagWeak, patched[target.FlagsOffset]);

        var before = ElfVersionRequirements.ReadRequirements(original);
        var after = ElfVersionRequirements.ReadRequirements(patched);
        Assert.Equal(before.Select(r => (r.Library, r.Version)), after.Select(r => (r.Library, r.Version)));
        Assert.All(after.Where(r => r.Version != Missing), r => Assert.Equal(
            before.Single(b => b.Library == r.Library && b.Version == r.Version).Flags, r.Flags));
        Assert.True(after.Single(r => r.Version == Missing).IsWeak);
    }

    [Fact]
    public void WeakeningTwiceChangesNothingTheSecondTime()
    {
        var patched = File.ReadAllBytes(Pristine);
        ElfVersionRequirements.Weaken(patched, LibStdCxx, Missing);
        var once = (byte[])patched.Clone();

        Assert.Equal(0, ElfVersionRequirements.Weaken(patched, LibStdCxx, Missing));
        Assert.Equal(once, patched);
    }

    [Fact]
    public void WeakeningAFileKeepsModeAndTimestampAndNeverWritesThroughAHardLink()
    {
        var shared = Path.Combine(_dir, "cache.so");
        var output = Path.Combine(_dir, "output.so");
        File.Copy(Pristine, shared);
        Assert.Equal(0, link(shared, output));
        File.SetUnixFileMode(output, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var stamp = new DateTime(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(output, stamp);

        Assert.Equal(1, ElfVersionRequirements.WeakenFile(output, LibStdCxx, Missing));

        Assert.Equal(File.ReadAllBytes(Pristine), File.ReadAllBytes(shared));
        Assert.True(ElfVersionRequirements.ReadRequirements(File.ReadAllBytes(output)).Single(r => r.Version == Missing).IsWeak);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(output));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(output));
        Assert.Equal(0, ElfVersionRequirements.WeakenFile(output, LibStdCxx, Missing));
        Assert.Single(Directory.GetFiles(_dir, "output.so*"));
    }

    [Fact]
    public void TaskWeakensWhenNoSystemLibraryDefinesTheVersion()
    {
        var output = CopyOfPristine();

        Assert.True(NewTask(output, Missing, systemDirectories: [_dir]).Execute());

        Assert.True(ElfVersionRequirements.ReadRequirements(File.ReadAllBytes(output)).Single(r => r.Version == Missing).IsWeak);
    }

    [Fact]
    public void TaskLeavesTheFileAloneWhenTheSystemLibraryDefinesTheVersion()
    {
        // Every libstdc++ defines the requirement's oldest versions; a newer system is simulated by
        // asking to weaken one of those.
        var system = WeakenElfVersionRequirement.DefaultSystemLibraryDirectories
            .Select(d => Path.Combine(d, LibStdCxx)).First(File.Exists);
        var defined = ElfVersionRequirements.ReadDefinitions(File.ReadAllBytes(system));
        Assert.Contains("GLIBCXX_3.4.30", defined);
        var output = CopyOfPristine();

        Assert.True(NewTask(output, "GLIBCXX_3.4.30", systemDirectories: [Path.GetDirectoryName(system)!]).Execute());

        Assert.Equal(File.ReadAllBytes(Pristine), File.ReadAllBytes(output));
    }

    [Fact]
    public void NonElfInputIsRejected()
    {
        Assert.Throws<InvalidDataException>(() => ElfVersionRequirements.ReadRequirements("not an elf file at all, surely not"u8.ToArray()));
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string existing, string newPath);

    private string CopyOfPristine()
    {
        var path = Path.Combine(_dir, "libLibTorchSharp.so");
        File.Copy(Pristine, path);
        return path;
    }

    private static WeakenElfVersionRequirement NewTask(string file, string version, string[] systemDirectories) => new()
    {
        BuildEngine = new SilentBuildEngine(),
        Files = [new TaskItem(file)],
        Library = LibStdCxx,
        Version = version,
        SystemLibraryDirectories = systemDirectories,
    };

    private sealed class SilentBuildEngine : IBuildEngine
    {
        public bool ContinueOnError => false;
        public int LineNumberOfTaskNode => 0;
        public int ColumnNumberOfTaskNode => 0;
        public string ProjectFileOfTaskNode => "test";
        public bool BuildProjectFile(string projectFileName, string[] targetNames, System.Collections.IDictionary globalProperties, System.Collections.IDictionary targetOutputs) => false;
        public void LogCustomEvent(CustomBuildEventArgs e) { }
        public void LogErrorEvent(BuildErrorEventArgs e) => throw new InvalidOperationException(e.Message);
        public void LogMessageEvent(BuildMessageEventArgs e) { }
        public void LogWarningEvent(BuildWarningEventArgs e) { }
    }
}
