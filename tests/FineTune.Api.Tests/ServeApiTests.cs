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

    [Fact]
    public async Task ARunTheCommandLineTrainedInTheSameFolderIsListedViewedPredictedAndPurged()
    {
        await using var host = (ServeHost)await StartAsync();
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(host.Process.WorkDirectory, "photos"), perClass: 5, Classes);
        var train = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "train", "--dataset", photos, "--resize", "pad",
            "--epochs", "1", "--batch-size", "4", "--job-id", "by-cli", "--work", host.Process.WorkDirectory])
            train.ArgumentList.Add(argument);
        using (var process = System.Diagnostics.Process.Start(train)!)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            string error = await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 0, $"finetune train exited {process.ExitCode}: {await output}\n{error}");
        }

        var listed = (await GetJsonAsync(host.Client, "api/finetune")).GetProperty("runs").EnumerateArray().Single(r => r.GetProperty("id").GetString() == "by-cli");
        Assert.Equal("Completed", listed.GetProperty("status").GetString());
        Assert.Empty((await GetJsonAsync(host.Client, "api/finetune?status=Running")).GetProperty("runs").EnumerateArray());
        var run = await GetJsonAsync(host.Client, "api/finetune/by-cli");
        Assert.True(run.GetProperty("done").GetBoolean());
        using (var model = await host.Client.GetAsync(run.GetProperty("artifacts").GetProperty("model").GetString()))
            Assert.Equal(HttpStatusCode.OK, model.StatusCode);
        using var image = new MultipartFormDataContent { { new ByteArrayContent(File.ReadAllBytes(Directory.EnumerateFiles(photos, "*.png", SearchOption.AllDirectories).First())), "image", "a.png" } };
        using (var predicted = await host.Client.PostAsync("api/finetune/by-cli/predict", image))
            Assert.Equal(HttpStatusCode.OK, predicted.StatusCode);
        using (var purged = await host.Client.DeleteAsync("api/finetune/by-cli?includePublished=true"))
            Assert.Equal(HttpStatusCode.OK, purged.StatusCode);
        using var gone = await host.Client.GetAsync("api/finetune/by-cli");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }
}

/// <summary>
/// Sweeps as <c>finetune serve</c> shows them (issue 26 follow-ups): one the command line ran in the same folder, from its
/// artifacts; one in progress, its trials' recorded epochs as they come.
/// </summary>
public sealed class ServeSweepTests
{
    [Fact]
    public async Task ASweepTheCommandLineRanInTheSameFolderIsListedWithItsTrialsAndItsFeatureRunIsNot()
    {
        await using var host = new ServeHost(await ServeProcess.StartAsync());
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(host.Process.WorkDirectory, "photos"), perClass: 5, ApiScenarios.Classes);
        string job = Path.Combine(host.Process.WorkDirectory, "job.json");
        File.WriteAllText(job, $$"""
            { "jobId": "cli-sweep", "dataset": { "location": {{JsonSerializer.Serialize(photos)}}, "resize": "pad" }, "training": { "epochs": 2, "batchSize": 4 },
              "sweep": { "parameters": { "training.learningRate": [0.001, 0.01] } } }
            """);
        var sweep = Finetune("sweep", job, "--work", host.Process.WorkDirectory);
        Assert.True(sweep.ExitCode == 0, $"finetune sweep exited {sweep.ExitCode}: {sweep.Output}\n{sweep.Error}");
        // Each trial's recorded epochs as they come (its stack records them at the rung's end).
        Assert.Contains("  trial cli-sweep-t2: completed, 2/2 epoch(s)  val_loss ", sweep.Output, StringComparison.Ordinal);
        // What makes the feature run internal is what it stored, not its id.
        Assert.Contains("\"sweep\":\"cli-sweep\"", File.ReadAllText(Path.Combine(host.Process.ArtifactRoot, "runs/cli-sweep-f0/spec.json")), StringComparison.Ordinal);

