namespace FineTune.Core.Training;

/// <summary>What one epoch achieved.</summary>
public sealed record EpochMetrics(
    int Epoch,
    double TrainLoss,
    double TrainAccuracy,
    double ValidationLoss,
    double ValidationAccuracy,
    double LearningRate,
    double Seconds);

/// <summary>Per-epoch metrics with best-epoch tracking and the early-stopping rule.</summary>
public static class TrainingHistory
{
    public static double Score(EpochMetrics metrics, StoppingMetric metric) =>
        metric == StoppingMetric.ValidationAccuracy ? metrics.ValidationAccuracy : -metrics.ValidationLoss;

    /// <summary>The best epoch so far (the earliest on ties), or null before the first.</summary>
    public static EpochMetrics? Best(IReadOnlyList<EpochMetrics> history, StoppingMetric metric) =>
        history.Count == 0 ? null : history.MaxBy(m => (Score(m, metric), -m.Epoch));

    /// <summary>True once <paramref name="patience"/> epochs have passed since the best one.</summary>
    public static bool ShouldStop(IReadOnlyList<EpochMetrics> history, StoppingMetric metric, int? patience) =>
        patience is { } p && Best(history, metric) is { } best && history[^1].Epoch - best.Epoch >= p;
}
