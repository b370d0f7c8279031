using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Recipe;
using FineTune.Core.Training;

namespace FineTune.Workflow.Jobs;

/// <summary>From the user's spec to the Core library's recipe and dataset options.</summary>
public static class JobSpecMapping
{
    public static Recipe ToRecipe(this JobSpec spec, string weightsPath)
    {
        var t = spec.Training;
        return new Recipe(spec.Model, weightsPath, FreezeMode.Parse(spec.Freeze), spec.HeadDropout,
            spec.Dataset.Resize == "pad" ? ResizeMode.Pad : ResizeMode.CenterCrop,
            new TrainingOptions
            {
                Epochs = t.Epochs,
                BatchSize = t.BatchSize,
                Optimizer = t.Optimizer switch { "adam" => OptimizerKind.Adam, "adamw" => OptimizerKind.AdamW, _ => OptimizerKind.Sgd },
                LearningRate = t.LearningRate,
                Momentum = t.Momentum,
                Nesterov = t.Nesterov,
                WeightDecay = t.WeightDecay,
                Schedule = t.Schedule switch { "step" => ScheduleKind.Step, "cosine" => ScheduleKind.Cosine, _ => ScheduleKind.Constant },
                StepEpochs = t.StepEpochs,
                Gamma = t.Gamma,
                WarmupSteps = t.WarmupSteps,
                LabelSmoothing = t.LabelSmoothing,
                ClassWeightedLoss = t.ClassWeighted,
                GradientClipNorm = t.GradientClipNorm,
                EarlyStoppingPatience = t.EarlyStopping?.Patience,
                StoppingMetric = spec.StoppingMetric(),
                Seed = spec.Seed,
                Augmentation = t.Augmentation is { } a ? new Augmentation(a.RandomResizedCrop, a.HorizontalFlip, a.ColorJitter) : null,
                UseFeatureCache = t.FeatureCache,
            },
            spec.Device,
            spec.Tf32);
    }

    public static StoppingMetric StoppingMetric(this JobSpec spec) =>
        spec.Training.EarlyStopping?.Metric == "val_accuracy" ? Core.Training.StoppingMetric.ValidationAccuracy : Core.Training.StoppingMetric.ValidationLoss;

    public static DatasetOptions ToDatasetOptions(this JobSpec spec) => new()
    {
        ValidationFraction = spec.Dataset.ValidationFraction,
        TestFraction = spec.Dataset.TestFraction,
        SplitSeed = (int)(spec.Seed & int.MaxValue),
        MaxBadFraction = spec.Dataset.MaxBadFraction,
    };
}
