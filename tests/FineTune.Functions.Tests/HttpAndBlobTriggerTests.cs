using System.Text;
using System.Text.Json;
using FineTune.Workflow.Orchestration;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTune.Functions.Tests;

/// <summary>The HTTP and blob-trigger functions called with real requests and a real DurableTaskClient of the in-process host on Azurite.</summary>
public sealed class HttpAndBlobTriggerTests
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    [Fact]
    public async Task PostedJobRunsToCompletionAndIsVisibleThroughGetAndList()
    {
        await using var host = await WorkflowHost.StartAsync();
        string dataset = await host.UploadDatasetAsync("tux", perClass: 5);
        string body = $$"""{ "jobId": "api-run", "dataset": { "location": "{{dataset}}", "resize": "pad" }, "training": { "epochs": 2, "batchSize": 4 } }""";

        var started = await FineTuneHttp.Start(Request("POST", "/api/finetune", body), host.Host.Client);
        var again = await FineTuneHttp.Start(Request("POST", "/api/finetune", body), host.Host.Client);

        var accepted = Assert.IsType<AcceptedResult>(started);
        Assert.Equal("http://localhost/api/finetune/api-run", accepted.Location);
        Assert.Equal(409, Assert.IsType<ConflictObjectResult>(again).StatusCode);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await host.Host.Client.WaitForInstanceCompletionAsync("api-run", timeout.Token);

        var status = Body(await FineTuneHttp.Get(Request("GET", "/api/finetune/api-run"), "api-run", host.Host.Client));
        Assert.Equal("Completed", status.GetProperty("status").GetString());
        Assert.Equal("completed", status.GetProperty("progress").GetProperty("stage").GetString());
        Assert.Equal("runs/api-run/published/model.safetensors", status.GetProperty("artifacts").GetProperty("model").GetString());
        Assert.Equal("http://localhost/api/finetune/api-run/cancel", status.GetProperty("links").GetProperty("cancel").GetString());

        var listed = Body(await FineTuneHttp.List(Request("GET", "/api/finetune", query: "?status=completed"), host.Host.Client));
        Assert.Contains(listed.GetProperty("runs").EnumerateArray(), r => r.GetProperty("id").GetString() == "api-run");
        var running = Body(await FineTuneHttp.List(Request("GET", "/api/finetune", query: "?status=Running"), host.Host.Client));
        Assert.Empty(running.GetProperty("runs").EnumerateArray());
        Assert.Equal(409, Assert.IsType<ConflictObjectResult>(await FineTuneHttp.Cancel(Request("POST", "/api/finetune/api-run/cancel"), "api-run", host.Host.Client)).StatusCode);
    }

    [Fact]
    public async Task BadSpecIs400WithEveryFieldAndStartsNothing()
    {
        await using var host = await WorkflowHost.StartAsync();
        var result = await FineTuneHttp.Start(Request("POST", "/api/finetune", """{ "jobId": "bad", "model": "resnet19", "training": { "epochs": 0 } }"""), host.Host.Client);

        var bad = Assert.IsType<BadRequestObjectResult>(result);
        var fields = Body(bad).GetProperty("fields").EnumerateArray().Select(f => f.GetProperty("field").GetString()).ToList();
        Assert.Equal(["model", "dataset.location", "training.epochs"], fields);
        Assert.Null(await host.Host.Client.GetInstanceAsync("bad"));
    }

    [Fact]
    public async Task UnknownRunsAre404AndBadFiltersAre400()
    {
        await using var host = await WorkflowHost.StartAsync();
        Assert.IsType<NotFoundObjectResult>(await FineTuneHttp.Get(Request("GET", "/api/finetune/nope"), "nope", host.Host.Client));
        Assert.IsType<NotFoundObjectResult>(await FineTuneHttp.Cancel(Request("POST", "/api/finetune/nope/cancel"), "nope", host.Host.Client));
        Assert.IsType<BadRequestObjectResult>(await FineTuneHttp.Get(Request("GET", "/api/finetune/NOT_AN_ID"), "NOT_AN_ID", host.Host.Client));
        Assert.IsType<BadRequestObjectResult>(await FineTuneHttp.List(Request("GET", "/api/finetune", query: "?status=sleeping"), host.Host.Client));
    }

    [Fact]
    public async Task CancelTerminatesARunningJob()
    {
        await using var host = await WorkflowHost.StartAsync();
        string dataset = await host.UploadDatasetAsync("tux", perClass: 5);
        await FineTuneHttp.Start(Request("POST", "/api/finetune",
            $$"""{ "jobId": "to-cancel", "dataset": { "location": "{{dataset}}" }, "training": { "epochs": 500, "batchSize": 4, "featureCache": false } }"""), host.Host.Client);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        while ((await host.Host.Client.GetInstanceAsync("to-cancel", true, timeout.Token))?.ReadCustomStatusAs<RunStatus>()?.Stage != RunStage.Training)
            await Task.Delay(200, timeout.Token);

        var result = await FineTuneHttp.Cancel(Request("POST", "/api/finetune/to-cancel/cancel"), "to-cancel", host.Host.Client);

        Assert.IsType<AcceptedResult>(result);
        var final = await host.Host.Client.WaitForInstanceCompletionAsync("to-cancel", timeout.Token);
        Assert.Equal(OrchestrationRuntimeStatus.Terminated, final.RuntimeStatus);
    }

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

    private static HttpRequest Request(string method, string path, string? body = null, string query = "")
    {
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.Request.Scheme = "http";
        context.Request.Host = new HostString("localhost");
        context.Request.Path = path;
        context.Request.QueryString = new QueryString(query.Length == 0 ? null : query);
        if (body is not null)
        {
            context.Request.ContentType = "application/json";
            context.Request.Body = new MemoryStream(Encoding.UTF8.GetBytes(body));
        }
        return context.Request;
    }

    private static JsonElement Body(IActionResult result) =>
        JsonSerializer.SerializeToElement(Assert.IsAssignableFrom<ObjectResult>(result).Value, Json);
}
