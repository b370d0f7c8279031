using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Export;
using FineTune.Core.Models;
using FineTune.Core.Tests.Models;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Export;

/// <summary>
/// Every family's exported graph, run by ONNX Runtime, gives TorchSharp's logits on real photos to 1e-4. The models are
/// seeded at random (batch-norm statistics too, so that no layer is an identity) and, but for a few, fed small
/// photos: the structure is what is checked, and the small input also exercises adaptive pooling written as
/// matrix products (VGG, AlexNet) where 224 pixels would make it a no-op.
/// </summary>
public sealed class OnnxExportTests(ITestOutputHelper output)
{
    /// <summary>
    /// |ONNX Runtime − TorchSharp| on a logit, the logits a fine-tuned model's size (<see cref="LogitScale"/>). Measured
    /// over every family: 7e-5 for mobilenet_v3_large, 3e-5 or less for the rest. What remains is float32 rounding,
    /// each side summing in its own order, not the graph: against TorchSharp in float64, ONNX Runtime's float32
    /// logits were as close as TorchSharp's own float32 ones in every family (within a factor of 3 either way), and
    /// the error grew gradually from node to node, never jumping at one. A graph that differed (a batch-norm
    /// epsilon, a pooling window counting padding, a layer out of order) would be orders of magnitude further.
    /// </summary>
    private const double Tolerance = 1e-4;

    /// <summary>
    /// The largest |logit| on the compared photos, which the head is scaled to: a fine-tuned model's. The demo's
    /// resnet18-cntk after its 15 epochs gives each photo a largest |logit| from 1.3 to 9.4, median 4.5.
    /// </summary>
    private const double LogitScale = 4.5;

    private static readonly string[] Classes = ["animals", "food", "town"];

    /// <summary>One family per way of building (and the mean-image one at its native 224): a minute in CI.</summary>
    private static readonly (string Family, int Size)[] Representative =
    [
        ("resnet18-cntk", 224), ("resnet18", 64), ("resnet50", 64), ("vgg11_bn", 64), ("alexnet", 224),
        ("mobilenet_v2", 64), ("mobilenet_v3_small", 64), ("googlenet", 64), ("inception_v3", 96), ("densenet121", 64),
        // EfficientNet at 128: at 64 its last stages' 2×2 maps give the random batch-norm statistics tiny variances, and
        // TorchSharp's own float32 logits then drift 1e-2 from float64 (v2_s), the graph's alike; at 128, 7e-5.
        ("regnet_y_400mf", 64), ("efficientnet_v2_s", 128), ("convnext_tiny", 64),
        ("vit_b_32", 128), ("swin_t", 64),
    ];

    public static TheoryData<string, int> RepresentativeFamilies => Data(Representative);

    public static TheoryData<string, int> OtherFamilies =>
        Data(ModelRegistry.Families.Where(f => !Representative.Any(r => r.Family == f.Name)).Select(f => (f.Name, SmallModels.SmallestInput(f))));

    private static TheoryData<string, int> Data(IEnumerable<(string Family, int Size)> cases)
    {
        var data = new TheoryData<string, int>();
        foreach (var (family, size) in cases) data.Add(family, size);
        return data;
    }

    [Theory]
    [MemberData(nameof(RepresentativeFamilies))]
    public void OnnxRuntimeGivesTorchSharpsLogits(string family, int size) => Compare(family, size);

    [AllFamiliesTheory]
    [MemberData(nameof(OtherFamilies))]
    public void OnnxRuntimeGivesTorchSharpsLogitsForEveryOtherFamily(string family, int size) => Compare(family, size);

    [Fact]
    public void MetadataDocumentsThePreprocessingAndTheClasses()
    {
        var family = ModelRegistry.Get("mobilenet_v3_small");
        using var model = FineTuneModel.Create(family, Classes.Length, seed: 3);
        var preprocessing = family.Preprocessing with { Resize = ResizeMode.Pad };
        using var session = new InferenceSession(OnnxExporter.Export(model, Classes, preprocessing).ToByteArray());

        var metadata = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal("mobilenet_v3_small", metadata[OnnxExporter.MetadataKeys.Family]);
        Assert.Equal(Classes, JsonSerializer.Deserialize<string[]>(metadata[OnnxExporter.MetadataKeys.Classes]));
        var written = JsonDocument.Parse(metadata[OnnxExporter.MetadataKeys.Preprocessing]).RootElement;
        Assert.Equal("pad", written.GetProperty("resize").GetString());
        Assert.Equal(224, written.GetProperty("cropSize").GetInt32());
        Assert.Equal("#ffffff", written.GetProperty("background").GetString());
        Assert.Equal([0.485f, 0.456f, 0.406f], written.GetProperty("mean").EnumerateArray().Select(v => v.GetSingle()));
        Assert.Equal([0.229f, 0.224f, 0.225f], written.GetProperty("std").EnumerateArray().Select(v => v.GetSingle()));
        Assert.Contains("centred on white", metadata[OnnxExporter.MetadataKeys.Input]);
        Assert.Equal([-1, 3, 224, 224], session.InputMetadata[OnnxExporter.InputName].Dimensions);
        Assert.Equal([-1, Classes.Length], session.OutputMetadata[OnnxExporter.OutputName].Dimensions);
    }

