// Prediction throughput: our Predictor in-process (FineTune.Core, what `finetune predict --input-dir` runs per batch) against
// PyTorch 1.13's eval loop, on the same Tux Paint photos, the same model (CNTK's ResNet18 with a seeded 5-class head, its
// whole state dict written as a published model.safetensors and loaded by both), the same preprocessing and batch size, no
// gradients, both on this machine's cores. Each side: a warm-up batch, then every photo timed from file to probabilities,
// decoding included. Prints images/s of both and the ratio beside the goal, and the largest probability difference; asserts nothing.
// usage: PredictBench [images=500] [batch=16]
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Weights;

const string Stamps = "/usr/share/tuxpaint/stamps";
const double Goal = 1.0;
int count = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 500;
int batch = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : Predictor.DefaultBatchSize;
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}
GlibcMalloc.LimitRetainedMemory();

// Photos only: the cartoon/ folders hold drawings.
string[] photos = [.. Directory.EnumerateFiles(Stamps, "*.png", SearchOption.AllDirectories)
    .Where(p => !p.Contains("/cartoon/", StringComparison.Ordinal)).Order(StringComparer.Ordinal).Take(count)];
string[] classes = ["animals", "food", "household", "plants", "town"];
var family = ModelRegistry.Get(CntkResNet18.FamilyName);
var preprocessing = family.Preprocessing;

string folder = Directory.CreateTempSubdirectory("predict-bench-").FullName;
try
{
    string weights = Path.Combine(folder, "model.safetensors"), meanImage = Path.Combine(folder, "mean-image.f32");
    using (var model = FineTuneModel.Create(family, classes.Length, seed: 0))
    {
        PretrainedWeights.LoadBackbone(model, family.BundledWeights!());
        StateDictFile.Write(model.Module.state_dict(), weights, StateDictFormat.Safetensors);
    }
    File.WriteAllBytes(meanImage, MemoryMarshal.AsBytes(preprocessing.MeanImage!.Value.AsSpan()).ToArray());

    using var predictor = Predictor.Load(family, classes, weights, preprocessing);
    foreach (var _ in predictor.PredictAll(photos.Take(batch), classes.Length, batch)) { }
    var clock = Stopwatch.StartNew();
    var ours = predictor.PredictAll(photos, classes.Length, batch).ToList();
    double oursSeconds = clock.Elapsed.TotalSeconds;

    var python = Process.Start(new ProcessStartInfo("/usr/bin/python3",
        [Path.Combine(AppContext.BaseDirectory, "torch_predict.py"), weights, classes.Length.ToString(CultureInfo.InvariantCulture), meanImage,
            preprocessing.ResizeSize.ToString(CultureInfo.InvariantCulture), preprocessing.CropSize.ToString(CultureInfo.InvariantCulture), batch.ToString(CultureInfo.InvariantCulture)])
    { RedirectStandardInput = true, RedirectStandardOutput = true })!;
    python.StandardInput.Write(string.Join('\n', photos));
    python.StandardInput.Close();
    var theirs = JsonDocument.Parse(python.StandardOutput.ReadToEnd()).RootElement;
    python.WaitForExit();
    if (python.ExitCode != 0) return python.ExitCode;
    double theirSeconds = theirs.GetProperty("seconds").GetDouble();

    double worst = 0;
    var expected = theirs.GetProperty("probabilities").EnumerateArray().ToList();
    for (int i = 0; i < photos.Length; i++)
    {
        foreach (var p in ours[i].Classes ?? [])
            worst = Math.Max(worst, Math.Abs(p.Probability - expected[i][Array.IndexOf(classes, p.Class)].GetDouble()));
    }

    double oursRate = photos.Length / oursSeconds, theirRate = photos.Length / theirSeconds, ratio = oursRate / theirRate;
    Console.WriteLine($"predict throughput: {photos.Length} Tux Paint photos, {family.Name}, batches of {batch}, decoding included, " +
        $"{Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}; max |Δp| vs PyTorch {worst:E1}");
    Console.WriteLine($"ours (Predictor in-process) {oursRate,7:F1} images/s   PyTorch eval {theirRate,7:F1} images/s   {ratio:F2}x  goal >= {Goal:F1}x {(ratio >= Goal ? "met" : "MISSED")}");
    return 0;
}
finally
{
    Directory.Delete(folder, recursive: true);
}
