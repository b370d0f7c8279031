// Whole process against whole process, on the same train/val split of real photos: PyTorch running the blog's
// loop ("ConvNet as fixed feature extractor") from the ImageNet weights we ship, and `finetune train` with its
// defaults (crop and pad), both as README installs it (`dotnet publish`, compiled ahead of time) and as built beside
// this bench (JIT-compiled, what `dotnet run` runs). Prints wall times, their ratio and both sides' val top-1; asserts nothing.
// usage: SeedRecipeBench [--epochs 10] [--batch 32] [--set species|topics] [--skip-python]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Bench;
using FineTune.Core.Models;
using FineTune.Core.Weights;

const string Stamps = "/usr/share/tuxpaint/stamps";
const string Python = "/usr/bin/python3"; // Debian's python3-torch 1.13 / python3-torchvision 0.14
var sets = new Dictionary<string, (string Class, string Folder)[]>
{
    ["species"] = [("mammals", "animals/mammals"), ("birds", "animals/birds"), ("fruit", "food/fruit"),
        ("flowers", "plants/flowers"), ("vegetables", "food/vegetables")],
    ["topics"] = [("animals", "animals"), ("food", "food"), ("household", "household"), ("plants", "plants"), ("town", "town")],
};
int epochs = 10, batch = 32;
string set = "species";
bool skipPython = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--epochs" when i + 1 < args.Length: epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--batch" when i + 1 < args.Length: batch = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--set" when i + 1 < args.Length && sets.ContainsKey(args[i + 1]): set = args[++i]; break;
        case "--skip-python": skipPython = true; break;
        default:
            Console.Error.WriteLine($"usage: SeedRecipeBench [--epochs 10] [--batch 32] [--set {string.Join('|', sets.Keys)}] [--skip-python]");
            return 2;
    }
}
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}
string built = Path.Combine(AppContext.BaseDirectory, "finetune.dll");
string root = Directory.CreateTempSubdirectory("seed-recipe-").FullName;
try
{
    // README's install command, into this run's folder (not timed).
    string published = InstalledCommand.Publish(Path.Combine(root, "finetune"));

    // Per class: sorted photos, a seeded shuffle, 60 % train / 40 % val, as symlinks in an ImageFolder.
    string data = Path.Combine(root, "data");
    var random = new Random(0);
    int trainCount = 0, valCount = 0;
    foreach (var (name, folder) in sets[set])
    {
        string source = Path.Combine(Stamps, folder);
        var photos = Directory.EnumerateFiles(source, "*.png", SearchOption.AllDirectories)
            .Where(p => !p.Contains("/cartoon/", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        random.Shuffle(photos);
        int train = (int)Math.Round(photos.Length * 0.6);
        for (int j = 0; j < photos.Length; j++)
        {
            var target = Directory.CreateDirectory(Path.Combine(data, j < train ? "train" : "val", name)).FullName;
            File.Copy(photos[j], Path.Combine(target, Path.GetRelativePath(source, photos[j]).Replace('/', '_')));
        }
        trainCount += train;
        valCount += photos.Length - train;
    }

    var rows = new List<(string Side, string Resize, double Wall, double Top1, string Note)>();
    if (!skipPython)
    {
        // The same ImageNet weights as our default resnet18-cntk, folded to take torchvision's RGB normalisation.
        string weights = Path.Combine(root, "resnet18-cntk-rgb.pth");
        var state = ModelRegistry.Get(CntkResNet18.RgbFamilyName).BundledWeights!();
        StateDictFile.Write(state, weights, StateDictFormat.PyTorch);
        foreach (var tensor in state.Values) tensor.Dispose();
        foreach (var bn in new[] { "train", "eval" })
        {
            var (wall, stdout) = Run(Python, [Path.Combine(AppContext.BaseDirectory, "blog_recipe.py"), data, weights,
                Invariant(epochs), Invariant(batch), bn]);
            using var json = JsonDocument.Parse(stdout.Trim());
            var result = json.RootElement;
            string curve = string.Join(' ', result.GetProperty("epochs").EnumerateArray().Select(a => a.GetDouble().ToString("F2", CultureInfo.InvariantCulture)));
            rows.Add(($"PyTorch blog loop, BN {bn}", "crop", wall, result.GetProperty("last").GetDouble(),
                $"best {result.GetProperty("best").GetDouble():P1}; epochs {result.GetProperty("seconds").GetDouble():F1} s; val by epoch {curve}"));
        }
    }
    var clis = new[] { (published, "published"), (built, "built") };
    // A build converts the weights it ships once, into the user's weights cache (as torch.hub downloads once): done here
    // untimed, as the PyTorch side is handed its .pth.
    foreach (var (cli, how) in clis)
        Run("dotnet", [cli, "train", "--dataset", data, "--epochs", "1", "--work", Path.Combine(root, "warm-up-" + how)]);
    foreach (var (cli, how) in clis)
        foreach (var resize in new[] { "crop", "pad" })
        {
            string work = Path.Combine(root, $"work-{how}-{resize}");
            var (wall, stdout) = Run("dotnet", [cli, "train", "--dataset", data, "--epochs", Invariant(epochs),
            "--batch-size", Invariant(batch), "--work", work, "--resize", resize]);
            string report = Directory.EnumerateFiles(Path.Combine(work, "artifacts", "runs"), "evaluation.json", SearchOption.AllDirectories).Single();
            using var json = JsonDocument.Parse(File.ReadAllText(report));
            var result = json.RootElement;
            string time = stdout.Split('\n').Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).LastOrDefault(l => l.StartsWith("time:", StringComparison.Ordinal)) ?? "time: (none printed)";
            rows.Add(($"finetune train ({how})", resize, wall, result.GetProperty("top1Accuracy").GetDouble(),
                $"{result.GetProperty("split").GetString()} n={result.GetProperty("count").GetInt32()}; {time}"));
        }

    Console.WriteLine($"set {set}: {sets[set].Length} classes, {trainCount} train / {valCount} val photos; epochs {epochs}, batch {batch}; {Environment.ProcessorCount} cores");
    Console.WriteLine("all runs: whole processes, timed from outside (start → exit), one after another in this same invocation");
    Console.WriteLine($"{"side",-28} {"resize",-6} {"wall s",8} {"val top-1",10}");
    foreach (var row in rows)
        Console.WriteLine($"{row.Side,-28} {row.Resize,-6} {row.Wall,8:F1} {row.Top1,10:P1}\n    {row.Note}");
    foreach (var ours in rows.Where(r => r.Side.StartsWith("finetune", StringComparison.Ordinal)))
        foreach (var theirs in rows.Where(r => r.Side.StartsWith("PyTorch", StringComparison.Ordinal)))
            Console.WriteLine($"ratio {theirs.Side} / {ours.Side} {ours.Resize}: {theirs.Wall / ours.Wall:F2}x");
    return 0;
}
finally
{
    Directory.Delete(root, recursive: true);
}

static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

// Runs a process to its exit, stderr passed through; fails the bench when it fails.
static (double Seconds, string Stdout) Run(string file, string[] arguments)
{
    var clock = Stopwatch.StartNew();
    using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true })!;
    string stdout = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    double seconds = clock.Elapsed.TotalSeconds;
    if (process.ExitCode != 0)
        throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', arguments)} exited {process.ExitCode}:\n{stdout}");
    return (seconds, stdout);
}
