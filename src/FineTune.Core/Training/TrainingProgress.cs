namespace FineTune.Core.Training;

/// <summary>
/// The small, JSON-serialisable half of a checkpoint (the tensors are the <see cref="TrainingSnapshot"/>
/// parts): where training stands and every finished epoch's metrics. Learning-rate schedule, data order and
/// random draws are functions of the position, so nothing else is needed to continue bit for bit.
/// </summary>
public sealed record TrainingProgress(TrainerPosition Position, IReadOnlyList<EpochMetrics> History)
{
    public static TrainingProgress Start => new(TrainerPosition.Start, []);

    public EpochMetrics? Best(StoppingMetric metric) => TrainingHistory.Best(History, metric);
}