        var listed = (await GetJsonAsync(host.Client, "api/finetune")).GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["cli-sweep"], listed.Select(r => r.GetProperty("id").GetString()));
        Assert.Equal("Completed", listed[0].GetProperty("status").GetString());
        var run = await GetJsonAsync(host.Client, "api/finetune/cli-sweep");
        Assert.True(run.GetProperty("done").GetBoolean());
        var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(host.Process.ArtifactRoot, "runs/cli-sweep/reports/sweep.json"))).RootElement;
        string best = report.GetProperty("best").GetString()!;
        Assert.Equal(best, run.GetProperty("progress").GetProperty("sweep").GetProperty("bestTrial").GetString());
        var trials = run.GetProperty("trials").EnumerateArray().ToList();
        Assert.Equal(["cli-sweep-t1", "cli-sweep-t2"], trials.Select(t => t.GetProperty("jobId").GetString()));
        foreach (var trial in trials)
        {
            Assert.Equal("completed", trial.GetProperty("state").GetString());
            Assert.Equal(2, trial.GetProperty("epochsDone").GetInt32());
            var lastEpoch = File.ReadAllLines(Path.Combine(host.Process.ArtifactRoot, $"runs/{trial.GetProperty("jobId").GetString()}/reports/metrics.jsonl"))[^1];
            Assert.Equal(JsonDocument.Parse(lastEpoch).RootElement.GetProperty("validationAccuracy").GetDouble(), trial.GetProperty("validationAccuracy").GetDouble());
        }
        Assert.Equal(0.01, trials[1].GetProperty("parameters").GetProperty("training.learningRate").GetDouble());
        using (var model = await host.Client.GetAsync(run.GetProperty("artifacts").GetProperty("model").GetString()))
            Assert.Equal(HttpStatusCode.OK, model.StatusCode);

        var list = Finetune("list", "--work", host.Process.WorkDirectory);
        Assert.Equal(0, list.ExitCode);
        Assert.Matches(@"^cli-sweep\s+published\s+2/2 trials done \(sweep\)\s*$", list.Output);
        var status = Finetune("status", "--work", host.Process.WorkDirectory);
        Assert.True(status.ExitCode == 0, status.Output + status.Error);
        Assert.Contains("  cli-sweep-t1: completed, 2/2 epoch(s)", status.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("cli-sweep-f0", status.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASweepInProgressShowsEachTrialsRecordedEpochs()
    {
        await using var host = new ServeHost(await ServeProcess.StartAsync());
        var http = host.Client;
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(host.Process.WorkDirectory, "photos"), perClass: 5, ApiScenarios.Classes);
        // One trial at a time, a step per chunk: the second trial waits while the first records its epochs.
        using (var started = await http.PostAsync("api/finetune", new StringContent($$"""
            { "jobId": "live-sweep", "dataset": { "location": {{JsonSerializer.Serialize(photos)}}, "resize": "pad" },
              "training": { "epochs": 3, "batchSize": 4, "featureCache": false, "maxStepsPerChunk": 1 },
              "sweep": { "parallelism": 1, "parameters": { "training.learningRate": [0.001, 0.01] } } }
            """, System.Text.Encoding.UTF8, "application/json")))
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);

        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        JsonElement run;
        List<JsonElement> trials;
        // Until the store records the first trial's first epoch.
        do
        {
            run = JsonDocument.Parse(await http.GetStringAsync("api/finetune/live-sweep", timeout.Token)).RootElement;
            trials = run.GetProperty("trials").EnumerateArray().ToList();
            Assert.False(run.GetProperty("done").GetBoolean(), $"the sweep ended before a trial's epoch was seen: {run}");
            if (trials[0].GetProperty("epochsDone").GetInt32() == 0) await Task.Delay(100, timeout.Token);
        }
        while (trials[0].GetProperty("epochsDone").GetInt32() == 0);

        Assert.Equal("Running", run.GetProperty("status").GetString());
        var first = trials[0];
        Assert.Equal(3, first.GetProperty("epochs").GetInt32());
        int epochsDone = first.GetProperty("epochsDone").GetInt32();
        Assert.Equal(epochsDone == 3 ? "completed" : "running", first.GetProperty("state").GetString());
        var recorded = File.ReadAllLines(Path.Combine(host.Process.ArtifactRoot, "runs/live-sweep-t1/reports/metrics.jsonl"));
        Assert.True(recorded.Length >= epochsDone);
        Assert.Equal(JsonDocument.Parse(recorded[epochsDone - 1]).RootElement.GetProperty("validationAccuracy").GetDouble(), first.GetProperty("validationAccuracy").GetDouble());
        Assert.Equal(0.001, first.GetProperty("parameters").GetProperty("training.learningRate").GetDouble());
        if (epochsDone < 3) Assert.Equal(("pending", 0), (trials[1].GetProperty("state").GetString(), trials[1].GetProperty("epochsDone").GetInt32()));
        // Its feature run is the sweep's, not a run of its own.
        Assert.DoesNotContain((await GetJsonAsync(http, "api/finetune")).GetProperty("runs").EnumerateArray(), r => r.GetProperty("id").GetString() == "live-sweep-f0");
        using var cancelled = await http.PostAsync("api/finetune/live-sweep/cancel", null);
        Assert.Equal(HttpStatusCode.Accepted, cancelled.StatusCode);
    }

    /// <summary>A sweep another process runs on the same folder: Running with its trials' epochs as they come, Stopped once that process is killed.</summary>
    [Fact]
    public async Task ASweepAnotherProcessRunsIsRunningWithItsTrialsThenStoppedWhenKilled()
    {
        await using var host = new ServeHost(await ServeProcess.StartAsync());
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(host.Process.WorkDirectory, "photos"), perClass: 5, ApiScenarios.Classes);
        string job = Path.Combine(host.Process.WorkDirectory, "job.json");
        File.WriteAllText(job, $$"""
            { "jobId": "other-sweep", "dataset": { "location": {{JsonSerializer.Serialize(photos)}}, "resize": "pad" },
              "training": { "epochs": 3, "batchSize": 4, "featureCache": false, "maxStepsPerChunk": 1 },
              "sweep": { "parallelism": 1, "parameters": { "training.learningRate": [0.001, 0.01] } } }
            """);
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "sweep", job, "--work", host.Process.WorkDirectory])
            start.ArgumentList.Add(argument);
        using var sweep = System.Diagnostics.Process.Start(start)!;
        sweep.OutputDataReceived += (_, _) => { };
        sweep.ErrorDataReceived += (_, _) => { };
        sweep.BeginOutputReadLine();
        sweep.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try
        {
            // Until the store records the first trial's first epoch, the sweep running in the other process.
            JsonElement run;
            do
            {
                Assert.False(sweep.HasExited, "the sweep ended before a trial's epoch was seen");
                await Task.Delay(100, timeout.Token);
                using var response = await host.Client.GetAsync("api/finetune/other-sweep", timeout.Token);
                run = JsonDocument.Parse(await response.Content.ReadAsStringAsync(timeout.Token)).RootElement;
            }
            while (!run.TryGetProperty("trials", out var seen) || seen[0].GetProperty("epochsDone").GetInt32() == 0);
            Assert.Equal("Running", run.GetProperty("status").GetString());
            Assert.Equal("Running", (await GetJsonAsync(host.Client, "api/finetune")).GetProperty("runs").EnumerateArray()
                .Single(r => r.GetProperty("id").GetString()!.StartsWith("other-sweep", StringComparison.Ordinal)).GetProperty("status").GetString());
        }
        finally
        {
            sweep.Kill(entireProcessTree: true);
            await sweep.WaitForExitAsync();
        }
        // No call of it renews its running marker now.
        while ((await GetJsonAsync(host.Client, "api/finetune/other-sweep")).GetProperty("status").GetString() == "Running")
            await Task.Delay(500, timeout.Token);
        var stopped = await GetJsonAsync(host.Client, "api/finetune/other-sweep");
        Assert.Equal("Stopped", stopped.GetProperty("status").GetString());
        Assert.True(stopped.GetProperty("trials")[0].GetProperty("epochsDone").GetInt32() >= 1);
    }

    private static ProcessResult Finetune(params string[] arguments) =>
        ProcessRunner.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments], timeout: TimeSpan.FromMinutes(5));

    private static async Task<JsonElement> GetJsonAsync(HttpClient http, string path) => JsonDocument.Parse(await http.GetStringAsync(path)).RootElement;
}

