using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;

namespace FineTune.Core.Engine;

/// <summary>Everything that decides a fine-tune's result, given the dataset: same recipe, same weights.</summary>
public sealed record Recipe(
    string Family,
    string WeightsPath,
    FreezeMode Freeze,
    double HeadDropout,
    ResizeMode Resize,
    TrainingOptions Training,
    DeviceKind Device = DeviceKind.Auto,
    bool Tf32 = true,
    string? Weights = null)
{
    /// <summary>The builder laid out for <see cref="Preprocessing"/> (<see cref="ModelFamily.For"/>).</summary>
    public ModelFamily ModelFamily => ModelRegistry.Get(Family).For(Preprocessing);

    /// <summary>The input the weights were trained with (<see cref="Weights"/>: the job's weights source; a tag's own, else the builder's).</summary>
    public Preprocessing Preprocessing => ModelRegistry.Get(Family).PreprocessingFor(Weights) with { Resize = Resize };

    /// <summary>
    /// Whether the feature cache may apply, as far as the recipe alone decides: asked for, no augmentation, something frozen
    /// (the head alone or the last stages train). <see cref="FeatureCache.IsExact"/> checks the built network too (dropout
    /// before the boundary, a forward that can start there).
    /// </summary>
    public bool MayCacheFeatures => MayCacheEvaluationFeatures && Training.Augmentation is null;

    /// <summary>
    /// Whether the validation and test splits' features may be cached: augmentation changes the training images only, so
    /// with it the frozen part still gives each scored image the same output every epoch.
    /// </summary>
    public bool MayCacheEvaluationFeatures => Training.UseFeatureCache && Freeze != FreezeMode.Full;
}

/// <summary>What "prepare model" found: the head, what trains, and whether the feature cache applies.</summary>
public sealed record PreparedModel(
    IReadOnlyList<string> Classes,
    FreezeReport Freeze,
    int StepsPerEpoch,
    bool FeatureCache)
{
    /// <summary>Whether a sweep's trials of this model can train together (<see cref="StackedHeads"/>): cached features and a linear head.</summary>
    public bool StacksTrials { get; init; }

    /// <summary>
    /// When the cache applies to more images than one shard of the feature pass takes, the pass's shards, left to
    /// <see cref="FineTuneEngine.ComputeShard"/> (each on any worker) instead of computed by the preparation; else empty.
    /// </summary>
    public IReadOnlyList<FeatureShardRange> PassShards { get; init; } = [];
}

/// <summary>A stack of trials between two calls: every member's tensors (safetensors bytes) and where each stands.</summary>
public sealed record StackState(byte[] Tensors, IReadOnlyList<StackMemberProgress> Members);


/// <summary>A checkpoint's content: its parts (tensors as bytes) and the training progress.</summary>
public sealed record TrainingState(IReadOnlyDictionary<string, byte[]> Parts, TrainingProgress Progress);

/// <summary>What one training chunk left: the new state (a finished epoch joins its history) and the last step's loss, null when no step ran.</summary>
public sealed record ChunkOutcome(TrainingState State, double? LastLoss);

/// <summary>
/// The head's convex optimum beside SGD's best epoch (<see cref="FineTuneEngine.SolveHead"/>): the weight decay chosen on
/// validation, both scored there, and <see cref="State"/>, the best epoch's checkpoint with the optimum as its head, when
/// the optimum scores better by the run's stopping metric (null: the best epoch stays).
/// </summary>
public sealed record HeadSolution(double WeightDecay, double ValidationLoss, double ValidationAccuracy, double EpochValidationLoss,
    double EpochValidationAccuracy, TrainingState? State);
