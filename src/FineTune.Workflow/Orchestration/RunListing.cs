using Microsoft.DurableTask.Client;

namespace FineTune.Workflow.Orchestration;

/// <summary>One page of runs, newest first as the backend returns them; <see cref="ContinuationToken"/> asks for the next (null: last page).</summary>
public sealed record RunPage(IReadOnlyList<OrchestrationMetadata> Runs, string? ContinuationToken);

/// <summary>Lists runs a page at a time, so a listing costs one page whatever the number of runs.</summary>
public static class RunListing
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 500;

    public static async Task<RunPage> PageAsync(DurableTaskClient client, IReadOnlyList<OrchestrationRuntimeStatus>? statuses, int pageSize,
        string? continuationToken, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pageSize, MaxPageSize);
        var query = new OrchestrationQuery
        {
            Statuses = statuses is { Count: > 0 } ? statuses : null,
            FetchInputsAndOutputs = true,
            PageSize = pageSize,
            ContinuationToken = continuationToken,
        };
        await foreach (var page in client.GetAllInstancesAsync(query).AsPages(continuationToken, pageSize).WithCancellation(cancellationToken))
            return new RunPage(page.Values.Where(i => i.Name == FineTuneOrchestrator.Name).ToList(), page.ContinuationToken);
        return new RunPage([], null);
    }
}