/// <summary>Issue 23, item 7: <c>finetune serve --max-runs 1</c> over HTTP runs one run at a time and queues the rest.</summary>
public sealed class ServeQueueTests
{
    [Fact]
    public async Task WithOneRunAtATimeASecondRunQueuesThenCompletesAndAQueuedRunCancels()
    {
        await using var host = new ServeHost(await ServeProcess.StartAsync(arguments: ["--max-runs", "1"]));
        var http = host.Client;
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(host.Process.WorkDirectory, "photos"), perClass: 5, ApiScenarios.Classes);
        string location = JsonSerializer.Serialize(photos);
        async Task StartAsync(string id, int epochs)
        {
            using var started = await http.PostAsync("api/finetune", new StringContent(
                $$"""{ "jobId": "{{id}}", "dataset": { "location": {{location}}, "resize": "pad" }, "training": { "epochs": {{epochs}}, "batchSize": 4, "featureCache": false, "maxStepsPerChunk": 1 } }""",
                System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        async Task<JsonElement> StageAsync(string id, string stage)
        {
            while (true)
            {
                var run = JsonDocument.Parse(await http.GetStringAsync($"api/finetune/{id}", timeout.Token)).RootElement;
                if (run.TryGetProperty("progress", out var progress) && progress.ValueKind == JsonValueKind.Object && progress.GetProperty("stage").GetString() == stage)
                    return progress;
                Assert.False(run.GetProperty("done").GetBoolean(), $"{id} ended before it was {stage}: {run}");
                await Task.Delay(100, timeout.Token);
            }
        }

        await StartAsync("first", epochs: 3);
        await StageAsync("first", "training");
        await StartAsync("second", epochs: 1);
        await StartAsync("third", epochs: 1);

        Assert.Equal(1, (await StageAsync("second", "queued")).GetProperty("queuePosition").GetInt32());
        Assert.Equal(2, (await StageAsync("third", "queued")).GetProperty("queuePosition").GetInt32());
        using (var cancelled = await http.PostAsync("api/finetune/third/cancel", null)) Assert.Equal(HttpStatusCode.Accepted, cancelled.StatusCode);

        foreach (var (id, status) in new[] { ("first", "Completed"), ("second", "Completed"), ("third", "Terminated") })
        {
            JsonElement run;
            while (!(run = JsonDocument.Parse(await http.GetStringAsync($"api/finetune/{id}", timeout.Token)).RootElement).GetProperty("done").GetBoolean())
                await Task.Delay(250, timeout.Token);
            Assert.True(run.GetProperty("status").GetString() == status, $"{id}: {run}");
        }
        // Had they run together, the one-epoch second run would have finished its epoch before the first's third.
        string log = host.Log;
        Assert.True(log.IndexOf("Run first epoch 3/3", StringComparison.Ordinal) is >= 0 and var firstDone
            && log.IndexOf("Run second epoch 1/1", StringComparison.Ordinal) > firstDone, log);
        Assert.DoesNotContain("Run third epoch", log, StringComparison.Ordinal);
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

/// <summary>Starting <c>finetune serve</c>: the in-memory backend's own port may be taken by another process and is picked again; the port asked for is the caller's.</summary>
public sealed class ServeStartTests
{
    [Fact]
    public void APortAnotherProgramHoldsIsRefusedNamingIt()
    {
        using var held = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        held.Start();
        string port = ((IPEndPoint)held.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string work = Directory.CreateTempSubdirectory("serve-").FullName;
        try
        {
            var serve = FineTune.Testing.ProcessRunner.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "serve", "--port", port, "--work", work],
                timeout: TimeSpan.FromMinutes(2));

            Assert.Equal(2, serve.ExitCode);
            Assert.StartsWith("port:", serve.Error.Trim(), StringComparison.Ordinal);
            Assert.Contains(":" + port, serve.Error, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
