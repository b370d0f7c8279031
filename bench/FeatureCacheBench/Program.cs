// Side-by-side: the same images, epochs and batch size, fine-tuned by us with the frozen-backbone feature
// cache and by PyTorch running the blog's loop. Prints both wall times and their ratio; asserts nothing.
// usage: FeatureCacheBench [images-per-class=20] [epochs=5] [batch=4]
using System.Diagnostics;
using System.Globalization;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;
using static TorchSharp.torch;

const string Stamps = "/usr/share/tuxpaint/stamps";
string[] categories = ["animals", "food", "household", "plants", "town"];
int perClass = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 20;
int epochs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5;
int batch = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 4;
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}
GlibcMalloc.LimitRetainedMemory();

string folder = Directory.CreateTempSubdirectory("bench-").FullName;
try
{
    foreach (var category in categories)
    {
        var target = Directory.CreateDirectory(Path.Combine(folder, category)).FullName;
        var images = Directory.EnumerateFiles(Path.Combine(Stamps, category), "*.png", SearchOption.AllDirectories)
            .Where(p => !p.Contains("/cartoon/")).Order(StringComparer.Ordinal).Take(perClass);
        foreach (var image in images)
            File.Copy(image, Path.Combine(target, Path.GetRelativePath(Path.Combine(Stamps, category), image).Replace('/', '_')));
    }

    var clock = Stopwatch.StartNew();
    var family = ModelRegistry.Get("resnet18");
    // Every image trains, as in the blog's loop over its training folder.
    var dataset = DatasetLoader.Load(folder, new DatasetOptions { ValidationFraction = 0.2 });
    var all = dataset.Train.Concat(dataset.Validation).ToList();
    using var model = FineTuneModel.Create(family, dataset.ClassCount, seed: 0);
    model.Freeze(FreezeMode.Head);
    var source = new FileImageSource(all, family.Preprocessing);
    using var features = FeatureCache.Compute(model, source, 16, default);
    using var trainer = new Trainer(model, source, new TrainingOptions { Epochs = epochs, BatchSize = batch }, FeatureRows.Of(features));
    for (int epoch = 0; epoch < epochs; epoch++) trainer.TrainSteps(int.MaxValue, default);
    double ours = clock.Elapsed.TotalSeconds;

    var python = Process.Start(new ProcessStartInfo("/usr/bin/python3",
        [Path.Combine(AppContext.BaseDirectory, "blog_loop.py"), folder, epochs.ToString(CultureInfo.InvariantCulture), batch.ToString(CultureInfo.InvariantCulture)])
    { RedirectStandardOutput = true })!;
    string output = python.StandardOutput.ReadToEnd();
    python.WaitForExit();
    if (python.ExitCode != 0) return python.ExitCode;
    double theirs = double.Parse(output.Trim(), CultureInfo.InvariantCulture);

    Console.WriteLine($"images {all.Count}, epochs {epochs}, batch {batch}, resnet18 frozen + linear head, {Environment.ProcessorCount} cores");
    Console.WriteLine($"ours (scan + feature cache + epochs): {ours,8:F2} s");
    Console.WriteLine($"PyTorch blog loop (epochs only):      {theirs,8:F2} s");
    Console.WriteLine($"speed-up: {theirs / ours:F2}x");
    return 0;
}
finally
{
    Directory.Delete(folder, recursive: true);
}
