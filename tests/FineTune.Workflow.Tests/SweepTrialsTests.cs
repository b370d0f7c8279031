using System.Collections.Concurrent;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTune.Workflow.Tests;

/// <summary>A sweep's trials as <see cref="RunCatalog.TrialsAsync"/> reads them from what training records (its metrics.jsonl).</summary>
public sealed class SweepTrialsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sweep-trials-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task EachTrialsStateComesFromItsRecordedEpochsItsPatienceAndTheTerminatedTrials()
    {
        var spec = JobSpecReader.Read("""
            { "jobId": "sw", "dataset": { "location": "blob:datasets/pets/" },
              "training": { "epochs": 4, "earlyStopping": { "patience": 1, "metric": "val_loss" } },
              "sweep": { "metric": "val_loss", "parameters": { "training.learningRate": [0.001, 0.01, 0.1, 0.3] } } }
            """, localPaths: false);
        var store = new ArtifactStoreOptions { LocalRoot = _dir }.Create();
        var metrics = new RunMetrics(store, NullLogger<RunMetrics>.Instance);
        static EpochMetrics Epoch(int epoch, double validationLoss) => new(epoch, 1, 0.5, validationLoss, 0.25 * (epoch + 1), 0.01, 1);
        await metrics.RecordAsync("sw-t1", "sw", 4, [Epoch(0, 0.9), Epoch(1, 0.8), Epoch(2, 0.7), Epoch(3, 0.6)], 0, CancellationToken.None);
        // Worse than its best for `patience` epochs: its patience stopped it.
        await metrics.RecordAsync("sw-t2", "sw", 4, [Epoch(0, 0.9), Epoch(1, 1.2)], 0, CancellationToken.None);
        await metrics.RecordAsync("sw-t3", "sw", 4, [Epoch(0, 0.9)], 0, CancellationToken.None);
        var catalog = new RunCatalog(store, new CheckpointStore(store, NullLogger<CheckpointStore>.Instance));

        var trials = await catalog.TrialsAsync("sw", spec, null, CancellationToken.None);

        Assert.Equal([("sw-t1", TrialStates.Completed, 4), ("sw-t2", TrialStates.StoppedEarly, 2), ("sw-t3", TrialStates.Running, 1), ("sw-t4", TrialStates.Pending, 0)],
            trials.Select(t => (t.JobId, t.State, t.EpochsDone)));
        Assert.All(trials, t => Assert.Equal(4, t.Epochs));
        Assert.Equal((1.2, 0.5), (trials[1].ValidationLoss, trials[1].ValidationAccuracy));
        Assert.Null(trials[3].ValidationAccuracy);
        Assert.Equal(0.1, trials[2].Parameters!["training.learningRate"].GetDouble());
        // Early termination is the orchestrator's decision, not in the trial's epochs.
        Assert.Equal(TrialStates.Terminated, (await catalog.TrialsAsync("sw", spec, [3], CancellationToken.None))[2].State);
    }

    /// <summary>
    /// A follower polls a sweep every few hundred milliseconds: each poll reads the metrics of the trials whose metrics
    /// changed, and never those of a trial with none yet (on Azure Storage each such read is a request answered 404).
    /// </summary>
    [Fact]
    public async Task EachPollReadsOnlyTheTrialsWhoseMetricsChanged()
    {
        var spec = JobSpecReader.Read("""
            { "jobId": "sw", "dataset": { "location": "blob:datasets/pets/" }, "training": { "epochs": 4 },
              "sweep": { "parameters": { "training.learningRate": [0.001, 0.01, 0.1] } } }
            """, localPaths: false);
        var reads = new ReadCountingStore(new ArtifactStoreOptions { LocalRoot = _dir }.Create());
        var metrics = new RunMetrics(reads, NullLogger<RunMetrics>.Instance);
        static EpochMetrics Epoch(int epoch) => new(epoch, 1, 0.5, 0.9, 0.5, 0.01, 1);
        await metrics.RecordAsync("sw-t1", "sw", 4, [Epoch(0)], 0, CancellationToken.None);
        await metrics.RecordAsync("sw-t2", "sw", 4, [Epoch(0)], 0, CancellationToken.None);
        var catalog = new RunCatalog(reads, new CheckpointStore(reads, NullLogger<CheckpointStore>.Instance));

        // Each trial's epochs done, in trial order.
        async Task<string> Poll() => string.Join(' ', (await catalog.TrialsAsync("sw", spec, null, CancellationToken.None)).Select(t => t.EpochsDone));

        Assert.Equal("1 1 0", await Poll());
        Assert.Equal(["runs/sw-t1/reports/metrics.jsonl", "runs/sw-t2/reports/metrics.jsonl"], reads.Metrics());
        reads.Names.Clear();
        Assert.Equal("1 1 0", await Poll());
        Assert.Empty(reads.Metrics());

        await metrics.RecordAsync("sw-t2", "sw", 4, [Epoch(0), Epoch(1)], 1, CancellationToken.None);
        Assert.Equal("1 2 0", await Poll());
        Assert.Equal(["runs/sw-t2/reports/metrics.jsonl"], reads.Metrics());
    }

    /// <summary>A store that notes the name of every artifact opened for reading.</summary>
    private sealed class ReadCountingStore(IArtifactStore inner) : IArtifactStore
    {
        public ConcurrentQueue<string> Names { get; } = new();

        public string Location => inner.Location;

        public string[] Metrics() => [.. Names.Where(n => n.EndsWith("/" + RunLayout.MetricsFile, StringComparison.Ordinal)).Order(StringComparer.Ordinal)];

        public Task WriteAsync(string name, Stream content, WriteMode mode, CancellationToken cancellationToken) => inner.WriteAsync(name, content, mode, cancellationToken);

        public Task<Stream> OpenReadAsync(string name, CancellationToken cancellationToken)
        {
            Names.Enqueue(name);
            return inner.OpenReadAsync(name, cancellationToken);
        }

        public Task<bool> ExistsAsync(string name, CancellationToken cancellationToken) => inner.ExistsAsync(name, cancellationToken);

        public IAsyncEnumerable<ArtifactInfo> ListAsync(string prefix, CancellationToken cancellationToken) => inner.ListAsync(prefix, cancellationToken);

        public Task<bool> DeleteAsync(string name, CancellationToken cancellationToken) => inner.DeleteAsync(name, cancellationToken);
    }
}
