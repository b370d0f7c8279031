// Fine-tuning past the head (issue 25): whole process against whole process on the same train/val split of real
// photos. PyTorch trains resnet18's last N stages and head on images every epoch (unfreeze_loop.py); `finetune train
// --freeze last:N` trains them on the frozen stages' output, computed once (the boundary cache), and, with
// "featureCache": false, on images like PyTorch. `full` trains every stage (no boundary to cache at); `--augment` has both
// sides train on RandomResizedCrop(224) and a horizontal flip: training then runs on images, with the validation split's
// frozen output cached ("val cached", our default) and without any cache. Prints wall times, ratios beside
// their goals and val top-1; asserts nothing.
// Ours runs as README installs it (published ahead of time), as SeedRecipeBench's "published" line.
// usage: UnfreezeBench [--epochs 3] [--batch 16] [--stages 1,2,full] [--augment] [--large]   (--large: the photos re-encoded as 3000 × 2250 JPEGs)
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Bench;
using FineTune.Core.Models;
using FineTune.Core.Weights;

const string Stamps = "/usr/share/tuxpaint/stamps";
const string Python = "/usr/bin/python3"; // Debian's python3-torch 1.13 / python3-torchvision 0.14
const double CachedGoal = 1.5, UncachedGoal = 1.1;
(string Class, string Folder)[] classes = [("mammals", "animals/mammals"), ("birds", "animals/birds"), ("fruit", "food/fruit"),
    ("flowers", "plants/flowers"), ("vegetables", "food/vegetables")];
int epochs = 3, batch = 16;
string[] stageCounts = ["1", "2"];
bool large = false, augment = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--epochs" when i + 1 < args.Length: epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--batch" when i + 1 < args.Length: batch = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--stages" when i + 1 < args.Length && args[i + 1].Split(',').All(s => s == "full" || int.TryParse(s, out int n) && n is >= 1 and <= 4):
            stageCounts = args[++i].Split(','); break;
        case "--augment": augment = true; break;
        case "--large": large = true; break;
        default:
            Console.Error.WriteLine("usage: UnfreezeBench [--epochs 3] [--batch 16] [--stages 1,2,full] [--augment] [--large]");
            return 2;
    }
}
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}
string root = Directory.CreateTempSubdirectory("unfreeze-").FullName;
try
{
    string cli = InstalledCommand.Publish(Path.Combine(root, "finetune"));
    // Per class: sorted photos, a seeded shuffle, 60 % train / 40 % val.
    string data = Path.Combine(root, "data");
    var random = new Random(0);
    int trainCount = 0, valCount = 0;
    foreach (var (name, folder) in classes)
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
    if (large) Run(Python, [Path.Combine(AppContext.BaseDirectory, "large_photos.py"), data]);
    // The ImageNet weights we ship, folded to torchvision's RGB normalisation, for PyTorch (not timed).
    string weights = Path.Combine(root, "resnet18-cntk-rgb.pth");
    var state = ModelRegistry.Get(CntkResNet18.RgbFamilyName).BundledWeights!();
    StateDictFile.Write(state, weights, StateDictFormat.PyTorch);
    foreach (var tensor in state.Values) tensor.Dispose();
    // A build converts the weights it ships once into the user's cache: done here untimed, as PyTorch is handed its .pth.
    Run("dotnet", [cli, "train", "--dataset", data, "--epochs", "1", "--work", Path.Combine(root, "warm-up")]);
    // torchvision's RandomResizedCrop(224) (scale 0.08–1, ratio 3/4–4/3) and RandomHorizontalFlip(), nothing else.
    string augmentation = augment ? """, "augmentation": { "randomResizedCrop": true, "hflip": 0.5, "colorJitter": 0 }""" : "";
    string cachedJob = Path.Combine(root, "cached.json"), uncachedJob = Path.Combine(root, "uncached.json");
    File.WriteAllText(cachedJob, $$"""{ "training": { "featureCache": true{{augmentation}} } }""");
    File.WriteAllText(uncachedJob, $$"""{ "training": { "featureCache": false{{augmentation}} } }""");

    Console.WriteLine($"{classes.Length} classes, {trainCount} train / {valCount} val photos{(large ? " as 3000 × 2250 JPEGs" : "")}; epochs {epochs}, batch {batch}, resize crop, {(augment ? "RandomResizedCrop + flip" : "no augmentation")}; {Environment.ProcessorCount} cores");
    Console.WriteLine("whole processes, timed from outside (start → exit), one after another in this invocation");
    foreach (string stages in stageCounts)
    {
        string freeze = stages == "full" ? "full" : $"last:{stages}";
        var (pyWall, pyOut) = Run(Python, [Path.Combine(AppContext.BaseDirectory, "unfreeze_loop.py"), data, weights, Invariant(epochs), Invariant(batch), stages,
            augment ? "1" : "0"]);
        using var pyJson = JsonDocument.Parse(pyOut.Trim());
        double pyTop1 = pyJson.RootElement.GetProperty("last").GetDouble();
        Console.WriteLine($"freeze {freeze}");
        Console.WriteLine($"  PyTorch 1.13 loop            {pyWall,7:F1} s  val top-1 {pyTop1:P1}");
        // Every stage training: there is no frozen output to cache. Images augmented every epoch: only the scored images'
        // (the validation split's), and training runs on images, whose goal it keeps.
        if (stages != "full")
        {
            var (cachedWall, cachedTop1, cachedTime) = Ours(freeze, "cached", [cachedJob]);
            Console.WriteLine($"  finetune train ({(augment ? "val cached" : "cache")}){(augment ? "  " : "       ")}{cachedWall,7:F1} s  val top-1 {cachedTop1:P1}   {pyWall / cachedWall:F2}x PyTorch (goal >= {(augment ? UncachedGoal : CachedGoal)}x)\n      {cachedTime}");
        }
        var (uncachedWall, uncachedTop1, uncachedTime) = Ours(freeze, "uncached", [uncachedJob]);
        Console.WriteLine($"  finetune train (no cache)    {uncachedWall,7:F1} s  val top-1 {uncachedTop1:P1}   {pyWall / uncachedWall:F2}x PyTorch (goal >= {UncachedGoal}x)\n      {uncachedTime}");
    }
    return 0;

    (double Wall, double Top1, string Time) Ours(string freeze, string how, string[] job)
    {
        string work = Path.Combine(root, $"work-{freeze.Replace(':', '-')}-{how}");
        var (wall, stdout) = Run("dotnet", [cli, "train", .. job, "--dataset", data, "--epochs", Invariant(epochs), "--batch-size", Invariant(batch),
            "--freeze", freeze, "--resize", "crop", "--work", work]);
        string report = Directory.EnumerateFiles(Path.Combine(work, "artifacts", "runs"), "evaluation.json", SearchOption.AllDirectories).Single();
        using var json = JsonDocument.Parse(File.ReadAllText(report));
        // The run's own last line: the seconds each stage took.
        string time = stdout.Split('\n').Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).LastOrDefault(l => l.StartsWith("time:", StringComparison.Ordinal)) ?? "time: (none printed)";
        return (wall, json.RootElement.GetProperty("top1Accuracy").GetDouble(), time);
    }
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
