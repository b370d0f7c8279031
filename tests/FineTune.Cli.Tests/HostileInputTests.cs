using System.Diagnostics;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace FineTune.Cli.Tests;

/// <summary>The weights cache the hostile runs share (the bundled weights are converted once), deleted at the end.</summary>
public sealed class HostileHome : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("hostile-home-").FullName;

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>
/// Hostile inputs through <c>finetune train</c>, as a user's shell runs it: each must end with exit code 2 and a
/// one-line reason naming the field or file, within a memory bound, without writing into the dataset or next to
/// it, and without reading the files placed outside it (each case that could reach them fails with the reason
/// that keeps them out; reading them would have trained instead).
/// </summary>
public sealed class HostileInputTests(HostileHome home, ITestOutputHelper log) : IClassFixture<HostileHome>, IDisposable
{
    /// <summary>
    /// Peak resident memory of a refused run: measured at 37–450 MB here (the runtime, the workflow host and, for
    /// weights, TorchSharp). Unchecked, the overlapping safetensors alone build 512 MB of tensors and the
    /// 1×40000 PNG resizes to 7.8 GB.
    /// </summary>
    private const long PeakBoundKb = 600 * 1024;

    private readonly string _root = Directory.CreateTempSubdirectory("hostile-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Data => Path.Combine(_root, "data");
    private string Outside => Path.Combine(_root, "outside");
    private string Secret => Path.Combine(Outside, "secret.png");

    public static TheoryData<string> Names => [.. Cases.Keys];

    /// <summary>Each case: what it sets up (returns the arguments after "train") and the words the reason must hold.</summary>
    private static readonly Dictionary<string, (Func<HostileInputTests, string[]> Arrange, string Reason)> Cases = new()
    {
        ["malformed job JSON"] = (t => t.JobText("{ \"model\": "), "job file:"),
        ["deeply nested job JSON"] = (t => t.JobText(new string('[', 10_000)), "job file:"),
        ["unknown field"] = (t => t.Job(new JsonObject { ["trainingg"] = new JsonObject() }), "trainingg"),
        ["unknown optimizer"] = (t => t.Job(new JsonObject { ["training"] = new JsonObject { ["optimizer"] = "adamw2" } }), "training.optimizer"),
        ["overlong job id"] = (t => t.Job(new JsonObject { ["jobId"] = new string('a', 100) }), "jobId"),
        ["unknown model"] = (t => t.Job(new JsonObject { ["model"] = "resnet19" }), "model"),
        ["batch of 4096 with backbone training"] = (t => t.Job(new JsonObject { ["freeze"] = "full", ["training"] = new JsonObject { ["batchSize"] = 4096 } }), "training.batchSize: must be 1-256"),
        ["a million steps per chunk"] = (t => t.Job(new JsonObject { ["training"] = new JsonObject { ["maxStepsPerChunk"] = 1_000_000 } }), "training.maxStepsPerChunk"),
        ["dataset that does not exist"] = (t => ["--dataset", Path.Combine(t._root, "nope")], "does not exist"),
        ["CSV row with an absolute path"] = (t => t.Csv($"{t.Secret},a"), "labels.csv:2: '/"),
        ["CSV row leaving its folder"] = (t => t.Csv("../outside/secret.png,a"), "labels.csv:2: '../outside/secret.png' leaves the manifest's folder"),
        ["CSV naming a file twice"] = (t => t.Csv("a/img0.png,a", "a/img0.png,b"), "labels.csv:3: 'a/img0.png' is already listed on line 2"),
        ["one class"] = (t => t.Folder(d => HostileFiles.ImageFolder(d, 3, "a")), "only one class (a)"),
        ["an empty class"] = (t => t.Folder(d => { HostileFiles.ImageFolder(d, 3, "a"); Directory.CreateDirectory(Path.Combine(d, "b")); }), "classes with no usable images: b"),
        ["empty dataset"] = (t => t.Folder(_ => { }), "the dataset is empty"),
        ["all files corrupt"] = (t => t.Folder(d => { foreach (var c in new[] { "a", "b" }) { Directory.CreateDirectory(Path.Combine(d, c)); File.WriteAllText(Path.Combine(d, c, "x.png"), "not a png"); } }),
            "2 of 2 files cannot be used"),
        ["1×40000 PNG"] = (t => t.Strict(d => File.WriteAllBytes(Path.Combine(d, "a", "tall.png"), HostileFiles.Png(1, 40_000))), "tall.png: 1×40000 is over the 100:1 aspect-ratio limit"),
        ["30000×30000 PNG header"] = (t => t.Strict(d => File.WriteAllBytes(Path.Combine(d, "a", "huge.png"), HostileFiles.Png(30_000, 30_000, headerOnly: true))), "huge.png: 30000×30000 is over the 50000000-pixel limit"),
        ["link to a file outside"] = (t => t.Strict(d => File.CreateSymbolicLink(Path.Combine(d, "a", "secret.png"), t.Secret)), "secret.png: is a link to a file outside the dataset"),
        ["zip bomb"] = (t => t.Zip(HostileFiles.ZipBomb()), "expands to more than the 4294967296-byte limit"),
        ["zip with a file and a folder of one name"] = (t => t.Zip(HostileFiles.ZipOf("a/1.png", "b/1.png", "a/x.png", "a/x.png/y.png")), "entry 'a/x.png/y.png' clashes with entry 'a/x.png'"),
        ["zip with a 300-character name"] = (t => t.Zip(HostileFiles.ZipOf("a/1.png", "b/1.png", "a/" + new string('n', 296) + ".png")), "has a name part of 300 bytes"),
        ["zip holding one entry twice"] = (t => t.Zip(HostileFiles.ZipOf("a/1.png", "b/1.png", "a/1.png")), "entry 'a/1.png' is in the archive twice"),
        ["zip with a name that is not UTF-8"] = (t => t.Zip(HostileFiles.ZipWithUndecodableName()), "has a name that is not UTF-8 text"),
        ["blob: naming another run's artifacts"] = (t => t.OtherRunsArtifact(), "dataset blob 'runs/victim/photos.zip' does not exist"),
        ["zip slip"] = (t => t.Zip(HostileFiles.ZipWith("../evil.png")), "entry '../evil.png' points outside the archive"),
        ["zip holding a link"] = (t => t.Zip(HostileFiles.ZipWith("a/link.png", symbolicLink: true)), "entry 'a/link.png' is a symbolic link"),
        ["zip that is not a zip"] = (t => t.Zip("PK\u0003\u0004 not really"u8.ToArray()), "not a readable zip archive"),
        ["overlapping safetensors"] = (t => t.Weights("overlap.safetensors", HostileFiles.OverlappingSafetensors()), "overlaps tensor"),
        ["safetensors past its data"] = (t => t.Weights("past.safetensors", HostileFiles.Safetensors("""{"w":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}""", 16)),
            "tensor 0 ends at byte 4096 of the data, which has 16"),
        ["truncated weights"] = (t => t.Weights("cut.pth", HostileFiles.TorchArchive(HostileFiles.PickleClaimingElements(4))[..100]), "not a readable"),
        ["pickle calling os.system"] = (t => t.Weights("evil.pth", HostileFiles.TorchArchive(HostileFiles.PickleCallingSystem())), "data.pkl calls a function other than torch's"),
        ["pickle claiming 1 GiB from 16 bytes"] = (t => t.Weights("huge.pth", HostileFiles.TorchArchive(HostileFiles.PickleClaimingElements(1 << 28))),
            "a storage claims 268435456 elements of 4 bytes, the archive holds 16 bytes"),
        ["TorchSharp weights claiming 1 GiB from 16 bytes"] = (t => t.Weights("huge.dat", HostileFiles.TorchSharpClaimingElements(1 << 28)),
            "not a PyTorch, safetensors or TorchSharp checkpoint (TorchSharp format: tensor 0 needs more bytes than the file has left)"),
        ["weights of another family"] = (t => t.Weights("other.safetensors", HostileFiles.Safetensors("""{"foo":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 16)), "does not fit resnet18"),
        ["/dev/zero as weights"] = (t => [.. t.Photos(), "--model", "resnet18", "--weights", "/dev/zero"], "'/dev/zero' is not a regular file"),
        ["a FIFO as weights"] = (t => [.. t.Photos(), "--model", "resnet18", "--weights", t.Fifo("pipe.pth")], "pipe.pth' is not a regular file"),
        ["/etc/passwd as weights"] = (t => [.. t.Photos(), "--model", "resnet18", "--weights", "/etc/passwd"], "not a PyTorch, safetensors or TorchSharp checkpoint"),
        ["weights file that does not exist"] = (t => [.. t.Photos(), "--model", "resnet18", "--weights", Path.Combine(t._root, "nope.pth")], "does not exist"),
        ["weights from a host not allowed"] = (t => [.. t.Photos(), "--model", "resnet18", "--weights", "https://evil.example/resnet18-12345678.pth"], "host 'evil.example' is not in the allowed hosts"),
    };

    [Theory]
    [MemberData(nameof(Names))]
    public void HostileInputIsExitCode2WithItsReasonInBoundedMemory(string name)
    {
        Directory.CreateDirectory(Data);
        Directory.CreateDirectory(Outside);
        File.Copy(TuxPaintStamps.Images("plants", 1)[0], Secret);
        var (arrange, reason) = Cases[name];
        string[] arguments = ["train", .. arrange(this), "--epochs", "1", "--work", Path.Combine(_root, "work")];
        var before = Snapshot(Data) + Snapshot(Outside);

        var (exit, output, error, peakKb) = RunMeasured(arguments);

        log.WriteLine($"{name}: exit {exit}, peak {peakKb / 1024} MB: {error.Trim()}");
        Assert.True(exit == ExitCodes.BadInput, $"{name}: exit {exit}\n{error}\n{output}");
        var line = error.Split('\n').FirstOrDefault(l => l.Contains(reason, StringComparison.Ordinal));
        Assert.True(line is not null, $"{name}: no line says '{reason}':\n{error}");
        Assert.DoesNotContain("   at ", error);
        // Nothing of a file read as input is ever quoted (/etc/passwd's first line).
        Assert.DoesNotContain("root:x:0", error);
        Assert.True(peakKb < PeakBoundKb, $"{name}: peak {peakKb} KB");
        Assert.Equal(before, Snapshot(Data) + Snapshot(Outside));
    }

    private (int Exit, string Output, string Error, long PeakKb) RunMeasured(string[] arguments)
    {
        // Python's getrusage(RUSAGE_CHILDREN) gives the child's exact peak RSS, however briefly it was reached.
        string peakFile = Path.Combine(_root, "peak");
        const string measure = "import resource,subprocess,sys; r=subprocess.run(sys.argv[2:]); "
            + "open(sys.argv[1],'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(r.returncode)";
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _root };
        foreach (var argument in (string[])["-c", measure, peakFile, "dotnet", Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments])
            start.ArgumentList.Add(argument);
        start.Environment["HOME"] = home.Path;
        start.Environment["XDG_CACHE_HOME"] = Path.Combine(home.Path, ".cache");
        start.Environment["TMPDIR"] = Directory.CreateDirectory(Path.Combine(_root, "tmp")).FullName;
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException(string.Join(' ', arguments));
        }
        return (process.ExitCode, output, error.Result, long.Parse(File.ReadAllText(peakFile), System.Globalization.CultureInfo.InvariantCulture));
    }

    private static string Snapshot(string folder) => string.Join("\n", Directory.EnumerateFileSystemEntries(folder, "*", SearchOption.AllDirectories)
        .Order(StringComparer.Ordinal).Select(p => $"{p} {(File.Exists(p) ? new FileInfo(p).Length : -1)} {File.GetLastWriteTimeUtc(p):O}"));

    private string[] JobText(string text)
    {
        string path = Path.Combine(_root, "job.json");
        File.WriteAllText(path, text);
        return [path];
    }

    private string[] Job(JsonObject job)
    {
        job["dataset"] ??= new JsonObject { ["location"] = HostileFiles.ImageFolder(Data, 3, "a", "b") };
        return JobText(job.ToJsonString());
    }

    private string[] Csv(params string[] rows)
    {
        HostileFiles.ImageFolder(Data, 3, "a", "b");
        string csv = Path.Combine(Data, "labels.csv");
        File.WriteAllLines(csv, ["path,label", .. rows, "a/img1.png,a", "b/img1.png,b"]);
        return ["--dataset", csv];
    }

    private string[] Folder(Action<string> fill)
    {
        fill(Data);
        return ["--dataset", Data];
    }

    /// <summary>Two good classes plus what <paramref name="add"/> puts in, with no bad file tolerated, so the bad one is named.</summary>
    private string[] Strict(Action<string> add)
    {
        HostileFiles.ImageFolder(Data, 3, "a", "b");
        add(Data);
        return JobText(new JsonObject { ["dataset"] = new JsonObject { ["location"] = Data, ["maxBadFraction"] = 0 } }.ToJsonString());
    }

    private string[] Zip(byte[] zip)
    {
        string path = Path.Combine(Data, "photos.zip");
        File.WriteAllBytes(path, zip);
        return ["--dataset", path];
    }

    /// <summary>A FIFO: whoever opens it for reading waits for a writer that never comes.</summary>
    private string Fifo(string name)
    {
        string path = Path.Combine(_root, name);
        using var mkfifo = Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        return path;
    }

    /// <summary>A dataset another run keeps among the artifacts, named as a <c>blob:</c>: uploads are a store of their own.</summary>
    private string[] OtherRunsArtifact()
    {
        string artifact = Path.Combine(_root, "work", "artifacts", "runs", "victim", "photos.zip");
        Directory.CreateDirectory(Path.GetDirectoryName(artifact)!);
        File.WriteAllBytes(artifact, HostileFiles.ZipOf("a/1.png", "a/2.png", "b/1.png", "b/2.png"));
        return ["--dataset", "blob:runs/victim/photos.zip"];
    }

    private string[] Photos() => ["--dataset", HostileFiles.ImageFolder(Data, 3, "a", "b")];

    private string[] Weights(string fileName, byte[] weights)
    {
        string path = Path.Combine(_root, fileName);
        File.WriteAllBytes(path, weights);
        return [.. Photos(), "--model", "resnet18", "--weights", path];
    }
}
