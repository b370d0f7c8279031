using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace FineTune.Api.Tests;

/// <summary>A host of the HTTP API, reached through <see cref="Client"/> (base address: the host's root).</summary>
public interface IApiHost : IAsyncDisposable
{
    HttpClient Client { get; }

    /// <summary>What the host has logged: why a run failed or never ended.</summary>
    string Log { get; }
}

/// <summary>
/// What a client of the API relies on, the same for every host: <c>finetune serve</c> over real HTTP (local folder and
/// Azurite) and the Functions app's triggers (this file is compiled into both test projects).
/// </summary>
public abstract class ApiScenarios
{
    public static readonly string[] Classes = ["animals", "food", "plants"];
    private static readonly Lazy<byte[]> Zip = new(() => TuxPaintStamps.CreateZip(perClass: 5, Classes));

    protected abstract Task<IApiHost> StartAsync();

    [Fact]
    public async Task AnUploadedZipTrainsAndItsStatusArtifactsAndPredictionsAreServed()
    {
        await using var host = await StartAsync();
        var http = host.Client;
        // Every kind of answer below is also checked against the host's OpenAPI document.
        var openApi = await OpenApiConformance.LoadAsync(http);
        string id = "zip-" + Guid.NewGuid().ToString("N")[..8];
        string spec = $$"""{ "jobId": "{{id}}", "dataset": { "resize": "pad" }, "training": { "epochs": 2, "batchSize": 4 } }""";

        using var started = await http.PostAsync("api/finetune", Upload(Zip.Value, spec));
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        await openApi.AssertConformsAsync(started, "POST", "/api/finetune");
        using (var running = await http.GetAsync($"api/finetune/{id}")) await openApi.AssertConformsAsync(running, "GET", "/api/finetune/{id}");
        Assert.Equal(new Uri(http.BaseAddress!, $"api/finetune/{id}"), started.Headers.Location);
        var final = await PollAsync(host, id, expectRunning: true);
        Assert.Equal("Completed", final.GetProperty("status").GetString());
        Assert.Equal("completed", final.GetProperty("progress").GetProperty("stage").GetString());
        Assert.Equal(2, final.GetProperty("result").GetProperty("epochsRun").GetInt32());
        using var again = await http.PostAsync("api/finetune", Upload(Zip.Value, spec));
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        Assert.Equal("application/problem+json", again.Content.Headers.ContentType?.MediaType);
        await openApi.AssertConformsAsync(again, "POST", "/api/finetune");
        using (var ended = await http.GetAsync($"api/finetune/{id}")) await openApi.AssertConformsAsync(ended, "GET", "/api/finetune/{id}");
        using (var listing = await http.GetAsync($"api/finetune/{id}/artifacts")) await openApi.AssertConformsAsync(listing, "GET", "/api/finetune/{id}/artifacts");
        using (var file = await http.GetAsync($"api/finetune/{id}/artifacts/model-card.json")) await openApi.AssertConformsAsync(file, "GET", "/api/finetune/{id}/artifacts/{name}");

        // metrics.jsonl: one line per epoch, as the dashboard reads it.
        var metrics = (await http.GetStringAsync($"api/finetune/{id}/artifacts/metrics.jsonl")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.Equal([1, 2], metrics.Select(m => m.GetProperty("epoch").GetInt32()));
        Assert.All(metrics, m => Assert.Equal(id, m.GetProperty("runId").GetString()));

        // The model, streamed whole: its bytes hash to what the model card recorded when publishing.
        using var model = await http.GetAsync(final.GetProperty("artifacts").GetProperty("model").GetString());
        Assert.Equal(HttpStatusCode.OK, model.StatusCode);
        Assert.Equal("attachment", model.Content.Headers.ContentDisposition?.DispositionType);
        var card = JsonDocument.Parse(await http.GetStringAsync($"api/finetune/{id}/artifacts/model-card.json")).RootElement;
        Assert.Equal(card.GetProperty("weights").GetProperty("safetensorsSha256").GetString(),
            Convert.ToHexStringLower(SHA256.HashData(await model.Content.ReadAsByteArrayAsync())));
        using var plot = await http.GetAsync($"api/finetune/{id}/artifacts/loss.png");
        Assert.Equal("image/png", plot.Content.Headers.ContentType?.MediaType);
        var listed = JsonDocument.Parse(await http.GetStringAsync($"api/finetune/{id}/artifacts")).RootElement.GetProperty("artifacts")
            .EnumerateArray().Select(a => a.GetProperty("name").GetString()).ToList();
        Assert.Contains("model.safetensors", listed);
        Assert.Contains("confusion-matrix.png", listed);

        // The evaluation's mistakes, each with its top 3 and a thumbnail; what a new run can start from.
        using (var wrong = await http.GetAsync($"api/finetune/{id}/misclassified"))
        {
            await openApi.AssertConformsAsync(wrong, "GET", "/api/finetune/{id}/misclassified");
            var images = JsonDocument.Parse(await wrong.Content.ReadAsStringAsync()).RootElement.GetProperty("images").EnumerateArray().ToList();
            Assert.All(images, m => Assert.NotEqual(m.GetProperty("label").GetString(), m.GetProperty("top")[0].GetProperty("class").GetString()));
            foreach (var image in images.Take(1))
            {
                using var thumbnail = await http.GetAsync(image.GetProperty("image").GetString());
                await openApi.AssertConformsAsync(thumbnail, "GET", "/api/finetune/{id}/misclassified/{index}");
                Assert.Equal("image/png", thumbnail.Content.Headers.ContentType?.MediaType);
            }
        }
        using (var badIndex = await http.GetAsync($"api/finetune/{id}/misclassified/x1"))
        {
            await openApi.AssertConformsAsync(badIndex, "GET", "/api/finetune/{id}/misclassified/{index}");
            await AssertFieldErrorAsync(badIndex, "index");
        }
        using (var noImage = await http.GetAsync($"api/finetune/{id}/misclassified/47"))
        {
            Assert.Equal(HttpStatusCode.NotFound, noImage.StatusCode);
            await openApi.AssertConformsAsync(noImage, "GET", "/api/finetune/{id}/misclassified/{index}");
        }
        using (var noReport = await http.GetAsync("api/finetune/no-such-run/misclassified"))
        {
            Assert.Equal(HttpStatusCode.NotFound, noReport.StatusCode);
            await openApi.AssertConformsAsync(noReport, "GET", "/api/finetune/{id}/misclassified");
        }
        using (var models = await http.GetAsync("api/models"))
        {
            await openApi.AssertConformsAsync(models, "GET", "/api/models");
            var builders = JsonDocument.Parse(await models.Content.ReadAsStringAsync()).RootElement.GetProperty("families").EnumerateArray()
                .SelectMany(f => f.GetProperty("builders").EnumerateArray()).ToList();
            var resnet50 = builders.Single(b => b.GetProperty("name").GetString() == "resnet50");
            var v2 = resnet50.GetProperty("weights").EnumerateArray().Single(w => w.GetProperty("tag").GetString() == "IMAGENET1K_V2").GetProperty("preprocessing");
            Assert.Equal((224, 232, "bilinear"), (v2.GetProperty("cropSize").GetInt32(), v2.GetProperty("resizeSize").GetInt32(), v2.GetProperty("interpolation").GetString()));
            Assert.True(builders.Single(b => b.GetProperty("name").GetString() == "resnet18-cntk").GetProperty("bundled").GetBoolean());
        }

        // Predict: top-K per image, most probable first, twice (the model stays loaded).
        var animal = TuxPaintStamps.Images("animals", 1)[0];
        var food = TuxPaintStamps.Images("food", 1)[0];
        foreach (int top in (int[])[2, 3])
        {
            using var predicted = await http.PostAsync($"api/finetune/{id}/predict?top={top}", Images(animal, food));
            Assert.Equal(HttpStatusCode.OK, predicted.StatusCode);
            await openApi.AssertConformsAsync(predicted, "POST", "/api/finetune/{id}/predict");
            var answers = JsonDocument.Parse(await predicted.Content.ReadAsStringAsync()).RootElement.GetProperty("predictions").EnumerateArray().ToList();
            Assert.Equal([Path.GetFileName(animal), Path.GetFileName(food)], answers.Select(a => a.GetProperty("image").GetString()));
            foreach (var answer in answers)
            {
                var p = answer.GetProperty("predictions").EnumerateArray().ToList();
                Assert.Equal(top, p.Count);
                Assert.All(p, c => Assert.Contains(c.GetProperty("class").GetString(), Classes));
                Assert.True(p.Zip(p.Skip(1)).All(pair => pair.First.GetProperty("probability").GetDouble() >= pair.Second.GetProperty("probability").GetDouble()));
            }
            if (top == 3) Assert.All(answers, a => Assert.Equal(1.0, a.GetProperty("predictions").EnumerateArray().Sum(c => c.GetProperty("probability").GetDouble()), 4));
        }
        await AssertFieldErrorAsync(await http.PostAsync($"api/finetune/{id}/predict", Images(Path.Combine(AppContext.BaseDirectory, "finetune.Api.Tests.dll.missing"))), "image");
        using (var notImage = new MultipartFormDataContent { { new ByteArrayContent(Encoding.UTF8.GetBytes("not an image")), "image", "notes.png" } })
            await AssertFieldErrorAsync(await http.PostAsync($"api/finetune/{id}/predict", notImage), "image[0]");
        using (var badTop = await http.PostAsync($"api/finetune/{id}/predict?top=0", Images(animal)))
        {
            await openApi.AssertConformsAsync(badTop, "POST", "/api/finetune/{id}/predict");
            await AssertFieldErrorAsync(badTop, "top");
        }
        using (var noRun = await http.PostAsync("api/finetune/no-such-run/predict", Images(animal)))
        {
            Assert.Equal(HttpStatusCode.NotFound, noRun.StatusCode);
            await openApi.AssertConformsAsync(noRun, "POST", "/api/finetune/{id}/predict");
        }

        // Predict with a JSON body of base64 images: the same answers as multipart, top from the body.
        string Encoded(string path) => Convert.ToBase64String(File.ReadAllBytes(path));
        using (var viaJson = await http.PostAsync($"api/finetune/{id}/predict?top=1",
            Json($$"""{ "images": [{ "name": "a.png", "data": "{{Encoded(animal)}}" }, { "name": "f.png", "data": "{{Encoded(food)}}" }], "top": 2 }""")))
        using (var viaForm = await http.PostAsync($"api/finetune/{id}/predict?top=2", Images(animal, food)))
        {
            Assert.Equal(HttpStatusCode.OK, viaJson.StatusCode);
            await openApi.AssertConformsAsync(viaJson, "POST", "/api/finetune/{id}/predict");
            var json = JsonDocument.Parse(await viaJson.Content.ReadAsStringAsync()).RootElement.GetProperty("predictions").EnumerateArray().ToList();
            var form = JsonDocument.Parse(await viaForm.Content.ReadAsStringAsync()).RootElement.GetProperty("predictions").EnumerateArray().ToList();
            Assert.Equal(["a.png", "f.png"], json.Select(a => a.GetProperty("image").GetString()));
            Assert.Equal(form.Select(a => a.GetProperty("predictions").ToString()), json.Select(a => a.GetProperty("predictions").ToString()));
        }
        using (var badBase64 = await http.PostAsync($"api/finetune/{id}/predict", Json("""{ "images": [{ "name": "a.png", "data": "AA==" }, { "name": "b.png", "data": "not base64" }] }""")))
        {
            await openApi.AssertConformsAsync(badBase64, "POST", "/api/finetune/{id}/predict");
            await AssertFieldErrorAsync(badBase64, "images[1].data");
        }
        using (var notImageJson = await http.PostAsync($"api/finetune/{id}/predict", Json("""{ "images": [{ "name": "n.png", "data": "AAAA" }] }""")))
            await AssertFieldErrorAsync(notImageJson, "images[0]");

        // A second run on the uploaded dataset, by its name in the store: the list pages through both.
        string uploaded = $"blob:datasets/uploads/{Convert.ToHexStringLower(SHA256.HashData(Zip.Value))}.zip";
        string second = id + "-b";
        using var secondStarted = await http.PostAsync("api/finetune", Json($$"""{ "jobId": "{{second}}", "dataset": { "location": "{{uploaded}}", "resize": "pad" }, "training": { "epochs": 1, "batchSize": 4 } }"""));
        Assert.Equal(HttpStatusCode.Accepted, secondStarted.StatusCode);
        await PollAsync(host, second, expectRunning: false);
        // By prefix: a persistent task hub (serve --storage) also holds other runs.
        var first = await GetJsonAsync(http, $"api/finetune?status=Completed&top=1&prefix={id}");
        var page1 = first.GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("id").GetString()).ToList();
        string token = first.GetProperty("continuationToken").GetString()!;
        var page2 = (await GetJsonAsync(http, $"api/finetune?status=Completed&top=1&prefix={id}&continuationToken={Uri.EscapeDataString(token)}"))
            .GetProperty("runs").EnumerateArray().Select(r => r.GetProperty("id").GetString()).ToList();
        Assert.Equal([id, second], page1.Concat(page2).Order());
        Assert.Empty((await GetJsonAsync(http, $"api/finetune?status=Running,Pending&prefix={id}")).GetProperty("runs").EnumerateArray());
        Assert.Single((await GetJsonAsync(http, $"api/finetune?prefix={second}")).GetProperty("runs").EnumerateArray());

        using (var page = await http.GetAsync($"api/finetune?prefix={id}")) await openApi.AssertConformsAsync(page, "GET", "/api/finetune");
        using (var badPage = await http.GetAsync("api/finetune?top=0")) await openApi.AssertConformsAsync(badPage, "GET", "/api/finetune");
        using (var ended = await http.PostAsync($"api/finetune/{id}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Conflict, ended.StatusCode);
            await openApi.AssertConformsAsync(ended, "POST", "/api/finetune/{id}/cancel");
        }
        using (var published = await http.PostAsync($"api/finetune/{id}/restart", null)) await openApi.AssertConformsAsync(published, "POST", "/api/finetune/{id}/restart");
        using (var secrets = await http.GetAsync($"api/finetune/{id}/artifacts/secrets.txt"))
        {
            Assert.Equal(HttpStatusCode.NotFound, secrets.StatusCode);
            await openApi.AssertConformsAsync(secrets, "GET", "/api/finetune/{id}/artifacts/{name}");
        }
        using (var badId = await http.DeleteAsync("api/finetune/NOT_AN_ID")) await openApi.AssertConformsAsync(badId, "DELETE", "/api/finetune/{id}");
        using (var purged = await http.DeleteAsync($"api/finetune/{second}")) await openApi.AssertConformsAsync(purged, "DELETE", "/api/finetune/{id}");
    }

    [Fact]
    public async Task BadInputIs400NamingTheFieldAndStartsNothing()
    {
        await using var host = await StartAsync();
        var http = host.Client;

        var fields = await FieldsAsync(await http.PostAsync("api/finetune", Json("""{ "jobId": "bad", "model": "resnet19", "training": { "epochs": 0 } }""")));
        Assert.Equal(["model", "dataset.location", "training.epochs"], fields);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("api/finetune/bad")).StatusCode);
        Assert.Equal(["dataset.location"], await FieldsAsync(await http.PostAsync("api/finetune", Json("""{ "dataset": { "location": "/no/such/photos" } }"""))));
        Assert.Equal(["dataset"], await FieldsAsync(await http.PostAsync("api/finetune", new MultipartFormDataContent { { new StringContent("{}"), "spec" } })));
        Assert.Equal(["spec"], await FieldsAsync(await http.PostAsync("api/finetune", Upload(Zip.Value, "{ not json"))));
        Assert.Equal(["id"], await FieldsAsync(await http.GetAsync("api/finetune/NOT_AN_ID")));
        Assert.Equal(["status"], await FieldsAsync(await http.GetAsync("api/finetune?status=sleeping")));
        Assert.Equal(["top"], await FieldsAsync(await http.GetAsync("api/finetune?top=0")));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("api/finetune/nope")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.PostAsync("api/finetune/nope/cancel", null)).StatusCode);
        Assert.DoesNotContain((await GetJsonAsync(http, "api/finetune?top=200")).GetProperty("runs").EnumerateArray(), r => r.GetProperty("id").GetString() == "bad");
    }

    /// <summary>Cancel stops a running job; restart continues it to the end; purge removes it, keeping the published model.</summary>
    [Fact]
    public async Task ARunIsCancelledRestartedAndPurged()
    {
        await using var host = await StartAsync();
        var http = host.Client;
        string id = "cancel-" + Guid.NewGuid().ToString("N")[..8];
        using var started = await http.PostAsync("api/finetune", Upload(Zip.Value,
            $$"""{ "jobId": "{{id}}", "training": { "epochs": 2, "batchSize": 4, "featureCache": false, "maxStepsPerChunk": 1 } }"""));
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        JsonElement run;
        while (!(run = await GetJsonAsync(http, $"api/finetune/{id}")).GetProperty("done").GetBoolean()
            && !(run.TryGetProperty("progress", out var progress) && progress.GetProperty("stage").GetString() == "training"))
            await Task.Delay(200, timeout.Token);
        Assert.False(run.GetProperty("done").GetBoolean(), run.ToString());

        using var cancelled = await http.PostAsync($"api/finetune/{id}/cancel", null);

        Assert.Equal(HttpStatusCode.Accepted, cancelled.StatusCode);
        await (await OpenApiConformance.LoadAsync(http)).AssertConformsAsync(cancelled, "POST", "/api/finetune/{id}/cancel");
        Assert.Equal("Terminated", (await PollAsync(host, id, expectRunning: false)).GetProperty("status").GetString());

        using var restarted = await http.PostAsync($"api/finetune/{id}/restart", null);
        Assert.Equal(HttpStatusCode.Accepted, restarted.StatusCode);
        Assert.Equal("Completed", (await PollAsync(host, id, expectRunning: false)).GetProperty("status").GetString());
        Assert.Equal(HttpStatusCode.Conflict, (await http.PostAsync($"api/finetune/{id}/restart", null)).StatusCode);

        using var purged = await http.DeleteAsync($"api/finetune/{id}");
        Assert.Equal(HttpStatusCode.OK, purged.StatusCode);
        Assert.True(JsonDocument.Parse(await purged.Content.ReadAsStringAsync()).RootElement.GetProperty("keptPublished").GetBoolean());
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"api/finetune/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"api/finetune/{id}/artifacts/model.safetensors")).StatusCode);
    }

    [Fact]
    public async Task TheOpenApiDocumentDescribesEveryRoute()
    {
        await using var host = await StartAsync();
        var document = await GetJsonAsync(host.Client, "openapi/v1.json");
        Assert.Equal("FineTune API", document.GetProperty("info").GetProperty("title").GetString());
        var paths = document.GetProperty("paths");
        Assert.Equal(["/api/finetune", "/api/finetune/{id}", "/api/finetune/{id}/artifacts", "/api/finetune/{id}/artifacts/{name}",
            "/api/finetune/{id}/cancel", "/api/finetune/{id}/misclassified", "/api/finetune/{id}/misclassified/{index}", "/api/finetune/{id}/predict",
            "/api/finetune/{id}/restart", "/api/models"], paths.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["get", "post"], paths.GetProperty("/api/finetune").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(["delete", "get"], paths.GetProperty("/api/finetune/{id}").EnumerateObject().Select(p => p.Name).Order());
        Assert.True(paths.GetProperty("/api/finetune/{id}").GetProperty("get").GetProperty("responses").TryGetProperty("202", out _));
        // Predict takes multipart images or a JSON body of base64 ones, each described as itself.
        var predictBody = paths.GetProperty("/api/finetune/{id}/predict").GetProperty("post").GetProperty("requestBody").GetProperty("content");
        Assert.Equal(["application/json", "multipart/form-data"], predictBody.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        var json = predictBody.GetProperty("application/json").GetProperty("schema");
        Assert.Equal(["images"], json.GetProperty("required").EnumerateArray().Select(r => r.GetString()));
        var image = json.GetProperty("properties").GetProperty("images").GetProperty("items");
        Assert.Equal(["data"], image.GetProperty("required").EnumerateArray().Select(r => r.GetString()));
        Assert.Equal(["data", "name"], image.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        using var page = await host.Client.GetAsync("/");
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
    }

    /// <summary>Polls as a Durable async-pattern client does: 202 with Location and Retry-After until a 200.</summary>
    protected static async Task<JsonElement> PollAsync(IApiHost host, string id, bool expectRunning)
    {
        var http = host.Client;
        var patience = TimeSpan.FromMinutes(5);
        using var timeout = new CancellationTokenSource(patience);
        bool sawRunning = false;
        try
        {
            while (true)
            {
                using var response = await http.GetAsync($"api/finetune/{id}", timeout.Token);
                var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(timeout.Token)).RootElement;
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    Assert.True(body.GetProperty("done").GetBoolean());
                    Assert.True(sawRunning || !expectRunning, "the run was never reported as running (202)");
                    return body;
                }
                Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
                Assert.Equal(new Uri(http.BaseAddress!, $"api/finetune/{id}"), response.Headers.Location);
                Assert.Equal(TimeSpan.FromSeconds(2), response.Headers.RetryAfter?.Delta);
                Assert.False(body.GetProperty("done").GetBoolean());
                sawRunning = true;
                await Task.Delay(250, timeout.Token);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new TimeoutException($"run {id} has not ended after {patience}; the host logged:{Environment.NewLine}{host.Log}");
        }
    }

    protected static MultipartFormDataContent Upload(byte[] zip, string spec)
    {
        var dataset = new ByteArrayContent(zip);
        dataset.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        return new MultipartFormDataContent { { dataset, "dataset", "photos.zip" }, { new StringContent(spec), "spec" } };
    }

    protected static MultipartFormDataContent Images(params string[] paths)
    {
        var content = new MultipartFormDataContent();
        foreach (var path in paths.Where(File.Exists)) content.Add(new ByteArrayContent(File.ReadAllBytes(path)), "image", Path.GetFileName(path));
        if (!content.Any()) content.Add(new StringContent("no image here"), "note");
        return content;
    }

    protected static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    protected static async Task<JsonElement> GetJsonAsync(HttpClient http, string path) =>
        JsonDocument.Parse(await http.GetStringAsync(path)).RootElement;

    private static async Task<List<string?>> FieldsAsync(HttpResponseMessage response)
    {
        using (response)
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {body}");
            return JsonDocument.Parse(body).RootElement.GetProperty("errors").EnumerateObject().Select(f => (string?)f.Name).ToList();
        }
    }

    private static async Task AssertFieldErrorAsync(HttpResponseMessage response, string field) =>
        Assert.Equal([field], await FieldsAsync(response));
}
