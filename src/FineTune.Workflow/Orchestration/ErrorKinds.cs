using FineTune.Core;
using Microsoft.DurableTask;

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

    /// <summary>Null for a run that has not failed. The orchestration's failure wraps the activity's, so every level is checked.</summary>
    public static string? Of(TaskFailureDetails? failure)
    {
        if (failure is null) return null;
        for (var level = failure; level is not null; level = level.InnerFailure)
            if (FailureTypes.Is<BadInputException>(level)) return BadInput;
        return System;
    }

}
