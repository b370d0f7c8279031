using FineTune.Workflow.Orchestration;
using Microsoft.Azure.Functions.Worker;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.Logging;

namespace FineTune.Functions;

/// <summary>Once a day, purges the runs older than the retention setting (Workflow:RetentionDays); their published models stay.</summary>
public sealed partial class RetentionTimer(RunControl runs, ILogger<RetentionTimer> logger)
{
    [Function("PurgeExpiredRuns")]
    public async Task Run([TimerTrigger("0 0 3 * * *")] TimerInfo timer, [DurableClient] DurableTaskClient client, CancellationToken cancellationToken)
    {
        foreach (var id in await runs.PurgeExpiredAsync(new DurableClientScheduler(client), DateTimeOffset.UtcNow, cancellationToken))
            Purged(id);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {Id} was older than the retention setting: purged, its published model kept")]
    private partial void Purged(string id);
}
