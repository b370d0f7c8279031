using System.Text.Json.Serialization;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;

namespace FineTune.Workflow.Jobs;

/// <summary>
/// A fine-tune job as users write it (JSON, camelCase). Every field but the dataset has the seed recipe's
/// default: resnet18-cntk with its bundled ImageNet weights, frozen, a new head trained by SGD (lr 0.001,
/// momentum 0.9). Choices are Core's types, read and written as their names by the converters on those types
/// (see <see cref="Core.ChoiceTable{T, TChoice}"/>), so an unknown name is a field error.
/// </summary>
public sealed record JobSpec
{
    public const int CurrentVersion = 1;

    /// <summary>Where editors find the job schema (<c>finetune schema</c>); read and ignored, so a job file can name it.</summary>
    [JsonPropertyName("$schema")]
    public string? Schema { get; init; }
    /// <summary>Largest batch when backbone stages train: their activations are kept for the backward pass.</summary>
    public const int MaxBackboneBatchSize = 256;

    /// <summary>Largest batch when only the head trains (on features, a few KB per image).</summary>
    public const int MaxHeadBatchSize = 4096;

    public int Version { get; init; } = CurrentVersion;
    /// <summary>Names the run (and its durable instance); derived from the spec when absent.</summary>
    public string? JobId { get; init; }
    public string Model { get; init; } = "resnet18-cntk";
    public WeightsSpec Weights { get; init; } = new();
    public DatasetSpec Dataset { get; init; } = new();
    /// <summary><see cref="FreezeMode.Forms"/></summary>
    public FreezeMode Freeze { get; init; } = FreezeMode.Head;
    public double HeadDropout { get; init; }
    public TrainingSpec Training { get; init; } = new();
    public long Seed { get; init; }
    /// <summary><see cref="TorchDevice.Choices"/></summary>
    public DeviceKind Device { get; init; } = DeviceKind.Auto;
    /// <summary>TF32 matmuls and convolutions on CUDA GPUs that have them.</summary>
    public bool Tf32 { get; init; } = true;
    /// <summary>When given, the job is a hyper-parameter sweep: trials that set these fields differently.</summary>
    public SweepSpec? Sweep { get; init; }
    /// <summary>What the publish step writes besides the weights and the card. Left out of the JSON when absent, so specs without it keep their derived job ids.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public PublishSpec? Publish { get; init; }
}

public sealed record PublishSpec
{
    /// <summary>Also model.onnx beside model.safetensors: the model as an ONNX graph with its preprocessing in the metadata.</summary>
    public bool Onnx { get; init; }
}

public sealed record WeightsSpec
{
    /// <summary>bundled | blob:NAME | https URL | local path (command line only)</summary>
    public string Source { get; init; } = "bundled";
    public string? Sha256 { get; init; }
}

public sealed record DatasetSpec
{
    /// <summary>blob:PREFIX/ (class folders), blob:NAME.zip, blob:NAME.csv, blob:NAME.jsonl, or a local folder, .zip, .csv or .jsonl (command line only).</summary>
    public string Location { get; init; } = "";
    /// <summary>Share of each class held out for validation (best epoch, early stopping) when the dataset has no validation folder.</summary>
    public double ValidationFraction { get; init; } = 0.2;
    /// <summary>
    /// Share of each class held out for the final report when the dataset has no test folder; 0: no test set, the
    /// report is on validation. Left out of the JSON when 0, so specs without it keep their derived job ids.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double TestFraction { get; init; }
    /// <summary><see cref="ResizeModes.Choices"/></summary>
    public ResizeMode Resize { get; init; } = ResizeMode.CenterCrop;
    /// <summary>When given, the dataset's classes must be exactly these.</summary>
    public IReadOnlyList<string>? Classes { get; init; }
    public double MaxBadFraction { get; init; } = 0.05;
}

public sealed record TrainingSpec
{
    /// <summary>Core's training options own the defaults; the spec states them for the schema and the CLI's help.</summary>
    private static readonly TrainingOptions Defaults = new();

