// The feature pass per image, one builder per family (the smallest by torchvision's parameter count, or those named),
// side by side with PyTorch 1.13 on the same preprocessed photos: forward in eval mode without gradients, both on this
// machine's cores. Ours is what a frozen-backbone run does (FineTuneEngine): batch norms folded, then FeatureCache.Compute
// in batches of 8, which runs a 5-class head after capturing its input; PyTorch's is a user's loop over the same batches
// with the head left out (an identity). Random weights (speed does not
// depend on them). Each side runs in a fresh process per builder, as a run's feature pass does, and the two alternate
// for several rounds, so both meet the same machine (these shared cores' speed drifts by tens of percent over minutes,
// and a process that ran other models first is slower or faster for it); in each, a warm-up pass, then the best of the
// timed passes; the best of the rounds is printed. Prints each ratio beside the goal; asserts nothing.
// usage: FeaturePassBench [images=32] [passes=3] [--rounds 2] [builder ...]
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
string[] categories = ["animals", "food", "household", "plants", "town"];

if (args is ["--ours", var builder, var imagesFile, var passesText])
    return MeasureOurs(ModelRegistry.Get(builder), imagesFile, int.Parse(passesText, CultureInfo.InvariantCulture));

int rounds = 2;
var positional = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--rounds" && i + 1 < args.Length) rounds = int.Parse(args[++i], CultureInfo.InvariantCulture);
    else positional.Add(args[i]);
}
int count = positional.Count > 0 ? int.Parse(positional[0], CultureInfo.InvariantCulture) : 32;
int passes = positional.Count > 1 ? int.Parse(positional[1], CultureInfo.InvariantCulture) : 3;
if (!Directory.Exists(Stamps))
{
    Console.Error.WriteLine("needs real photos: apt-get install tuxpaint-stamps-default");
    return 2;
}

// The families PyTorch has: the CNTK ResNet18 is not torchvision's.
var builders = positional.Count > 2
    ? positional.Skip(2).Select(ModelRegistry.Get).ToList()
    : ModelRegistry.Families.Where(f => f.Weights.Count > 0).GroupBy(f => f.Architecture)
        .Select(g => g.MinBy(f => f.Weights.Min(w => w.NumParams))!).ToList();
string[] photos = [.. categories
    .SelectMany(c => Directory.EnumerateFiles(Path.Combine(Stamps, c), "*.png", SearchOption.AllDirectories).Where(p => !p.Contains("/cartoon/")).Order(StringComparer.Ordinal).Take(count))
    .Take(count)];
// Debian's python3-torch links libblas.so.3, netlib's reference BLAS unless another is chosen: its Linear layers then run
// ~60x slower than an optimised BLAS's, and the transformer families' figures would mean nothing.
bool openBlas = File.Exists(Path.Combine(OpenBlas, "libblas.so.3"));
string self = Path.Combine(AppContext.BaseDirectory, "FeaturePassBench.dll");

string folder = Directory.CreateTempSubdirectory("feature-pass-").FullName;
try
{
    var rows = new List<(ModelFamily Family, double Ours, double Theirs)>();
    foreach (var family in builders)
    {
        var input = Path.Combine(folder, $"{family.Name}.pth");
        using (var images = stack(photos.Select(p => ImageLoader.Load(p, family.Preprocessing)).ToList()))
            StateDictFile.Write(new Dictionary<string, Tensor> { ["images"] = images }, input, StateDictFormat.PyTorch);
        double ours = double.MaxValue, theirs = double.MaxValue;
        var request = JsonSerializer.Serialize(new[] { new { builder = family.Name, head = family.HeadPath, input } });
        for (int round = 0; round < rounds; round++)
        {
            // Each side goes first in every other round.
            for (int turn = 0; turn < 2; turn++)
            {
                if ((round + turn) % 2 == 0)
                {
                    ours = Math.Min(ours, Seconds(Run("dotnet", [self, "--ours", family.Name, input, Invariant(passes)], null)));
                    continue;
                }
                var pytorch = Run("/usr/bin/python3", [Path.Combine(AppContext.BaseDirectory, "torch_feature_pass.py"), Invariant(Batch), Invariant(passes)], request);
                theirs = Math.Min(theirs, JsonSerializer.Deserialize<Dictionary<string, double>>(pytorch)![family.Name]);
            }
        }
        rows.Add((family, ours / photos.Length, theirs / photos.Length));
        File.Delete(input);
    }

    Console.WriteLine($"feature pass per image: {photos.Length} photos, batches of {Batch}, each side in a fresh process per builder, "
        + $"alternating for {rounds} rounds of a warm-up and {passes} timed passes, the best pass shown; {Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
    Console.WriteLine(openBlas ? $"PyTorch's BLAS: OpenBLAS ({OpenBlas})" : "PyTorch's BLAS: the system's libblas.so.3 (apt-get install libopenblas0-pthread for an optimised one: the transformer families need it)");
    Console.WriteLine($"{"family",-18} {"builder",-20} {"input",5} {"ours ms",9} {"PyTorch ms",11} {"speed-up",9}  goal >= {Goal:F1}x");
    foreach (var (family, ours, pytorch) in rows)
        Console.WriteLine($"{family.Architecture,-18} {family.Name,-20} {family.Preprocessing.CropSize,5} {ours * 1e3,9:F1} {pytorch * 1e3,11:F1} {pytorch / ours,8:F2}x  {(pytorch / ours >= Goal ? "met" : "MISSED")}");
    return 0;
}
finally
{
    Directory.Delete(folder, recursive: true);
}

string Run(string program, string[] arguments, string? input)
{
    var start = new ProcessStartInfo(program, arguments) { RedirectStandardInput = input is not null, RedirectStandardOutput = true };
    if (openBlas && program != "dotnet") start.Environment["LD_LIBRARY_PATH"] = OpenBlas;
    using var process = Process.Start(start)!;
    if (input is not null)
    {
        process.StandardInput.Write(input);
        process.StandardInput.Close();
    }
    string output = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', arguments)}: exit {process.ExitCode}");
    return output;
}

static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

static double Seconds(string text) => double.Parse(text.Trim(), CultureInfo.InvariantCulture);

// The child: one builder's feature pass over the images in a torch.save'd {"images"}; prints the best pass's seconds.
int MeasureOurs(ModelFamily family, string imagesFile, int timedPasses)
{
    GlibcMalloc.LimitRetainedMemory();
    // Sized to the photos' categories, as a run's head is: the feature pass runs the model's head after capturing its
    // input, and SqueezeNet's is a convolution over every position (at 1,000 classes half its computation).
    using var model = FineTuneModel.Create(family, numClasses: categories.Length, seed: 0);
    model.FuseForInference();
    using var images = StateDictFile.Read(imagesFile)["images"];
    var source = new TensorImageSource(images, [.. Enumerable.Repeat(0, (int)images.shape[0])]);
    FeatureCache.Compute(model, source, Batch, default).Dispose();
    double best = double.MaxValue;
    for (int pass = 0; pass < timedPasses; pass++)
    {
        var clock = Stopwatch.StartNew();
        FeatureCache.Compute(model, source, Batch, default).Dispose();
        best = Math.Min(best, clock.Elapsed.TotalSeconds);
    }
    Console.WriteLine(best.ToString("R", CultureInfo.InvariantCulture));
    return 0;
}
