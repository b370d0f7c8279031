using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using FineTune.Cli.Tests.Reference;
using FineTune.Core.Models;
using FineTune.Core.Weights;
using Xunit.Abstractions;

namespace FineTune.Cli.Tests;

/// <summary>
/// Families end to end through the user's commands: <c>finetune train</c> fine-tunes the head on real photos, and
/// <c>finetune predict</c> must give what PyTorch computes from the published model.safetensors, loaded strictly
/// into torchvision's model, on images that torchvision's own transforms preprocess; and the published README's
/// script, run as a user runs it, must predict the same.
/// </summary>
public sealed class PredictParityTests(PyTorchParity pytorch, ITestOutputHelper output) : IClassFixture<PyTorchParity>, IDisposable
{
    private const double Tolerance = 1e-3;

    /// <summary>
    /// One family per way a family differs (mean-image input, folded input, residual, squeeze-excitation, dropped
    /// and resized auxiliary heads, 299-pixel input, our DenseNet, a classifier.6 head), then the cheapest builder of
    /// each family added since whose case costs under 30 s on 2 cores (RegNet, EfficientNet, ShuffleNetV2, MNASNet,
    /// SqueezeNet's convolution head, ResNeXt's grouped convolutions): 5–19 s each. ConvNeXt, Swin, MaxViT and ViT cost
    /// 33–90 s each even at their smallest (PyTorch building, calibrating and loading them is most of it): they run with
    /// the other builders, the VGGs among them, under FINETUNE_ALL_FAMILIES=1.
    /// </summary>
    private static readonly string[] Representative =
    [
        "resnet18-cntk", "resnet18-cntk-rgb", "resnet18", "mobilenet_v3_large", "googlenet", "inception_v3", "densenet121", "alexnet",
        "regnet_y_400mf", "efficientnet_b0", "shufflenet_v2_x0_5", "mnasnet0_5", "squeezenet1_1", "resnext50_32x4d",
    ];

    private readonly string _dir = Directory.CreateTempSubdirectory("predict-parity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> RepresentativeFamilies => new(Representative);

    public static TheoryData<string> OtherFamilies => new(ModelRegistry.Families.Select(f => f.Name).Except(Representative));

    [Theory]
    [MemberData(nameof(RepresentativeFamilies))]
    public void PredictGivesPyTorchsProbabilities(string name) => Compare(name);

    [AllFamiliesTheory]
    [MemberData(nameof(OtherFamilies))]
    public void PredictGivesPyTorchsProbabilitiesForEveryOtherFamily(string name) => Compare(name);

    private void Compare(string name)
    {
        var preprocessing = ModelRegistry.Get(name).Preprocessing;
        int resize = preprocessing.ResizeSize, crop = preprocessing.CropSize;
        // Two classes of three photos: the default split trains on two of each, in one batch, and validates on one.
        string dataset = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 3, ["animals", "food"]);
        string[] images =
        [
            TuxPaintStamps.Images("animals", 4)[3], TuxPaintStamps.Images("food", 4)[3],
            TuxPaintStamps.Images("household", 1)[0], TuxPaintStamps.Images("town", 1)[0],
        ];
        var clock = Stopwatch.StartNew();

        string weights = "bundled";
        if (!name.StartsWith(CntkResNet18.FamilyName, StringComparison.Ordinal))
        {
            weights = Path.Combine(_dir, "seeded.pth");
            // Calibrated on the training photos only: the others' features come out larger, which gives the predictions their
            // spread after one epoch (EfficientNet's residual branches damped so that they do not grow without bound: see
            // predict_parity.py).
            pytorch.Export(name, weights, resize, crop, Directory.GetFiles(dataset, "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal));
        }
        var exported = clock.Elapsed;

        string job = name.Replace('_', '-');
        var train = FinetuneProcess.Run(_dir, "train", "--dataset", dataset, "--model", name, "--weights", weights,
            "--epochs", "1", "--batch-size", "4", "--job-id", job);
        Assert.True(train.ExitCode == 0, $"train {name}: exit {train.ExitCode}: {train.Error}\n{train.Output}");
        var trained = clock.Elapsed;

        var predict = FinetuneProcess.Run(_dir, ["predict", "--model", job, "--top", "2", .. images]);
        Assert.True(predict.ExitCode == 0, $"predict {name}: exit {predict.ExitCode}: {predict.Error}\n{predict.Output}");
        var predicted = clock.Elapsed;

        string published = Path.Combine(_dir, ".finetune", "artifacts", "runs", job, "published");
        var classes = JsonDocument.Parse(File.ReadAllText(Path.Combine(published, "model-card.json"))).RootElement
            .GetProperty("classes").EnumerateArray().Select(c => c.GetString()!).ToList();
        string? meanImage = null;
        if (preprocessing.MeanImage is { } mean)
        {
            meanImage = Path.Combine(_dir, "mean-image.f32");
            File.WriteAllBytes(meanImage, MemoryMarshal.AsBytes(mean.Value.AsSpan()).ToArray());
        }
        var expected = pytorch.Predict(name, Path.Combine(published, "model.safetensors"), classes.Count, resize, crop, meanImage, images);
        var referenced = clock.Elapsed;
        // What a user of the published folder runs: its README's script, on its own files.
        var script = ReadmeScript.Run(published, Path.Combine(_dir, "hub"), images);
        var scripted = clock.Elapsed;

        var answers = JsonDocument.Parse(predict.Output).RootElement.EnumerateArray().ToList();
        Assert.Equal(images.Length, answers.Count);
        double worst = 0;
        for (int i = 0; i < images.Length; i++)
        {
            var ours = answers[i].GetProperty("predictions").EnumerateArray()
                .ToDictionary(p => p.GetProperty("class").GetString()!, p => p.GetProperty("probability").GetDouble());
            string theirs = $"PyTorch [{string.Join(", ", classes.Select((c, k) => $"{c} {expected[i][k]:F6}"))}]";
            string both = $"{name}, {images[i]}: predict [{string.Join(", ", ours.Select(p => $"{p.Key} {p.Value:F6}"))}], {theirs}";
            Assert.True(ours.Count == classes.Count, both);
            Assert.True(ours.MaxBy(p => p.Value).Key == classes[Array.IndexOf(expected[i], expected[i].Max())], $"top-1 differs: {both}");
            for (int k = 0; k < classes.Count; k++)
            {
                double difference = Math.Abs(ours[classes[k]] - expected[i][k]);
                worst = Math.Max(worst, difference);
                Assert.True(difference <= Tolerance, $"|Δp| {difference:E2} > {Tolerance}: {both}");
                double fromScript = Math.Abs(ours[classes[k]] - script[i][classes[k]]);
                Assert.True(fromScript <= Tolerance, $"README script: |Δp| {fromScript:E2} > {Tolerance}: {name}, {images[i]}: {script[i][classes[k]]:F6}");
            }
        }
        // Probabilities that hardly vary between photos would agree whatever the preprocessing did to them.
        double spread = expected.Max(p => p[0]) - expected.Min(p => p[0]);
        Assert.True(spread >= 10 * Tolerance, $"{name}: P({classes[0]}) varies by only {spread:F4} over the photos");
        output.WriteLine($"{name}: max |Δp| {worst:E2}, P({classes[0]}) spread over the photos {spread:F4}; " +
            $"export {exported.TotalSeconds:F1} s, train {(trained - exported).TotalSeconds:F1} s, " +
            $"predict {(predicted - trained).TotalSeconds:F1} s, PyTorch {(referenced - predicted).TotalSeconds:F1} s, README script {(scripted - referenced).TotalSeconds:F1} s");
    }
}
