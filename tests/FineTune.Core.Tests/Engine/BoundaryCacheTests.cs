using FineTune.Core.Data;
using FineTune.Core.Engine;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Engine;

/// <summary>
/// With the last stages trainable and no augmentation, the frozen stages give the same output every epoch: training on
/// it once cached ends with the weights of training on the images (to float rounding: the cache pass runs the frozen
/// stages with their batch norms folded), epoch by epoch through checkpoints, and scores the same. One builder per kind
/// of trainable part: batch norms (ResNet), dropout beside the head and squeeze-excitation (MobileNetV3), stochastic depth
/// drawn from the step's seed inside a trainable block (EfficientNet).
/// </summary>
public sealed class BoundaryCacheTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>
    /// |cached − on images| on a trained tensor, relative to its largest value when that exceeds 1: batch norms that train
    /// on batches of 4 divide by their batch's spread, which carries a frozen stage's rounding (a few parts in 10⁷) to a few
    /// parts in 10⁴ in a random network's last statistics (efficientnet_b0: 7.7·10⁻⁴, with or without folding).
    /// </summary>
    private const double RoundingTolerance = 2e-3;

    private readonly string _root = Directory.CreateTempSubdirectory("boundary-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData("resnet18-cntk", 1)]
    [InlineData("mobilenet_v3_small", 2)]
    [InlineData("efficientnet_b0", 2)]
    public void TrainingOnTheFrozenStagesCachedOutputEndsWithTheWeightsOfTrainingOnImages(string name, int trainableStages)
    {
        var family = ModelRegistry.Get(name);
        string weights = WeightsFile(family);
        var dataset = DatasetLoader.Load(TuxPaintStamps.CreateImageFolder(Path.Combine(_root, "data"), perClass: 5, ["animals", "food"]),
            new DatasetOptions { ValidationFraction = 0.4 });
        Recipe RecipeWith(bool cache) => new(family.Name, weights, FreezeMode.Last(trainableStages), HeadDropout: 0, ResizeMode.Pad,
            new TrainingOptions { Epochs = 2, BatchSize = 4, Seed = 11, UseFeatureCache = cache });
        using var engine = new FineTuneEngine();

        var (cachedPrepared, features) = engine.Prepare(RecipeWith(cache: true), dataset, default);
        using var _ = features;
        var (imagePrepared, none) = engine.Prepare(RecipeWith(cache: false), dataset, default);
        Assert.True(cachedPrepared.FeatureCache, $"{name} with last:{trainableStages} did not cache the frozen stages' output");
        Assert.False(cachedPrepared.StacksTrials);
        Assert.False(imagePrepared.FeatureCache);
        Assert.Null(none);

        TrainingState? cached = null, onImages = null;
        for (int epoch = 0; epoch < 2; epoch++)
        {
            cached = engine.Train(RecipeWith(cache: true), dataset, cached, features, maxSteps: 100, default).State;
            onImages = engine.Train(RecipeWith(cache: false), dataset, onImages, null, maxSteps: 100, default).State;
        }

        using var scope = NewDisposeScope();
        var expected = StateDictFile.Read(new MemoryStream(onImages!.Parts[TrainingSnapshot.ModelPart]));
        var actual = StateDictFile.Read(new MemoryStream(cached!.Parts[TrainingSnapshot.ModelPart]));
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.Contains(expected.Keys, k => !family.IsHeadKey(k));
        double worstRelative = 0;
        foreach (var (key, tensor) in expected.Where(kv => kv.Value.is_floating_point()))
        {
            double worst = (actual[key] - tensor).abs().max().item<float>(), largest = tensor.abs().max().item<float>();
            worstRelative = Math.Max(worstRelative, worst / Math.Max(1, largest));
            Assert.True(worst <= RoundingTolerance * Math.Max(1, largest), $"{key}: max difference {worst:E2} (largest {largest:F3})");
        }
        Assert.Equal(onImages.Progress.History.Select(e => e.ValidationAccuracy), cached.Progress.History.Select(e => e.ValidationAccuracy));
        Assert.Equal(engine.Evaluate(RecipeWith(cache: false), dataset, onImages, null, default).Top1Accuracy,
            engine.Evaluate(RecipeWith(cache: true), dataset, cached, features, default).Top1Accuracy);
        output.WriteLine($"{name} last:{trainableStages}: {expected.Count} trained tensors, max relative difference {worstRelative:E2}");
    }

    /// <summary>
    /// With augmentation training runs on images, but the scored splits see the frozen stages' same output every epoch:
    /// they alone are cached, training ends with the very weights it reaches without them, and every epoch's validation
    /// and the final evaluation score as on images (to float rounding: the pass folds batch norms).
    /// </summary>
    [Theory]
    [InlineData("last:1")]
    [InlineData("head")]
    public void WithAugmentationTheScoredSplitsAloneAreCachedAndScoreAsOnImages(string freeze)
    {
        var family = ModelRegistry.Get("resnet18-cntk");
        string weights = WeightsFile(family);
        var dataset = DatasetLoader.Load(TuxPaintStamps.CreateImageFolder(Path.Combine(_root, "data"), perClass: 6, ["animals", "food"]),
            new DatasetOptions { ValidationFraction = 0.34, TestFraction = 0.34 });
        Recipe RecipeWith(bool cache) => new(family.Name, weights, FreezeMode.Parse(freeze), HeadDropout: 0, ResizeMode.Pad,
            new TrainingOptions { Epochs = 2, BatchSize = 4, Seed = 11, UseFeatureCache = cache, Augmentation = new Augmentation() });
        using var engine = new FineTuneEngine();

        var (prepared, features) = engine.Prepare(RecipeWith(cache: true), dataset, default);
        using var _ = features;
        Assert.False(prepared.FeatureCache);
        Assert.False(prepared.StacksTrials);
        Assert.False(features!.Holds(DatasetSplits.Train));
        Assert.Equal(dataset.Validation.Count, features.Split(DatasetSplits.Validation).Count);
        Assert.Equal(dataset.Test.Count, features.Split(DatasetSplits.Test).Count);

        TrainingState? cached = null, onImages = null;
        for (int epoch = 0; epoch < 2; epoch++)
        {
            cached = engine.Train(RecipeWith(cache: true), dataset, cached, features, maxSteps: 100, default).State;
            onImages = engine.Train(RecipeWith(cache: false), dataset, onImages, null, maxSteps: 100, default).State;
        }

        Assert.Equal(onImages!.Parts[TrainingSnapshot.ModelPart], cached!.Parts[TrainingSnapshot.ModelPart]);
        Assert.Equal(onImages.Progress.History.Select(e => e.ValidationAccuracy), cached.Progress.History.Select(e => e.ValidationAccuracy));
        Assert.All(onImages.Progress.History.Zip(cached.Progress.History), e => Assert.Equal(e.First.ValidationLoss, e.Second.ValidationLoss, 1e-4));
        var (expected, actual) = (engine.Evaluate(RecipeWith(cache: false), dataset, onImages, null, default),
            engine.Evaluate(RecipeWith(cache: true), dataset, cached, features, default));
        Assert.Equal(DatasetSplits.Test, actual.Split);
        Assert.Equal(expected.Top1Accuracy, actual.Top1Accuracy);
        Assert.Equal(expected.Loss, actual.Loss, 1e-4);

        // The scores do come from the cache: blank rows in its place score otherwise.
        using var scope = NewDisposeScope();
        var row = features.Split(DatasetSplits.Validation).All().shape[1..];
        using var blank = CachedFeatures.FromTensor(zeros([dataset.Validation.Count + dataset.Test.Count, .. row]),
            [(DatasetSplits.Validation, dataset.Validation.Count), (DatasetSplits.Test, dataset.Test.Count)], long.MaxValue);
        double blankTest = engine.Evaluate(RecipeWith(cache: true), dataset, cached, blank, default).Loss;
        double blankValidation = engine.Train(RecipeWith(cache: true), dataset, null, blank, maxSteps: 100, default).State.Progress.History[0].ValidationLoss;
        Assert.True(Math.Abs(blankTest - actual.Loss) > 1e-3, $"blank test rows scored {blankTest}, the cache's {actual.Loss}");
        Assert.True(Math.Abs(blankValidation - onImages.Progress.History[0].ValidationLoss) > 1e-3, $"blank validation rows scored {blankValidation}");
    }

    /// <summary>Past the cache's budget a run trains on images: what a stage boundary receives grows with the data (resnet18's layer4 input: 200 kB an image).</summary>
    [Fact]
    public void ACacheOverItsBudgetIsNotKeptAndTheRunTrainsOnImages()
    {
        var family = ModelRegistry.Get("resnet18-cntk");
        string weights = WeightsFile(family);
        var dataset = DatasetLoader.Load(TuxPaintStamps.CreateImageFolder(Path.Combine(_root, "data"), perClass: 3, ["animals", "food"]),
            new DatasetOptions { ValidationFraction = 0.4 });
        var recipe = new Recipe(family.Name, weights, FreezeMode.Last(1), HeadDropout: 0, ResizeMode.Pad, new TrainingOptions { Epochs = 1, BatchSize = 4 });
        using var engine = new FineTuneEngine();
        long perImage = 256L * 14 * 14 * sizeof(float);

        var (fits, kept) = engine.Prepare(recipe, dataset, default, maxCacheBytes: 6 * perImage);
        var (over, none) = engine.Prepare(recipe, dataset, default, maxCacheBytes: 6 * perImage - 1);

        Assert.True(fits.FeatureCache);
        using (kept)
        {
            Assert.Equal(6 * perImage, kept!.Shards.Sum(shard =>
            {
                using var file = new MemoryStream();
                kept.WriteShard(shard, file);
                return file.Length;
            }), (double)(6 * perImage) / 50);
        }
        Assert.False(over.FeatureCache);
        Assert.Null(none);
    }

    /// <summary>The bundled pretrained weights, or the ImageNet layout's random ones (what trains is compared, not what it learns).</summary>
    private string WeightsFile(ModelFamily family)
    {
        string path = Path.Combine(_root, $"{family.Name}.safetensors");
        using var scope = NewDisposeScope();
        if (family.BundledWeights is { } bundled)
        {
            StateDictFile.Write(bundled(), path, StateDictFormat.Safetensors);
            return path;
        }
        TorchSharp.torch.manual_seed(1);
        using var module = family.CreateImageNetLayout();
        StateDictFile.Write(module.state_dict(), path, StateDictFormat.Safetensors);
        return path;
    }
}
