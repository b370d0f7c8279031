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
            string content = (await jobs.GetBlobClient(name).DownloadContentAsync()).Value.Content.ToString();
            var trigger = new FineTuneBlobTrigger(host.Host.Services.GetRequiredService<RunControl>(), NullLogger<FineTuneBlobTrigger>.Instance);

            await trigger.Run(content, name, host.Host.Client, default);
            await trigger.Run(content, name, host.Host.Client, default);

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
}
