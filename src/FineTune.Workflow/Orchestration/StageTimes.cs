using System.Diagnostics;

namespace FineTune.Workflow.Orchestration;

/// <summary>Seconds one stage of a run took, as the activity that ran it measured.</summary>
public sealed record StageTime(string Stage, double Seconds);

/// <summary>The stages a run's time is reported in, in the order they happen.</summary>
public static class Stages
{
    public const string Weights = "weights";
    public const string DatasetScan = "dataset scan";
    public const string FeaturePass = "feature pass";
    public const string Training = "training";
    public const string Checkpoints = "checkpoints";
    /// <summary>Solving the head to its convex optimum (<see cref="Core.Training.HeadSolver"/>) before evaluating.</summary>
    public const string ConvexHead = "convex head";
    public const string Evaluation = "evaluation";
    public const string Publish = "publish";
    public const string Plots = "plots";

    public static readonly IReadOnlyList<string> InOrder = [Weights, DatasetScan, FeaturePass, Training, Checkpoints, ConvexHead, Evaluation, Publish, Plots];

    /// <summary>Times summed per stage (training runs in many chunks), in <see cref="InOrder"/>.</summary>
    public static IReadOnlyList<StageTime> Total(IEnumerable<StageTime> times)
    {
        var sums = times.GroupBy(t => t.Stage).ToDictionary(g => g.Key, g => g.Sum(t => t.Seconds));
        return InOrder.Where(sums.ContainsKey).Select(stage => new StageTime(stage, sums[stage])).ToList();
    }
}

/// <summary>Measures the stages of one activity call.</summary>
public sealed class StageClock
{
    private readonly List<StageTime> _times = [];

    public IReadOnlyList<StageTime> Times => _times;

    public async Task<T> TimeAsync<T>(string stage, Func<Task<T>> work)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            return await work();
        }
        finally
        {
            _times.Add(new StageTime(stage, clock.Elapsed.TotalSeconds));
        }
    }

    public Task TimeAsync(string stage, Func<Task> work) => TimeAsync(stage, async () =>
    {
        await work();
        return true;
    });

    public T Time<T>(string stage, Func<T> work) => TimeAsync(stage, () => Task.FromResult(work())).GetAwaiter().GetResult();
}
