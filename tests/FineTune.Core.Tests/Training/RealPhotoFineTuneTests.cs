using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Training;

/// <summary>
/// The seed recipe on real photos: five tuxpaint categories, resnet18-cntk frozen with a new linear head.
/// Pretrained weights must carry it past 80% validation accuracy; the same run from a random backbone must not.
/// </summary>
public sealed class RealPhotoFineTuneTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("photos-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void PretrainedBackboneLearnsTheCategoriesAndARandomOneDoesNot()
    {
        var dataset = DatasetLoader.Load(TuxPaintStamps.CreateImageFolder(_dir, perClass: 30), new DatasetOptions());
        Assert.Equal(TuxPaintStamps.Categories, dataset.Classes);
        Assert.Empty(dataset.Skipped);

        double pretrained = FineTune(dataset, loadPretrained: true);
        double random = FineTune(dataset, loadPretrained: false);

        output.WriteLine($"validation accuracy: pretrained {pretrained:P1}, random backbone {random:P1} ({dataset.Validation.Count} images)");
        Assert.True(pretrained >= 0.80, $"pretrained backbone reached only {pretrained:P1}");
        Assert.True(random <= pretrained - 0.25, $"random backbone reached {random:P1}, too close to {pretrained:P1}");
    }

    private double FineTune(ImageDataset dataset, bool loadPretrained)
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get(CntkResNet18.FamilyName);
        using var model = FineTuneModel.Create(family, dataset.ClassCount, seed: 1);
        if (loadPretrained) PretrainedWeights.LoadBackbone(model, family.BundledWeights!());
        model.Freeze(FreezeMode.Head);
        // Cut-outs of every shape: padding keeps thin objects whole where a centre crop would cut them.
        var preprocessing = family.Preprocessing with { Resize = ResizeMode.Pad };
        var train = new FileImageSource(dataset.Train, preprocessing);
        var validation = new FileImageSource(dataset.Validation, preprocessing);
        var options = new TrainingOptions { Epochs = 25, BatchSize = 4, Seed = 3 };

        Assert.True(FeatureCache.IsExact(model, train));
        var trainFeatures = FeatureCache.Compute(model, train, 16, default);
        var validationFeatures = FeatureCache.Compute(model, validation, 16, default);
        using var trainer = new Trainer(model, train, options, FeatureRows.Of(trainFeatures));
        for (int epoch = 0; epoch < options.Epochs; epoch++)
            Assert.True(trainer.TrainSteps(int.MaxValue, default).EpochCompleted);

        var logits = Evaluator.Logits(model, validation, 16, default, FeatureRows.Of(validationFeatures));
        var report = Evaluator.Report(DatasetSplits.Validation, logits, dataset.Validation.Select(s => s.Label).ToList(), dataset.Classes,
            dataset.Validation.Select(s => s.Path).ToList());
        output.WriteLine($"{(loadPretrained ? "pretrained" : "random")}: loss {report.Loss:F3}, top-1 {report.Top1Accuracy:P1}, top-5 {report.Top5Accuracy:P1}");
        output.WriteLine("confusion: " + string.Join(" | ", report.ConfusionMatrix.Select(row => string.Join(",", row))));
        return report.Top1Accuracy;
    }
}
