using FineTune.Workflow.Orchestration;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Converters;

namespace FineTune.Api.Tests;

public sealed class RunViewTests
{
    /// <summary>
    /// Continuing as new resets a durable instance's CreatedAt to its latest generation's (Durable Functions behaves so
    /// too, azure-functions-durable-extension#2088): a run shows the date its first generation put in its status.
    /// </summary>
    [Fact]
    public void ARunIsDatedByItsFirstGenerationNotItsLatest()
    {
        var first = new DateTime(2026, 12, 7, 1, 0, 0, DateTimeKind.Utc);
        var latest = new DateTimeOffset(2026, 12, 7, 3, 30, 0, TimeSpan.Zero);
        var status = new RunStatus(RunStage.Training, 4, 10, 2, 7, 0.5, null, null, null, null, CreatedAt: first);
        OrchestrationMetadata Instance(RunStatus? custom) => new(FineTuneOrchestrator.Name, "a-run")
        {
            DataConverter = JsonDataConverter.Default,
            RuntimeStatus = OrchestrationRuntimeStatus.Running,
            CreatedAt = latest,
            LastUpdatedAt = latest,
            SerializedCustomStatus = custom is null ? null : JsonDataConverter.Default.Serialize(custom),
        };

        Assert.Equal(new DateTimeOffset(first), RunView.Of("http://127.0.0.1:1/", Instance(status), withResult: false).CreatedAt);
        // A status written before runs carried their date (or none yet): the instance's own.
        Assert.Equal(latest, RunView.Of("http://127.0.0.1:1/", Instance(status with { CreatedAt = null }), withResult: false).CreatedAt);
        Assert.Equal(latest, RunView.Of("http://127.0.0.1:1/", Instance(null), withResult: false).CreatedAt);
    }
}
