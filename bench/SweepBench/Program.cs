// A 24-trial head sweep against one run of the same epochs, whole `finetune` processes on the same real photos:
// prints both wall times, their ratio (the sweep should cost at most 2 runs: the trials share one backbone pass),
// and the held-out test accuracy of the default run and of the sweep's best trial. Asserts nothing.
// usage: SweepBench [photos-per-class=30] [epochs=10] [trials=24] [parallelism=4]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

const string Stamps = "/usr/share/tuxpaint/stamps";
string[] categories = ["animals", "food", "household", "plants", "town"];
int perClass = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 30;
int epochs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10;
int trials = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 24;
int parallelism = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 4;
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}
string finetune = Path.Combine(AppContext.BaseDirectory, "finetune.dll");
string folder = Directory.CreateTempSubdirectory("sweep-bench-").FullName;
try
{
    string photos = Path.Combine(folder, "photos");
    foreach (var category in categories)
    {
        var target = Directory.CreateDirectory(Path.Combine(photos, category)).FullName;
        var images = Directory.EnumerateFiles(Path.Combine(Stamps, category), "*.png", SearchOption.AllDirectories)
            .Where(p => !p.Contains("/cartoon/", StringComparison.Ordinal)).Order(StringComparer.Ordinal).Take(perClass);
        foreach (var image in images)
            // Copies: a dataset never follows a link out of its folder.
            File.Copy(image, Path.Combine(target, Path.GetRelativePath(Path.Combine(Stamps, category), image).Replace('/', '_')));
    }
    // The same data, split, epochs and batch for both; the sweep varies the head's training only.
    object Job(string id, object? sweep) => new
    {
        jobId = id,
        dataset = new { location = photos, testFraction = 0.2 },
        training = new { epochs, batchSize = 8 },
        sweep,
    };
    var sweepSection = new
    {
        method = "random",
        maxTrials = trials,
        parallelism,
        seed = 1,
        metric = "val_accuracy",
        parameters = new Dictionary<string, object>
        {
            ["training.learningRate"] = new { min = 0.0001, max = 0.03, log = true },
            ["training.momentum"] = new[] { 0.8, 0.9, 0.95 },
            ["training.weightDecay"] = new { min = 0, max = 0.001 },
            ["training.labelSmoothing"] = new[] { 0, 0.1 },
        },
    };
    File.WriteAllText(Path.Combine(folder, "single.json"), JsonSerializer.Serialize(Job("bench-single", null)));
    File.WriteAllText(Path.Combine(folder, "sweep.json"), JsonSerializer.Serialize(Job("bench-sweep", sweepSection)));

    // One untimed run first, so that neither side pays for first-use work (the bundled weights' conversion, disk caches).
    Run(["train", "single.json", "--work", "warm"]);
    double single = Run(["train", "single.json", "--work", "single"]);
    double sweep = Run(["sweep", "sweep.json", "--work", "sweep"]);

    double Accuracy(string work, string run) => JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, work, "artifacts", "runs", run, "reports", "evaluation.json")))
        .RootElement.GetProperty("top1Accuracy").GetDouble();
    string best = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "sweep", "artifacts", "runs", "bench-sweep", "reports", "sweep.json")))
        .RootElement.GetProperty("best").GetString()!;
    Console.WriteLine($"{categories.Length} classes, {perClass} photos each (20% test), {epochs} epochs, batch 8; {trials} random trials, {parallelism} at once; {Environment.ProcessorCount} cores");
    Console.WriteLine($"finetune train (defaults):  {single,7:F1} s   test top-1 {Accuracy("single", "bench-single"):P1}");
    Console.WriteLine($"finetune sweep ({trials} trials): {sweep,7:F1} s   test top-1 {Accuracy("sweep", best):P1} (best trial {best})");
    Console.WriteLine($"ratio sweep / single run: {sweep / single:F2}x");
    return 0;

    double Run(string[] arguments)
    {
        var clock = Stopwatch.StartNew();
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = folder, RedirectStandardOutput = true };
        foreach (var argument in (string[])[finetune, .. arguments]) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"finetune {string.Join(' ', arguments)} failed: {output}");
        return clock.Elapsed.TotalSeconds;
    }
}
finally
{
    Directory.Delete(folder, recursive: true);
}