    public int Epochs { get; init; } = Defaults.Epochs;
    public int BatchSize { get; init; } = Defaults.BatchSize;
    /// <summary><see cref="Optimizers.Choices"/></summary>
    public OptimizerKind Optimizer { get; init; } = Defaults.Optimizer;
    public double LearningRate { get; init; } = Defaults.LearningRate;
    public double Momentum { get; init; } = Defaults.Momentum;
    public bool Nesterov { get; init; } = Defaults.Nesterov;
    public double WeightDecay { get; init; } = Defaults.WeightDecay;
    /// <summary><see cref="LearningRateSchedule.Choices"/></summary>
    public ScheduleKind Schedule { get; init; } = Defaults.Schedule;
    public int StepEpochs { get; init; } = Defaults.StepEpochs;
    public double Gamma { get; init; } = Defaults.Gamma;
    public int WarmupSteps { get; init; } = Defaults.WarmupSteps;
    public double LabelSmoothing { get; init; } = Defaults.LabelSmoothing;
    public bool ClassWeighted { get; init; } = Defaults.ClassWeightedLoss;
    public double? GradientClipNorm { get; init; } = Defaults.GradientClipNorm;
    public EarlyStoppingSpec? EarlyStopping { get; init; }
    /// <summary>What picks the best epoch when early stopping is off (its metric otherwise); validation loss when not given.</summary>
    public StoppingMetric? BestEpochMetric { get; init; }
    public AugmentationSpec? Augmentation { get; init; }
    public bool FeatureCache { get; init; } = Defaults.UseFeatureCache;
    /// <summary>
    /// Where the head alone trains on cached features, also solve it to its convex optimum (the weight decay chosen on
    /// validation) and publish that instead of the best epoch when it scores better on validation: on unless false. Left
    /// out of the JSON when not given, so specs without it keep their derived job ids.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? ConvexHead { get; init; }
    /// <summary><see cref="ConvexHead"/> as it applies: Core's default when not given.</summary>
    [JsonIgnore]
    public bool SolvesConvexHead => ConvexHead ?? Defaults.ConvexHead;
    /// <summary>Steps per durable activity call; an epoch longer than this is trained in several, each checkpointed.</summary>
    public int MaxStepsPerChunk { get; init; } = 500;
    public const int MaxStepsPerChunkLimit = 5000;
}

public sealed record EarlyStoppingSpec
{
    public int Patience { get; init; } = 3;
    /// <summary><see cref="StoppingMetrics.Choices"/></summary>
    public StoppingMetric Metric { get; init; } = new TrainingOptions().StoppingMetric;
}

/// <summary>
/// Train-time augmentation by timm's argument names (train.py's <c>--hflip</c>, <c>--color-jitter</c>, <c>--aa</c> as
/// create_transform's <c>auto_augment</c>, <c>--reprob</c>, <c>--remode</c>, <c>--mixup</c>, <c>--cutmix</c>,
/// <c>--mixup-prob</c>, <c>--mixup-switch-prob</c>); Core's <see cref="Augmentation"/> owns the defaults. Mixed
/// targets are smoothed by <c>training.labelSmoothing</c> (timm's <c>--smoothing</c>).
/// </summary>
public sealed record AugmentationSpec
{
    private static readonly Augmentation Defaults = new();

    public bool RandomResizedCrop { get; init; } = Defaults.RandomResizedCrop;
    /// <summary>RandomResizedCrop's range of area shares, [min, max]; [0.08, 1] when not given.</summary>
    public double[]? Scale { get; init; }
    /// <summary>RandomResizedCrop's range of aspect ratios (width / height), [min, max]; [3/4, 4/3] when not given.</summary>
    public double[]? Ratio { get; init; }
    /// <summary>Probability of a horizontal flip.</summary>
    public double Hflip { get; init; } = Defaults.FlipProbability;
    /// <summary>torchvision's ColorJitter strength for brightness, contrast and saturation; applied only without autoAugment, as in timm.</summary>
    public float ColorJitter { get; init; } = Defaults.ColorJitter;
    /// <summary><see cref="AutoAugment.Grammar"/></summary>
    public string? AutoAugment { get; init; }
    /// <summary>Probability of random erasing, after normalisation.</summary>
    public double Reprob { get; init; } = Defaults.EraseProbability;
    /// <summary><see cref="ErasingModes.Choices"/></summary>
    public ErasingMode Remode { get; init; } = Defaults.EraseMode;
    /// <summary>Mixup's Beta(α, α); 0 is off.</summary>
    public double Mixup { get; init; } = Defaults.MixupAlpha;
    /// <summary>CutMix's Beta(α, α); 0 is off.</summary>
    public double Cutmix { get; init; } = Defaults.CutmixAlpha;
    /// <summary>Probability that a batch is mixed when mixup or cutmix is on.</summary>
    public double MixupProb { get; init; } = Defaults.MixupProbability;
    /// <summary>Probability of CutMix rather than mixup when both are on.</summary>
    public double MixupSwitchProb { get; init; } = Defaults.MixupSwitchProbability;
}
