using System.Text.Json;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace FineTune.Workflow.Tests;

/// <summary>
/// Issue 23, admission control: a job estimated past the worker's memory budget is refused at submit, naming the estimate.
/// </summary>
public sealed class AdmissionTests(ITestOutputHelper log)
{
    private static JobSpec Spec(string jobId, string dataset) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId,
        dataset = new { location = dataset, resize = "pad" },
        training = new { epochs = 1, batchSize = 4 },
    }, WireJson.Options), localPaths: false);

    [Fact]
    public void SpecPastTheMemoryBudgetIsRefusedWithTheEstimate()
    {
        var options = new WorkflowOptions { MemoryBudgetMB = 4000 };
        var fits = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "freeze": "full", "training": { "batchSize": 64 } }""", localPaths: false);
        Assert.Empty(JobMemory.Check(fits, options));

        var big = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "freeze": "full", "training": { "batchSize": 256 } }""", localPaths: false);
        var error = Assert.Single(JobMemory.Check(big, options));
        log.WriteLine(error.ToString());
        Assert.Equal("training.batchSize", error.Field);
        Assert.Contains($"~{JobMemory.Estimate(big, options).TotalMegabytes} MB", error.Reason);
        Assert.Contains("4000 MB", error.Reason);

        // Each trial fits: however many at once the sweep asks for, its trials queue for slots instead (RunSlots).
        var sweep = JobSpecReader.Read("""
            { "dataset": { "location": "blob:d/" }, "freeze": "full", "training": { "batchSize": 64 },
              "sweep": { "parameters": { "training.learningRate": [0.1, 0.01, 0.001, 0.0001] }, "parallelism": 64 } }
            """, localPaths: false);
        Assert.Empty(JobMemory.Check(sweep, options));
        var bigTrials = JobSpecReader.Read("""
            { "dataset": { "location": "blob:d/" }, "freeze": "full",
              "sweep": { "parameters": { "training.batchSize": [64, 256] } } }
            """, localPaths: false);
        var trial = Assert.Single(JobMemory.Check(bigTrials, options));
        log.WriteLine(trial.ToString());
        Assert.Contains("the sweep's largest trial", trial.Reason);
        Assert.Contains("batch size 256", trial.Reason);
    }

    [Fact]
    public void DecodedImagesARunMayKeepAreCounted()
    {
        var options = new WorkflowOptions { DecodedImagesBytes = 300L << 20 };
        var plain = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "freeze": "last:1" }""", localPaths: false);
        // Augmented training images are decoded afresh each epoch, but the images it scores are kept.
        var augmented = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "freeze": "last:1", "training": { "augmentation": {} } }""", localPaths: false);

        var kept = JobMemory.Estimate(plain, options);
        Assert.Equal(300L << 20, kept.DecodedImages);
        Assert.Contains("decoded images 300 MB", kept.ToString());
        Assert.Equal(kept.TotalBytes - (300L << 20), JobMemory.Estimate(plain, new WorkflowOptions { DecodedImagesBytes = 0 }).TotalBytes);
        Assert.Equal(300L << 20, JobMemory.Estimate(augmented, options).DecodedImages);
    }

    [Fact]
    public async Task SubmitRefusesASpecPastTheBudgetBeforeBindingItsId()
    {
        string work = Directory.CreateTempSubdirectory("admission-").FullName;
        try
        {
            var store = new Storage.LocalFolderArtifactStore(work);
            var options = Options.Create(new WorkflowOptions { MemoryBudgetMB = 2000, WorkDirectory = Path.Combine(work, "cache") });
            var runs = new RunControl(store, new UserUploads(store), new RunScratch(options), new RunSlots(options, TimeProvider.System), options);
            var big = JobSpecReader.Read("""{ "jobId": "too-big", "dataset": { "location": "blob:d/" }, "freeze": "full", "training": { "batchSize": 256 } }""", localPaths: false);

            var refused = await Assert.ThrowsAsync<InvalidJobSpecException>(() => new NeverScheduler().StartAsync(big, runs, default));

            Assert.Equal("training.batchSize", Assert.Single(refused.Errors).Field);
            Assert.Null(await runs.BoundSpecAsync("too-big", default));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private sealed class NeverScheduler : IRunScheduler
    {
        public Task<string?> HolderStatusAsync(string jobId, CancellationToken cancellationToken) => throw new InvalidOperationException("not reached");
        public Task ScheduleAsync(FineTuneJob job, CancellationToken cancellationToken) => throw new InvalidOperationException("not reached");
        public Task TerminateAsync(string jobId, string reason, CancellationToken cancellationToken) => throw new InvalidOperationException("not reached");
        public Task PurgeHistoryAsync(string jobId, CancellationToken cancellationToken) => throw new InvalidOperationException("not reached");
    }
}
