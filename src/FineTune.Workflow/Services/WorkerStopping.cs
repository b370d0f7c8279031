using Microsoft.Extensions.Hosting;

namespace FineTune.Workflow.Services;

/// <summary>
/// The token activities pass down (the Durable Task SDK gives activities none): cancelled when this worker's host
/// stops (Ctrl-C in <c>finetune</c>, scale-in or shutdown of a Functions worker), so a chunk stops within a
/// step and the run goes on elsewhere from its last checkpoint.
/// </summary>
public sealed class WorkerStopping(IHostApplicationLifetime? lifetime = null)
{
    public CancellationToken Token => lifetime?.ApplicationStopping ?? CancellationToken.None;
}
