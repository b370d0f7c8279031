using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTune.Functions.Tests;

/// <summary>The blob-trigger function with a real DurableTaskClient of the in-process host on Azurite (the HTTP functions: FunctionsApiTests).</summary>
public sealed class BlobTriggerTests
{
    [Fact]
    public async Task JobBlobStartsOneRunNamedAfterTheBlobEvenWhenTriggeredTwice()
    {
        await using var host = await WorkflowHost.StartAsync();
        string dataset = await host.UploadDatasetAsync("tux", perClass: 5);
        const string name = "nightly/Pets Run.json";
        var jobs = new Azure.Storage.Blobs.BlobContainerClient(Azurite.ConnectionString, FineTuneBlobTrigger.Container);
        await jobs.CreateIfNotExistsAsync();
        try
        {
            await jobs.GetBlobClient(name).UploadAsync(BinaryData.FromString(
                $$"""{ "jobId": "ignored", "dataset": { "location": "{{dataset}}", "resize": "pad" }, "training": { "epochs": 1, "batchSize": 4 } }"""));
            var trigger = new FineTuneBlobTrigger(host.Host.Services.GetRequiredService<RunControl>(), NullLogger<FineTuneBlobTrigger>.Instance);

            await trigger.Run(jobs.GetBlobClient(name), name, host.Host.Client, default);
            await trigger.Run(jobs.GetBlobClient(name), name, host.Host.Client, default);

            string id = FineTuneBlobTrigger.InstanceId(name);
            Assert.Matches("^blob-nightly-pets-run-json-[0-9a-f]{8}$", id);
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            var final = await host.Host.Client.WaitForInstanceCompletionAsync(id, getInputsAndOutputs: true, timeout.Token);
            Assert.Equal(OrchestrationRuntimeStatus.Completed, final.RuntimeStatus);
            var runs = new List<OrchestrationMetadata>();
            await foreach (var run in host.Host.Client.GetAllInstancesAsync(new OrchestrationQuery())) runs.Add(run);
            Assert.Single(runs);
            Assert.Null(await host.Host.Client.GetInstanceAsync("ignored"));
        }
        finally
        {
            await jobs.DeleteIfExistsAsync();
        }
    }

    /// <summary>
    /// Issue 23: a job blob is read only up to the spec limit. A 3 MiB blob (and one just over the limit) starts
    /// nothing and is read no further than the limit and one byte.
    /// </summary>
    [Theory]
    [InlineData(3 * 1024 * 1024)]
    [InlineData(JobSpecReader.MaxBytes + 1)]
    public async Task JobBlobOverTheSpecLimitIsRefusedUnread(int length)
    {
        await using var host = await WorkflowHost.StartAsync();
        var jobs = new Azure.Storage.Blobs.BlobContainerClient(Azurite.ConnectionString, "jobs-" + Guid.NewGuid().ToString("N")[..8]);
        await jobs.CreateIfNotExistsAsync();
        try
        {
            // Valid JSON all the way: only its size is wrong.
            string json = $$"""{ "dataset": { "location": "blob:d/" }, "$schema": "{{new string('x', length - 50)}}" }""";
            var blob = jobs.GetBlobClient("big.json");
            await blob.UploadAsync(BinaryData.FromString(json));
            Assert.True(json.Length > JobSpecReader.MaxBytes);

            Assert.Null(await FineTuneBlobTrigger.ReadCappedAsync(blob, default));
            var trigger = new FineTuneBlobTrigger(host.Host.Services.GetRequiredService<RunControl>(), NullLogger<FineTuneBlobTrigger>.Instance);
            await trigger.Run(blob, "big.json", host.Host.Client, default);
            Assert.Null(await host.Host.Client.GetInstanceAsync(FineTuneBlobTrigger.InstanceId("big.json")));

            await blob.UploadAsync(BinaryData.FromString("""{ "dataset": { "location": "blob:d/" } }"""), overwrite: true);
            Assert.Equal("""{ "dataset": { "location": "blob:d/" } }""", await FineTuneBlobTrigger.ReadCappedAsync(blob, default));
        }
        finally
        {
            await jobs.DeleteIfExistsAsync();
        }
    }
}
