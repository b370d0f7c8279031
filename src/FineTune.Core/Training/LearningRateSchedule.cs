using System.Text.Json.Serialization;

namespace FineTune.Core.Training;

[JsonConverter(typeof(ScheduleKindJson))]
public enum ScheduleKind { Constant, Step, Cosine }

/// <summary>A schedule: its name in job specs and the rate it gives at a point of training, before warmup.</summary>
public sealed record ScheduleChoice(ScheduleKind Value, string Name, string Description,
    Func<TrainingOptions, int, long, long, double> Rate) : Choice<ScheduleKind>(Value, Name, Description);

/// <summary>The learning rate as a pure function of the position in training, so a resumed run needs no scheduler state.</summary>
public static class LearningRateSchedule
{
    /// <summary>Rates by (options, epoch, global step, total steps); adding a schedule is a member of <see cref="ScheduleKind"/> and its entry here.</summary>
    public static readonly ChoiceTable<ScheduleKind, ScheduleChoice> Choices = new(
        new(ScheduleKind.Constant, "constant", "the learning rate as given: the seed recipe",
            (o, _, _, _) => o.LearningRate),
        new(ScheduleKind.Step, "step", "multiplied by gamma every stepEpochs epochs",
            (o, epoch, _, _) => o.LearningRate * Math.Pow(o.Gamma, epoch / Math.Max(1, o.StepEpochs))),
        new(ScheduleKind.Cosine, "cosine", "cosine decay to zero over all steps",
            (o, _, step, total) => o.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(step, total) / Math.Max(1, total)))));

    public static double At(TrainingOptions options, int epoch, long globalStep, long totalSteps)
    {
        double rate = Choices[options.Schedule].Rate(options, epoch, globalStep, totalSteps);
        if (options.WarmupSteps > 0 && globalStep < options.WarmupSteps)
            rate *= (globalStep + 1.0) / options.WarmupSteps;
        return rate;
    }
}

public sealed class ScheduleKindJson() : ChoiceJsonConverter<ScheduleKind, ScheduleChoice>(LearningRateSchedule.Choices);
