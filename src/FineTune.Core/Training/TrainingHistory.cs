using System.Text.Json.Serialization;

namespace FineTune.Core.Training;

[JsonConverter(typeof(StoppingMetricJson))]
public enum StoppingMetric { ValidationLoss, ValidationAccuracy }

/// <summary>A metric that picks the best epoch and drives early stopping: its name in job specs and its score (higher is better).</summary>
public sealed record StoppingMetricChoice(StoppingMetric Value, string Name, string Description, Func<EpochMetrics, double> Score)
    : Choice<StoppingMetric>(Value, Name, Description);

/// <summary>The metrics by their names in job specs.</summary>
public static class StoppingMetrics
{
    public static readonly ChoiceTable<StoppingMetric, StoppingMetricChoice> Choices = new(
        new(StoppingMetric.ValidationLoss, "val_loss", "lowest validation loss", m => -m.ValidationLoss),
        new(StoppingMetric.ValidationAccuracy, "val_accuracy", "highest validation accuracy", m => m.ValidationAccuracy));
}

public sealed class StoppingMetricJson() : ChoiceJsonConverter<StoppingMetric, StoppingMetricChoice>(StoppingMetrics.Choices);

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
    public static double Score(EpochMetrics metrics, StoppingMetric metric) => StoppingMetrics.Choices[metric].Score(metrics);

    /// <summary>The best epoch so far (the earliest on ties), or null before the first.</summary>
    public static EpochMetrics? Best(IReadOnlyList<EpochMetrics> history, StoppingMetric metric) =>
        history.Count == 0 ? null : history.MaxBy(m => (Score(m, metric), -m.Epoch));

    /// <summary>
    /// A run's epochs before <paramref name="later"/> (what a training chunk returns: the epochs from the one it started in
    /// on, none when it completed none) and then those: a resumed or repeated chunk replaces what it trained again.
    /// </summary>
    public static IReadOnlyList<EpochMetrics> Merged(IReadOnlyList<EpochMetrics> earlier, IReadOnlyList<EpochMetrics> later) =>
        later is [var first, ..] ? [.. earlier.Where(e => e.Epoch < first.Epoch), .. later] : earlier;

    /// <summary>True once <paramref name="patience"/> epochs have passed since the best one.</summary>
    public static bool ShouldStop(IReadOnlyList<EpochMetrics> history, StoppingMetric metric, int? patience) =>
        patience is { } p && Best(history, metric) is { } best && history[^1].Epoch - best.Epoch >= p;
}
