using System.Text;
using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Storage;
using Microsoft.Extensions.Logging;

namespace FineTune.Workflow.Services;

/// <summary>One line of a run's <c>metrics.jsonl</c>: a finished epoch (epochs counted from 1, as users read them).</summary>
public sealed record EpochLine(string RunId, int Epoch, int Epochs, double TrainLoss, double TrainAccuracy, double ValidationLoss,
    double ValidationAccuracy, double LearningRate, double Seconds);

/// <summary>
/// What a run reports as it trains: a structured log line and the <see cref="WorkflowMetrics"/> per finished epoch, and the
/// run's <c>metrics.jsonl</c> rewritten whole (the artifact store writes whole objects) after every chunk that finished one.
/// </summary>
public sealed partial class RunMetrics(IArtifactStore store, ILogger<RunMetrics> logger)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <param name="history">every finished epoch so far</param>
    /// <param name="alreadyReported">how many of them an earlier chunk reported</param>
    /// <param name="sweepId">the sweep when the run is one of its trials</param>
    public async Task RecordAsync(string runId, string? sweepId, int epochs, IReadOnlyList<EpochMetrics> history, int alreadyReported, CancellationToken cancellationToken)
    {
        if (history.Count <= alreadyReported) return;
        foreach (var epoch in history.Skip(alreadyReported))
        {
            EpochFinished(runId, epoch.Epoch + 1, epochs, epoch.TrainLoss, epoch.TrainAccuracy, epoch.ValidationLoss, epoch.ValidationAccuracy, epoch.Seconds);
            WorkflowMetrics.EpochFinished(runId, sweepId, epoch);
        }
        await WriteAsync(runId, epochs, history, cancellationToken);
    }

    /// <summary>
    /// The run's metrics.jsonl written from <paramref name="history"/> with nothing logged: what a retried call writes again from
    /// the checkpoint it finds, as the call that saved it may have been killed before its record.
    /// </summary>
    public async Task WriteAsync(string runId, int epochs, IReadOnlyList<EpochMetrics> history, CancellationToken cancellationToken)
    {
        if (history.Count == 0) return;
        var lines = new StringBuilder();
        foreach (var epoch in history)
            lines.Append(JsonSerializer.Serialize(new EpochLine(runId, epoch.Epoch + 1, epochs, epoch.TrainLoss, epoch.TrainAccuracy,
                epoch.ValidationLoss, epoch.ValidationAccuracy, epoch.LearningRate, epoch.Seconds), Json)).Append('\n');
        using var content = new MemoryStream(Encoding.UTF8.GetBytes(lines.ToString()), writable: false);
        await store.WriteAsync(new RunLayout(runId).Metrics, content, WriteMode.Overwrite, cancellationToken);
    }

    /// <summary>The run's finished epochs as its metrics.jsonl holds them; none before its first epoch finishes.</summary>
    public static async Task<IReadOnlyList<EpochLine>> ReadAsync(IArtifactStore store, string runId, CancellationToken cancellationToken)
    {
        string text;
        try
        {
            await using var stream = await store.OpenReadAsync(new RunLayout(runId).Metrics, cancellationToken);
            text = await new StreamReader(stream).ReadToEndAsync(cancellationToken);
        }
        catch (ArtifactNotFoundException)
        {
            return [];
        }
        return [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonSerializer.Deserialize<EpochLine>(line, Json)!)];
    }

    /// <summary>The run's finished epochs as its metrics.jsonl holds them, as training recorded them.</summary>
    public static async Task<IReadOnlyList<EpochMetrics>> HistoryAsync(IArtifactStore store, string runId, CancellationToken cancellationToken) =>
        [.. (await ReadAsync(store, runId, cancellationToken)).Select(line => new EpochMetrics(line.Epoch - 1, line.TrainLoss, line.TrainAccuracy,
            line.ValidationLoss, line.ValidationAccuracy, line.LearningRate, line.Seconds))];

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Run {RunId} epoch {Epoch}/{Epochs}: train loss {TrainLoss:F4}, train accuracy {TrainAccuracy:F4}, val loss {ValidationLoss:F4}, val accuracy {ValidationAccuracy:F4}, {Seconds:F1} s")]
    private partial void EpochFinished(string runId, int epoch, int epochs, double trainLoss, double trainAccuracy, double validationLoss, double validationAccuracy, double seconds);
}
