using FineTune.Core.Data;

namespace FineTune.Core.Training;

/// <summary>
/// Hyper-parameters of a fine-tune, and the one owner of their defaults (the job spec's are these). The defaults are
/// the seed recipe, SGD with lr 0.001 and momentum 0.9, for 20 epochs (on cached features an epoch costs milliseconds;
/// at 5 the defaults scored below the blog's 10-epoch loop), the best validation epoch kept; beside it the head's convex
/// optimum (<see cref="ConvexHead"/>), kept instead when it validates better: together they reach what a sweep of the
/// head's recipe finds (bench/DefaultRecipeBench).
/// </summary>
public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 20;
    public int BatchSize { get; init; } = 16;
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;
    public double LearningRate { get; init; } = 0.001;
    public double Momentum { get; init; } = 0.9;
    public bool Nesterov { get; init; }
    public double WeightDecay { get; init; }
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Constant;
    public int StepEpochs { get; init; } = 7;
    public double Gamma { get; init; } = 0.1;
    /// <summary>Steps over which the learning rate rises linearly from zero before the schedule applies.</summary>
    public int WarmupSteps { get; init; }
    public double LabelSmoothing { get; init; }
    /// <summary>Weigh each class's loss by N / (classes · count), for imbalanced data.</summary>
    public bool ClassWeightedLoss { get; init; }
    /// <summary>Clip the gradients' global L2 norm to this; off when null.</summary>
    public double? GradientClipNorm { get; init; }
    /// <summary>Stop after this many epochs without improvement of <see cref="StoppingMetric"/>; off when null.</summary>
    public int? EarlyStoppingPatience { get; init; }
    public StoppingMetric StoppingMetric { get; init; } = StoppingMetric.ValidationLoss;
    public long Seed { get; init; }
    public Augmentation? Augmentation { get; init; }
    /// <summary>Train the head on cached backbone features when that gives the same result (see <see cref="FeatureCache"/>).</summary>
    public bool UseFeatureCache { get; init; } = true;
    /// <summary>
    /// When the head alone trains on cached features, also solve it to its convex optimum (<see cref="HeadSolver"/>) and keep
    /// that instead of the best epoch when it scores better on validation.
    /// </summary>
    public bool ConvexHead { get; init; } = true;
}