    private void Compare(string name, int size)
    {
        var family = ModelRegistry.Get(name);
        var preprocessing = SmallModels.PreprocessingAt(family, size);
        using var model = FineTuneModel.Create(family.For(preprocessing), Classes.Length, seed: 7);
        string[] photos = [.. Classes.Select(c => TuxPaintStamps.Images(c, 2)[1]), TuxPaintStamps.Images("plants", 1)[0]];

        using var scope = NewDisposeScope();
        var batch = stack(photos.Select(p => ImageLoader.Load(p, preprocessing)).ToList());
        Randomise(model, stack(TuxPaintStamps.Categories.SelectMany(c => TuxPaintStamps.Images(c, 6).Skip(2))
            .Select(p => ImageLoader.Load(p, preprocessing)).ToList()), batch);
        using var noGrad = no_grad();
        var expected = model.Forward(batch).data<float>().ToArray();
        // The graph subtracts a mean image itself: it takes the pixels before that step.
        var pixels = stack(photos.Select(p => ImageLoader.Load(p, preprocessing with { MeanImage = null })).ToList());

        // As `finetune export` writes it: the largest builders' weights (vit_h_14: 2.5 GB) go beside the graph.
        string folder = Directory.CreateTempSubdirectory("onnx-parity-").FullName;
        try
        {
            string path = Path.Combine(folder, "model.onnx");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long written = OnnxExporter.Save(model, Classes, preprocessing, path, size).Sum(file => new FileInfo(file).Length);
            var exported = clock.Elapsed;
            float[] actual;
            using (var session = new InferenceSession(path))
            {
                var input = new DenseTensor<float>(pixels.data<float>().ToArray(), [photos.Length, 3, size, size]);
                using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
                actual = results.Single(r => r.Name == OnnxExporter.OutputName).AsTensor<float>().ToArray();
            }
            var ran = clock.Elapsed;
            CheckWithOnnx(path, $"logits batch {Classes.Length}");
            Compare(name, model, batch, expected, actual, $"{written / 1e6:F1} MB written in {exported.TotalSeconds:F1} s, run in {(ran - exported).TotalSeconds:F1} s");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private void Compare(string name, FineTuneModel model, TorchSharp.torch.Tensor batch, float[] expected, float[] actual, string cost)
    {
        // The network's own float32 rounding, against its float64 forward: random weights make some deep families
        // (EfficientNet-B5, V2-L) amplify it to whole units, which no graph can undo; the difference allowed grows by four times it.
        model.Module.to(ScalarType.Float64);
        var exact = model.Forward(batch.to(ScalarType.Float64)).data<double>().ToArray();
        model.Module.to(ScalarType.Float32);
        double own = expected.Zip(exact, (e, x) => Math.Abs(e - x)).Max();

        Assert.Equal(expected.Length, actual.Length);
        double largest = expected.Max(Math.Abs), worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        output.WriteLine($"{name} at {batch.shape[^1]}px: max |ONNX Runtime − TorchSharp| {worst:E2}, largest |logit| {largest:F3}, TorchSharp's own |float32 − float64| {own:E2}, {cost}");
        Assert.True(worst <= Tolerance + 4 * own, $"{name}: max difference {worst:E2} (largest logit {largest:F3}, own rounding {own:E2})");
        // Logits that hardly vary between photos would agree whatever the graph did to the input.
        int images = (int)batch.shape[0];
        double spread = Enumerable.Range(0, images).Select(i => expected[i * Classes.Length]).Max()
            - Enumerable.Range(0, images).Select(i => expected[i * Classes.Length]).Min();
        Assert.True(spread > 100 * Tolerance, $"{name}: the first logit varies by only {spread:E2} over the photos");
    }

    /// <summary>Not only ONNX Runtime's reading: ONNX's own checker (Debian's python3-onnx), with strict shape inference.</summary>
    private static void CheckWithOnnx(string path, string expectedOutput)
    {
        var check = ProcessRunner.Run("/usr/bin/python3", [Path.Combine(AppContext.BaseDirectory, "Reference", "onnx_check.py"), path], timeout: TimeSpan.FromMinutes(2));
        Assert.True(check.ExitCode == 0, $"onnx.checker: {check.Error}");
        Assert.Equal(expectedOutput, check.Output.Trim());
    }

    /// <summary>
    /// A graph whose weights pass protobuf's limit keeps them in a file beside it (forced here with a limit of 0, the
    /// largest builders pass the real one): ONNX Runtime, loading it from its path, gives the one-file graph's logits,
    /// and ONNX's checker (loading the external data as <c>onnx.load</c> does) accepts it.
    /// </summary>
    [Fact]
    public void WeightsOverTheLimitAreKeptBesideTheGraph()
    {
        const int size = 64;
        var family = ModelRegistry.Get("resnet18");
        var preprocessing = SmallModels.PreprocessingAt(family, size);
        using var model = FineTuneModel.Create(family.For(preprocessing), Classes.Length, seed: 7);
        string folder = Directory.CreateTempSubdirectory("onnx-external-").FullName;
        try
        {
            string path = Path.Combine(folder, "model.onnx");
            var written = OnnxExporter.Save(model, Classes, preprocessing, path, size, externalAbove: 0);

            Assert.Equal([path + ".data", path], written);
            Assert.True(new FileInfo(path).Length < 1_000_000, $"the graph kept {new FileInfo(path).Length} bytes");
            Assert.True(new FileInfo(path + ".data").Length > 40_000_000);
            using var scope = NewDisposeScope();
            var pixels = randn(2, 3, size, size, generator: new TorchSharp.torch.Generator(5)).data<float>().ToArray();
            float[] Logits(InferenceSession session)
            {
                var input = new DenseTensor<float>(pixels, [2, 3, size, size]);
                using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
                return results.Single(r => r.Name == OnnxExporter.OutputName).AsTensor<float>().ToArray();
            }
            using var fromFiles = new InferenceSession(path);
            using var inline = new InferenceSession(OnnxExporter.Export(model, Classes, preprocessing, size).ToByteArray());
            Assert.Equal(Logits(inline), Logits(fromFiles));
            CheckWithOnnx(path, $"logits batch {Classes.Length}");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// Weights like a fine-tuned model's in scale. Convolutions and linears at random over their fan-in
    /// (torchvision's fan-out initialisation makes a fresh MobileNetV3 output ~1e-10 whatever the photo); batch-norm
    /// affine parameters away from 1 and 0 so that a misplaced one shows, and batch-norm statistics measured on the
    /// batch of other photos (one training-mode pass, momentum 1) so that activations stay near unit scale at any
    /// depth; then the head scaled so that the largest logit on the compared <paramref name="photos"/> is
    /// <see cref="LogitScale"/> (unscaled, random heads give logits of 0.3 to 60 depending on the family).
    /// Residual branches damped (<see cref="SmallModels.DampResidualBranches"/>).
    /// </summary>
    private static void Randomise(FineTuneModel model, TorchSharp.torch.Tensor calibration, TorchSharp.torch.Tensor photos)
    {
        using var noGrad = no_grad();
        var generator = new Generator(11);
        foreach (var module in model.Module.modules())
        {
            var weight = module switch { Conv2d conv => conv.weight, Linear linear => linear.weight, _ => null };
            if (weight is null) continue;
            long fanIn = weight.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
            weight.copy_(randn(weight.shape, generator: generator) * (float)Math.Sqrt(2.0 / fanIn));
        }
        SmallModels.RandomiseBatchNorms(model, generator);
        SmallModels.DampResidualBranches(model);
        model.Module.train();
        using (NewDisposeScope()) model.Forward(calibration);
        model.EvalMode();
        using (NewDisposeScope())
        {
            float scale = (float)(LogitScale / model.Forward(photos).abs().max().item<float>());
            // Scales the logits too where ReLU and pooling follow the head (SqueezeNet's).
            foreach (var parameter in model.Head.parameters()) parameter.mul_(scale);
        }
    }
}
