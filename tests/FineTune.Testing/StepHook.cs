using FineTune.Core.Training;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Orchestration;

namespace FineTune.Testing;

/// <summary>A test's observer of training steps (<see cref="IStepObserver"/>), registered in a host's services.</summary>
public sealed class StepHook(Action<StepReport, CancellationToken> onStep) : IStepObserver
{
    public StepHook(Action<StepReport> onStep) : this((report, _) => onStep(report))
    {
    }

    public void OnStep(FineTuneJob job, StepReport report, CancellationToken stopping) => onStep(report, stopping);

    /// <summary>Steps since the run began: the sequence of a checkpoint taken after this step.</summary>
    public static long GlobalStep(StepReport report) => (long)report.Epoch * report.StepsPerEpoch + report.Step;
}
