namespace FineTune.Core.Training;

/// <summary>The learning rate as a pure function of the position in training, so a resumed run needs no scheduler state.</summary>
public static class LearningRateSchedule
{
    public static double At(TrainingOptions options, int epoch, long globalStep, long totalSteps)
    {
        double rate = options.Schedule switch
        {
            ScheduleKind.Step => options.LearningRate * Math.Pow(options.Gamma, epoch / Math.Max(1, options.StepEpochs)),
            ScheduleKind.Cosine => options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(globalStep, totalSteps) / Math.Max(1, totalSteps))),
            _ => options.LearningRate,
        };
        if (options.WarmupSteps > 0 && globalStep < options.WarmupSteps)
            rate *= (globalStep + 1.0) / options.WarmupSteps;
        return rate;
    }
}
