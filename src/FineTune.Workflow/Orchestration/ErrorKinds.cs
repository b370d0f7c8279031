using FineTune.Core;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// Why a run failed, as every host reports it (the HTTP status's <c>errorKind</c>, the command line's exit code):
/// the input cannot work (<see cref="BadInput"/>: fix it, retrying will not help) or the service failed
/// (<see cref="System"/>).
/// </summary>
public static class ErrorKinds
{
    public const string BadInput = "badInput";
    public const string System = "system";

    /// <summary>
    /// Null for a run that has not failed. From its failure details where the backend keeps them; else from its custom
    /// status (<see cref="Failed"/>): the Azure Storage provider keeps a failed run's message only.
    /// </summary>
    public static string? Of(OrchestrationMetadata run) => run.RuntimeStatus != OrchestrationRuntimeStatus.Failed ? null
        : Of(run.FailureDetails) ?? (run.SerializedCustomStatus is null ? null : run.ReadCustomStatusAs<RunStatus>()?.ErrorKind) ?? System;

    /// <summary>The custom status an orchestration sets as it fails with <paramref name="failure"/>: its kind, kept by every backend.</summary>
    public static RunStatus Failed(Exception failure) => new(RunStage.Failed, 0, 0, 0, 0, null, null, null, null, null, ErrorKind: failure switch
    {
        TaskFailedException activity => Of(activity.FailureDetails),
        BadInputException => BadInput,
        _ => System,
    });

    /// <summary>Null for no failure. The orchestration's failure wraps the activity's, so every level is checked.</summary>
    public static string? Of(TaskFailureDetails? failure)
    {
        if (failure is null) return null;
        for (var level = failure; level is not null; level = level.InnerFailure)
            if (FailureTypes.Is<BadInputException>(level)) return BadInput;
        return System;
    }
}
