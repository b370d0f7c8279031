// Does the default head recipe need a sweep? On three labelled image sets that neither the tests nor the demo use
// (prepare.py), each split train / val / test: the blog's 10-epoch recipe in PyTorch 1.13 (blog_loop.py, the best
// validation epoch kept), `finetune train` with no options, and the best trial (by validation accuracy) of a
// 24-trial `finetune sweep` grid (learning rate × weight decay × label smoothing, 10 epochs each) — all from the same
// ImageNet weights, scored on the held-out test split. The defaults publish the head's convex optimum when it validates
// better than the best SGD epoch; beside them, that optimum as PyTorch finds it (linear_probe.py: its own L-BFGS on the
// run's cached features, the same weight decays and rule), an independent check. Prints each set's test accuracies and
// the two goals (≥ the blog loop; ≥ the sweep's best − 1 point) beside them. Asserts nothing.
// usage: DefaultRecipeBench [fashion-per-class=60] [sets=fashion,things,symbols]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Core.Models;
using FineTune.Core.Weights;

const string Python = "/usr/bin/python3"; // Debian's python3-torch 1.13 / python3-torchvision 0.14
int perClass = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 60;
string[] sets = args.Length > 1 ? args[1].Split(',') : ["fashion", "things", "symbols"];
if (!Directory.Exists("/usr/share/tuxpaint/stamps") || !Directory.Exists("/usr/share/datasets/fashion-mnist"))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default dataset-fashion-mnist");
    return 2;
}
string finetune = Path.Combine(AppContext.BaseDirectory, "finetune.dll");
string root = Directory.CreateTempSubdirectory("default-recipe-").FullName;
try
{
    string data = Path.Combine(root, "data");
    Run(Python, [Path.Combine(AppContext.BaseDirectory, "prepare.py"), data, Invariant(perClass)]);
    // The same ImageNet weights as our default resnet18-cntk, folded to take torchvision's RGB normalisation.
    string weights = Path.Combine(root, "resnet18-cntk-rgb.pth");
    var state = ModelRegistry.Get(CntkResNet18.RgbFamilyName).BundledWeights!();
    StateDictFile.Write(state, weights, StateDictFormat.PyTorch);
    foreach (var tensor in state.Values) tensor.Dispose();

    var sweep = new
    {
        method = "grid",
        maxTrials = 24,
        parallelism = 4,
        metric = "val_accuracy",
        parameters = new Dictionary<string, object>
        {
            ["training.learningRate"] = new[] { 0.001, 0.003, 0.01, 0.03 },
            ["training.weightDecay"] = new[] { 0, 0.0005, 0.005 },
            ["training.labelSmoothing"] = new[] { 0, 0.1 },
        },
    };
    string[] splits = ["train", "val", "test"];
    Console.WriteLine($"{"set",-8} {"classes",7} {"train/val/test",15} {"blog loop",10} {"defaults",9} {"sweep best",11} {"PyTorch probe",14}   goals: >= blog loop, >= sweep best - 1 point (defaults; PyTorch probe)");
    foreach (string set in sets)
    {
        string folder = Path.Combine(data, set);
        using var blog = JsonDocument.Parse(Run(Python, [Path.Combine(AppContext.BaseDirectory, "blog_loop.py"), folder, weights]));
        double blogTest = blog.RootElement.GetProperty("test_accuracy").GetDouble();

        string work = Path.Combine(root, "work-" + set);
        Run("dotnet", [finetune, "train", "--dataset", folder, "--job-id", "defaults", "--work", work]);
        var (defaults, defaultsEpochs) = Evaluation(work, "defaults");
        // The head's convex optimum as PyTorch finds it on the same features (linear_probe.py).
        using var probe = JsonDocument.Parse(Run(Python, [Path.Combine(AppContext.BaseDirectory, "linear_probe.py"), folder,
            Path.Combine(work, "artifacts", "runs", "defaults")]));
        double convex = probe.RootElement.GetProperty("test_accuracy").GetDouble();
        double convexDecay = probe.RootElement.GetProperty("weight_decay").GetDouble();
        using var card = JsonDocument.Parse(File.ReadAllText(Path.Combine(work, "artifacts", "runs", "defaults", "published", "model-card.json")));
        string kept = card.RootElement.GetProperty("metrics").TryGetProperty("convexHead", out var head) && head.ValueKind == JsonValueKind.Object
            ? head.GetProperty("chosen").GetBoolean() ? $"the convex optimum at weight decay {head.GetProperty("weightDecay").GetDouble():g}" : "the best epoch"
            : "the best epoch (no convex head)";

        string job = Path.Combine(root, set + "-sweep.json");
        File.WriteAllText(job, JsonSerializer.Serialize(new { jobId = "sweep", dataset = new { location = folder }, training = new { epochs = 10 }, sweep }));
        Run("dotnet", [finetune, "sweep", job, "--work", work]);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(work, "artifacts", "runs", "sweep", "reports", "sweep.json")));
        string best = report.RootElement.GetProperty("best").GetString()!;
        var (sweepBest, _) = Evaluation(work, best);

        int classes = Directory.GetDirectories(Path.Combine(folder, "train")).Length;
        string counts = string.Join('/', splits.Select(s => Directory.GetFiles(Path.Combine(folder, s), "*", SearchOption.AllDirectories).Length));
        string Verdict(double top1) => $"{(top1 >= blogTest ? "met" : "MISSED")}, {(top1 >= sweepBest - 0.01 ? "met" : "MISSED")}";
        Console.WriteLine($"{set,-8} {classes,7} {counts,15} {blogTest,10:P1} {defaults,9:P1} {sweepBest,11:P1} {convex,14:P1}   {Verdict(defaults)}; {Verdict(convex)} "
            + $"(defaults trained {defaultsEpochs} epochs and kept {kept}; sweep best {best}; PyTorch's optimum at weight decay {convexDecay:g})");
    }
    return 0;
}
finally
{
    Directory.Delete(root, recursive: true);
}

static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

// The run's test accuracy and how many epochs it trained, from its reports.
static (double Top1, int Epochs) Evaluation(string work, string run)
{
    string reports = Path.Combine(work, "artifacts", "runs", run, "reports");
    using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(reports, "evaluation.json")));
    if (json.RootElement.GetProperty("split").GetString() != "test")
        throw new InvalidOperationException($"{run} was not scored on the test split");
    return (json.RootElement.GetProperty("top1Accuracy").GetDouble(), File.ReadLines(Path.Combine(reports, "metrics.jsonl")).Count());
}

// Runs a process to its exit, stderr passed through; fails the bench when it fails.
static string Run(string file, string[] arguments)
{
    var start = new ProcessStartInfo(file) { RedirectStandardOutput = true };
    foreach (var argument in arguments) start.ArgumentList.Add(argument);
    using var process = Process.Start(start)!;
    string stdout = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0)
        throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', arguments)} exited {process.ExitCode}:\n{stdout}");
    return stdout;
}
