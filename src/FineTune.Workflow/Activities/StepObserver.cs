using FineTune.Core.Training;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Activities;

/// <summary>
/// Told of every optimisation step <see cref="TrainChunk"/> takes, on the training thread. The workflow registers one that
/// does nothing; a host may register its own (the tests inject faults through it). An exception thrown here fails the
/// chunk as a failing step would.
/// </summary>
public interface IStepObserver
{
    /// <param name="stopping">cancelled once the chunk is to stop at its next step boundary (a cancel of the run seen, or the worker stopping)</param>
    void OnStep(FineTuneJob job, StepReport report, CancellationToken stopping);
}

/// <summary>The workflow's default: steps go unobserved.</summary>
internal sealed class NoStepObserver : IStepObserver
{
    public void OnStep(FineTuneJob job, StepReport report, CancellationToken stopping)
    {
    }
}
