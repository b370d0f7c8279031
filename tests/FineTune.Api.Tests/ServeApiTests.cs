using System.Net;
using System.Text.Json;

namespace FineTune.Api.Tests;

/// <summary>A <c>finetune serve</c> process reached over real HTTP.</summary>
public sealed class ServeHost(ServeProcess serve) : IApiHost
{
    public ServeProcess Process { get; } = serve;
    public HttpClient Client { get; } = Authorized(serve);
    public string Log => Process.Log;

    /// <summary>A client as a script of the machine's user is: the token serve printed, as a bearer header.</summary>
    public static HttpClient Authorized(ServeProcess serve)
    {
        var client = new HttpClient { BaseAddress = new Uri(serve.Url, "/") };
        if (serve.Token is not null) client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", serve.Token);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Process.DisposeAsync();
    }
}

/// <summary>The API scenarios against <c>finetune serve</c> with artifacts in a local folder (its default).</summary>
public sealed class ServeLocalFolderTests : ApiScenarios
{
    protected override async Task<IApiHost> StartAsync() => new ServeHost(await ServeProcess.StartAsync());

    [Fact]
    public async Task ALocalDatasetFolderTrainsAndEpochsAreLoggedAndWrittenToMetricsAsTheyFinish()
    {
        await using var host = (ServeHost)await StartAsync();
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(host.Process.WorkDirectory, "photos"), perClass: 5, Classes);
        using var started = await host.Client.PostAsync("api/finetune",
            Json($$"""{ "jobId": "local", "dataset": { "location": {{JsonSerializer.Serialize(photos)}}, "resize": "pad" }, "training": { "epochs": 2, "batchSize": 4 } }"""));
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        await PollAsync(host, "local", expectRunning: true);

        Assert.Equal(2, File.ReadAllLines(Path.Combine(host.Process.ArtifactRoot, "runs/local/reports/metrics.jsonl")).Length);
        Assert.Matches(@"Run local epoch 1/2: train loss \d+\.\d{4}, train accuracy \d\.\d{4}, val loss \d+\.\d{4}, val accuracy \d\.\d{4}, \d+\.\d s", host.Process.Log);
        Assert.Contains("Run local epoch 2/2", host.Process.Log, StringComparison.Ordinal);
    }
}

/// <summary>The API scenarios against <c>finetune serve --storage</c>: artifacts (and uploads) in Azurite's blob storage.</summary>
public sealed class ServeAzuriteTests : ApiScenarios
{
    protected override async Task<IApiHost> StartAsync() => new ServeHost(await ServeProcess.StartAsync(Azurite.ConnectionString));

    [Fact]
    public async Task RunsLiveInTheStorageAccountSoAnotherServeProcessKnowsThem()
    {
        string id = "kept-" + Guid.NewGuid().ToString("N")[..8];
        byte[] photos = TuxPaintStamps.CreateZip(perClass: 5, Classes);
        string zip = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(photos));
        await using (var first = await StartAsync())
        {
            using var started = await first.Client.PostAsync("api/finetune", Upload(photos,
                $$"""{ "jobId": "{{id}}", "dataset": { "resize": "pad" }, "training": { "epochs": 1, "batchSize": 4 } }"""));
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
            await PollAsync(first, id, expectRunning: false);
        }

        await using var second = await StartAsync();
        var run = await GetJsonAsync(second.Client, $"api/finetune/{id}");
        Assert.Equal("Completed", run.GetProperty("status").GetString());
        var card = await GetJsonAsync(second.Client, $"api/finetune/{id}/artifacts/model-card.json");
        Assert.Equal($"blob:datasets/uploads/{zip}.zip", card.GetProperty("dataset").GetProperty("location").GetString());
    }
}
