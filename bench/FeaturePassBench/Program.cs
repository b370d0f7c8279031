// The feature pass per image, one builder per family (the smallest by torchvision's parameter count, or those named),
// side by side with PyTorch 1.13 on the same preprocessed photos: forward in eval mode without gradients, the head left
// out, both on this machine's cores. Ours is what a frozen-backbone run does (FineTuneEngine): batch norms folded, then
// FeatureCache.Compute in batches of 8; PyTorch's is a user's loop over the same batches. Random weights (speed does not
// depend on them); a warm-up pass, then the best of the timed passes. Prints each ratio beside the goal; asserts nothing.
// usage: FeaturePassBench [images=16] [passes=2] [builder ...]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using static TorchSharp.torch;

const string Stamps = "/usr/share/tuxpaint/stamps";
const int Batch = 8;
const double Goal = 1.0;
const string OpenBlas = "/usr/lib/x86_64-linux-gnu/openblas-pthread";
int count = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 16;
int passes = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 2;
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}
GlibcMalloc.LimitRetainedMemory();

// The families PyTorch has: the CNTK ResNet18 is not torchvision's.
var builders = args.Length > 2
    ? args.Skip(2).Select(ModelRegistry.Get).ToList()
    : ModelRegistry.Families.Where(f => f.Weights.Count > 0).GroupBy(f => f.Architecture)
        .Select(g => g.MinBy(f => f.Weights.Min(w => w.NumParams))!).ToList();
string[] categories = ["animals", "food", "household", "plants", "town"];
string[] photos = [.. categories
    .SelectMany(c => Directory.EnumerateFiles(Path.Combine(Stamps, c), "*.png", SearchOption.AllDirectories).Where(p => !p.Contains("/cartoon/")).Order(StringComparer.Ordinal).Take(count))
    .Take(count)];

string folder = Directory.CreateTempSubdirectory("feature-pass-").FullName;
try
{
    var rows = new List<(ModelFamily Family, double Ours)>();
    var requests = new List<object>();
    foreach (var family in builders)
    {
        var input = Path.Combine(folder, $"{family.Name}.pth");
        using (var images = stack(photos.Select(p => ImageLoader.Load(p, family.Preprocessing)).ToList()))
            StateDictFile.Write(new Dictionary<string, Tensor> { ["images"] = images }, input, StateDictFormat.PyTorch);
        using var model = FineTuneModel.Create(family, numClasses: 1000, seed: 0);
        model.FuseForInference();
        var source = new TensorImageSource(StateDictFile.Read(input)["images"], [.. photos.Select(_ => 0)]);
        FeatureCache.Compute(model, source, Batch, default).Dispose();
        double best = double.MaxValue;
        for (int pass = 0; pass < passes; pass++)
        {
            var clock = Stopwatch.StartNew();
            FeatureCache.Compute(model, source, Batch, default).Dispose();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        rows.Add((family, best / photos.Length));
        requests.Add(new { builder = family.Name, head = family.HeadPath, input });
    }

    var start = new ProcessStartInfo("/usr/bin/python3",
        [Path.Combine(AppContext.BaseDirectory, "torch_feature_pass.py"), Batch.ToString(CultureInfo.InvariantCulture), passes.ToString(CultureInfo.InvariantCulture)])
    { RedirectStandardInput = true, RedirectStandardOutput = true };
    // Debian's python3-torch links libblas.so.3, netlib's reference BLAS unless another is chosen: its Linear layers then run
    // ~60x slower than an optimised BLAS's, and the transformer families' figures would mean nothing.
    bool openBlas = File.Exists(Path.Combine(OpenBlas, "libblas.so.3"));
    if (openBlas) start.Environment["LD_LIBRARY_PATH"] = OpenBlas;
    var python = Process.Start(start)!;
    python.StandardInput.Write(JsonSerializer.Serialize(requests));
    python.StandardInput.Close();
    var theirs = JsonSerializer.Deserialize<Dictionary<string, double>>(python.StandardOutput.ReadToEnd())!;
    python.WaitForExit();
    if (python.ExitCode != 0) return python.ExitCode;

    Console.WriteLine($"feature pass per image: {photos.Length} photos, batches of {Batch}, best of {passes} passes after a warm-up, {Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
    Console.WriteLine(openBlas ? $"PyTorch's BLAS: OpenBLAS ({OpenBlas})" : "PyTorch's BLAS: the system's libblas.so.3 (apt-get install libopenblas0-pthread for an optimised one: the transformer families need it)");
    Console.WriteLine($"{"family",-18} {"builder",-20} {"input",5} {"ours ms",9} {"PyTorch ms",11} {"speed-up",9}  goal >= {Goal:F1}x");
    foreach (var (family, ours) in rows)
    {
        double pytorch = theirs[family.Name] / photos.Length;
        Console.WriteLine($"{family.Architecture,-18} {family.Name,-20} {family.Preprocessing.CropSize,5} {ours * 1e3,9:F1} {pytorch * 1e3,11:F1} {pytorch / ours,8:F2}x  {(pytorch / ours >= Goal ? "met" : "MISSED")}");
    }
    return 0;
}
finally
{
    Directory.Delete(folder, recursive: true);
}
