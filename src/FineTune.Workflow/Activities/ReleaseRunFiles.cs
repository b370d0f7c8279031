using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.Logging;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The last step of a run, whether it completed or failed: removes the runs' scratch on the worker that runs it
/// (<see cref="RunScratch.Release"/>). Never fails the run: a folder it cannot remove is logged, and purge tries again.
/// </summary>
[DurableTask(ActivityNames.ReleaseRunFiles)]
public sealed partial class ReleaseRunFiles(RunScratch scratch, ILogger<ReleaseRunFiles> logger) : TaskActivity<string[], int>
{
    public override Task<int> RunAsync(TaskActivityContext context, string[] runIds)
    {
        int released = 0;
        foreach (var runId in runIds)
        {
            try
            {
                scratch.Release(runId);
                released++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                NotRemoved(logger, e, runId);
            }
        }
        return Task.FromResult(released);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "the scratch of run {RunId} was not removed")]
    private static partial void NotRemoved(ILogger logger, Exception exception, string runId);
}
