// Issue 25, item 4: the peak resident memory of a 10-epoch head run through `finetune train`, a whole process as a user runs
// it, on 7,000 and 70,000 fashion-mnist images (Debian's dataset-fashion-mnist, one folder per class), printed beside the
// goal (under 1 GB whatever the size: features stream from shards, decoded images and features have budgets). A model other
// than the default takes torchvision's random weights (seed 0), written by PyTorch: only memory and time are measured.
// usage: HeadMemoryBench [images=7000,70000] [model=resnet18-cntk]
using System.Diagnostics;
using System.Globalization;
using FineTune.Bench;

const string Python = "/usr/bin/python3";
int[] sizes = args.Length > 0 ? [.. args[0].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))] : [7000, 70000];
string model = args.Length > 1 ? args[1] : "resnet18-cntk";
if (!Directory.Exists("/usr/share/datasets/fashion-mnist"))
{
    Console.Error.WriteLine("needs the images: apt-get install dataset-fashion-mnist");
    return 2;
}
string root = Directory.CreateTempSubdirectory("head-memory-").FullName;
try
{
    string[] modelArguments = ["--model", model];
    if (model != "resnet18-cntk")
    {
        string weights = Path.Combine(root, model + ".pth");
        RunPython($"import torch, torchvision; torch.manual_seed(0); torch.save(torchvision.models.{model}().state_dict(), '{weights}')");
        modelArguments = [.. modelArguments, "--weights", weights];
    }
    Console.WriteLine($"{model}, head, 10 epochs, batch 16, defaults otherwise; {Environment.ProcessorCount} cores; goal: peak RSS < 1024 MB at every size");
    foreach (int images in sizes)
    {
        string data = Path.Combine(root, $"fashion-{images}");
        Run(Python, Path.Combine(AppContext.BaseDirectory, "fashion.py"), data, (images / 10).ToString(CultureInfo.InvariantCulture));
        var (seconds, peak, stdout) = FinetuneProcess.Run(root, ["train", "--dataset", data, "--epochs", "10", "--job-id", $"memory-{images}",
            "--work", Path.Combine(root, $"work-{images}"), .. modelArguments]);
        string times = stdout.Split('\n').LastOrDefault(l => l.StartsWith("time:", StringComparison.Ordinal))?.Trim() ?? "";
        Console.WriteLine($"{images,6} images: peak RSS {peak,5} MB ({(peak < 1024 ? "met" : "MISSED")}), {seconds,6:F0} s; {times}");
        Directory.Delete(data, recursive: true);
    }
    return 0;
}
finally
{
    Directory.Delete(root, recursive: true);
}

static void RunPython(string code) => Run(Python, "-c", code);

static void Run(string file, params string[] arguments)
{
    var start = new ProcessStartInfo(file) { RedirectStandardOutput = true };
    foreach (var argument in arguments) start.ArgumentList.Add(argument);
    using var process = Process.Start(start)!;
    process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited {process.ExitCode}");
}
