using FineTune.Core.Data;
using FineTune.Core.Engine;
using FineTune.Core.Training;

namespace FineTune.Workflow.Jobs;

/// <summary>From the user's spec to the Core library's recipe and dataset options.</summary>
public static class JobSpecMapping
{
    public static Recipe ToRecipe(this JobSpec spec, string weightsPath)
    {
        var t = spec.Training;
        return new Recipe(spec.Model, weightsPath, spec.Freeze, spec.HeadDropout, spec.Dataset.Resize,
            new TrainingOptions
            {
                Epochs = t.Epochs,
                BatchSize = t.BatchSize,
                Optimizer = t.Optimizer,
                LearningRate = t.LearningRate,
                Momentum = t.Momentum,
                Nesterov = t.Nesterov,
                WeightDecay = t.WeightDecay,
                Schedule = t.Schedule,
                StepEpochs = t.StepEpochs,
                Gamma = t.Gamma,
                WarmupSteps = t.WarmupSteps,
                LabelSmoothing = t.LabelSmoothing,
                ClassWeightedLoss = t.ClassWeighted,
                GradientClipNorm = t.GradientClipNorm,
                EarlyStoppingPatience = t.EarlyStopping?.Patience,
                StoppingMetric = spec.StoppingMetric(),
                Seed = spec.Seed,
                Augmentation = t.Augmentation?.ToAugmentation(),
                UseFeatureCache = t.FeatureCache,
                ConvexHead = t.SolvesConvexHead,
            },
            spec.Device,
            spec.Tf32,
            spec.Weights?.Source);
    }

    /// <summary>What picks the best epoch: the early-stopping metric, else <see cref="TrainingSpec.BestEpochMetric"/>, else validation loss.</summary>
    public static StoppingMetric StoppingMetric(this JobSpec spec) =>
        spec.Training.EarlyStopping?.Metric ?? spec.Training.BestEpochMetric ?? Core.Training.StoppingMetric.ValidationLoss;

    /// <summary>Core's augmentation; the spec must be valid (<see cref="JobSpecReader.Validate"/>).</summary>
    public static Augmentation ToAugmentation(this AugmentationSpec a)
    {
        var augmentation = new Augmentation(
            a.RandomResizedCrop, a.Hflip, a.ColorJitter, a.AutoAugment is { } policy ? AutoAugment.Parse(policy) : null,
            a.Reprob, a.Remode, a.Mixup, a.Cutmix, a.MixupProb, a.MixupSwitchProb);
        if (a.Scale is [var minScale, var maxScale]) augmentation = augmentation with { MinScale = minScale, MaxScale = maxScale };
        if (a.Ratio is [var minRatio, var maxRatio]) augmentation = augmentation with { MinRatio = minRatio, MaxRatio = maxRatio };
        return augmentation;
    }

    public static DatasetOptions ToDatasetOptions(this JobSpec spec) => new()
    {
        ValidationFraction = spec.Dataset.ValidationFraction,
        TestFraction = spec.Dataset.TestFraction,
        SplitSeed = (int)(spec.Seed & int.MaxValue),
        MaxBadFraction = spec.Dataset.MaxBadFraction,
    };
}
