using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Xunit.Abstractions;

namespace FineTune.Api.Tests;

/// <summary>One <c>finetune serve</c> for the whole corpus, with a secret file in its work folder that no answer may quote.</summary>
public sealed class AttackTarget : IAsyncLifetime
{
    public ServeProcess Serve { get; private set; } = null!;
    /// <summary>Sends exactly what a row builds: no cookies of its own, no redirects followed.</summary>
    public HttpClient Raw { get; } = new(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false });
    public string Secret { get; } = "secret-" + Guid.NewGuid().ToString("N");
    public string SecretFile => Path.Combine(Serve.WorkDirectory, "credentials");
    public int Port => Serve.Url.Port;
    public string Token => Serve.Token!;

    public async Task InitializeAsync()
    {
        Serve = await ServeProcess.StartAsync();
        await File.WriteAllTextAsync(SecretFile, Secret);
    }

    public async Task DisposeAsync()
    {
        Raw.Dispose();
        await Serve.DisposeAsync();
    }

    /// <summary>A request to the server, with its token unless a row leaves it out.</summary>
    public HttpRequestMessage Request(HttpMethod method, string path, HttpContent? content = null, bool token = true)
    {
        var request = new HttpRequestMessage(method, new Uri(Serve.Url, path)) { Content = content };
        if (token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        return request;
    }
}

/// <summary>
/// The attacks of issue 23 against a real <c>finetune serve</c> over real HTTP, one row each: what a hostile web page
/// (another origin, a rebound DNS name) or a hostile local caller sends, and the status that holds it. Every answer is
/// problem details naming the field (never a 500 or an empty body where the API answers), quotes no file content and
/// no token; no attack starts a run or leaves a file in the work folder, and the server's memory stays bounded.
/// A new attack is one row of <see cref="Attacks"/>.
/// </summary>
public sealed class AttackCorpusTests(AttackTarget target, ITestOutputHelper log) : IClassFixture<AttackTarget>
{
    private const string CrossSite = "http://localhost:8765";
    /// <summary>How far the server's RSS may rise during one attack: a 3 MiB spec, 1025 small images, buffers of Kestrel.</summary>
    private const long GrowthBoundBytes = 200L * 1024 * 1024;

    /// <summary>An attack: the request it sends, the status that holds it, and the field the answer must name ("": none, the framework answers).</summary>
    public sealed record Attack(Func<AttackTarget, HttpRequestMessage> Send, int Status, string Field);

    private static readonly Dictionary<string, Attack> Attacks = new()
    {
        // A page on another origin: browsers send these without a preflight, with Origin, and (same site) the cookie.
        ["cross-site multipart start"] = new(t => Cookie(Origin(t.Request(HttpMethod.Post, "api/finetune", Upload(), token: false), CrossSite), t), 403, "Origin"),
        ["cross-site no-cors cancel"] = new(t => Origin(t.Request(HttpMethod.Post, "api/finetune/victim/cancel", token: false), CrossSite), 403, "Origin"),
        ["same-site page on another port purges with the cookie"] = new(t => Cookie(Origin(t.Request(HttpMethod.Delete, "api/finetune/victim", token: false), $"http://127.0.0.1:{t.Port + 1}"), t), 403, "Origin"),
        ["sandboxed page (Origin: null) starts"] = new(t => Origin(t.Request(HttpMethod.Post, "api/finetune", Json("""{ "dataset": { "location": "/etc" } }""")), "null"), 403, "Origin"),
        ["Origin mismatch even with the token"] = new(t => Origin(t.Request(HttpMethod.Post, "api/finetune", Upload()), "http://127.0.0.1.attacker.example"), 403, "Origin"),
        // DNS rebinding: the attacker's name resolved to 127.0.0.1; the browser sends its Host.
        ["foreign Host lists"] = new(t => Host(t.Request(HttpMethod.Get, "api/finetune"), $"attacker.example:{t.Port}"), 400, "Host"),
        ["foreign Host reads a status"] = new(t => Host(t.Request(HttpMethod.Get, "api/finetune/victim"), $"attacker.example:{t.Port}"), 400, "Host"),
        ["foreign Host purges"] = new(t => Host(t.Request(HttpMethod.Delete, "api/finetune/victim?includePublished=true"), $"attacker.example:{t.Port}"), 400, "Host"),
        ["foreign Host opens the dashboard"] = new(t => Host(t.Request(HttpMethod.Get, "/", token: false), $"attacker.example:{t.Port}"), 400, "Host"),
        ["loopback Host on another port"] = new(t => Host(t.Request(HttpMethod.Get, "api/finetune"), $"127.0.0.1:{t.Port + 1}"), 400, "Host"),
        // No token, or a wrong one.
        ["no token lists"] = new(t => t.Request(HttpMethod.Get, "api/finetune", token: false), 401, "Authorization"),
        ["no token starts"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Upload(), token: false), 401, "Authorization"),
        ["no token reads the OpenAPI document"] = new(t => t.Request(HttpMethod.Get, "openapi/v1.json", token: false), 401, "Authorization"),
        ["wrong bearer token"] = new(t => Bearer(t.Request(HttpMethod.Get, "api/finetune", token: false), new string('0', 48)), 401, "Authorization"),
        ["token one character short"] = new(t => Bearer(t.Request(HttpMethod.Get, "api/finetune", token: false), t.Token[..^1]), 401, "Authorization"),
        ["token in the API's query string"] = new(t => t.Request(HttpMethod.Get, $"api/finetune?token={t.Token}", token: false), 401, "Authorization"),
        ["cookie of another port"] = new(t => Header(t.Request(HttpMethod.Get, "api/finetune", token: false), "Cookie", $"finetune-token-{t.Port + 1}={t.Token}"), 401, "Authorization"),
        ["dashboard opened with a wrong token"] = new(t => t.Request(HttpMethod.Get, "/?token=0123", token: false), 401, "token"),
        // Bodies: limits and malformed input are 4xx naming the field.
        ["JSON as text/plain (a simple cross-site request)"] = new(t => t.Request(HttpMethod.Post, "api/finetune", new StringContent("""{ "dataset": { "location": "/etc" } }""", Encoding.UTF8, "text/plain")), 415, ""),
        ["2 MiB JSON spec"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Json($$"""{ "jobId": "{{new string('a', 2 << 20)}}" }""")), 413, ""),
        ["3 MiB multipart spec"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Upload(spec: $$"""{ "jobId": "{{new string('a', 3 << 20)}}" }""")), 413, "spec"),
        ["malformed multipart (body ends inside a part)"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Raw("--b\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{}", "b")), 400, "spec"),
        ["multipart without a boundary"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Raw("--b\r\n", null)), 400, "body"),
        ["multipart part without a name"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Raw("--b\r\nContent-Disposition: attachment\r\n\r\nx\r\n--b--\r\n", "b")), 400, "body"),
        ["multipart part with 20 header lines"] = new(t => t.Request(HttpMethod.Post, "api/finetune",
            Raw("--b\r\n" + string.Concat(Enumerable.Range(0, 20).Select(i => $"X-{i}: y\r\n")) + "Content-Disposition: form-data; name=\"spec\"\r\n\r\n{}\r\n--b--\r\n", "b")), 400, "body"),
        ["start with 100 parts"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Parts(100, "note")), 400, "body"),
        ["two datasets in one start"] = new(t => t.Request(HttpMethod.Post, "api/finetune", TwoDatasets()), 400, "dataset"),
        ["dataset that is not a .zip"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Upload(fileName: "photos.tar")), 400, "dataset"),
        ["invalid spec with an upload"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Upload(spec: """{ "model": "resnet19" }""")), 400, "model"),
        ["upload with a spec that is not JSON"] = new(t => t.Request(HttpMethod.Post, "api/finetune", Upload(spec: "{ not json")), 400, "spec"),
        ["bad continuation token"] = new(t => t.Request(HttpMethod.Get, "api/finetune?continuationToken=garbage"), 400, "continuationToken"),
        ["1025 predict images"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict", Parts(1025, "image", "x.png")), 400, "image"),
        ["predict images as text/plain"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict", new StringContent("""{ "images": [] }""", Encoding.UTF8, "text/plain")), 415, ""),
        ["predict JSON with bad base64"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict", Json("""{ "images": [{ "name": "a.png", "data": "iVBO!!" }] }""")), 400, "images[0].data"),
        ["predict JSON with 1025 images"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict",
            Json($$"""{ "images": [{{string.Join(',', Enumerable.Repeat("""{ "data": "AA==" }""", 1025))}}] }""")), 400, "images"),
        ["predict JSON image over 50 MiB"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict",
            Json($$"""{ "images": [{ "name": "big.png", "data": "{{new string('A', 72 << 20)}}" }] }""")), 413, "images[0].data"),
        ["predict JSON that is not an object"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict", Json("[1, 2]")), 400, "body"),
        ["predict JSON with an unknown field"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict", Json("""{ "imgs": [] }""")), 400, "imgs"),
        ["predict with a malformed body"] = new(t => t.Request(HttpMethod.Post, "api/finetune/victim/predict", Raw("--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nabc", "b")), 400, "image"),
        // The dashboard's routes: the models, a run's misclassified images and their thumbnails.
        ["foreign Host lists the models"] = new(t => Host(t.Request(HttpMethod.Get, "api/models"), $"attacker.example:{t.Port}"), 400, "Host"),
        ["no token lists the models"] = new(t => t.Request(HttpMethod.Get, "api/models", token: false), 401, "Authorization"),
        ["foreign Host reads misclassified images"] = new(t => Host(t.Request(HttpMethod.Get, "api/finetune/victim/misclassified"), $"attacker.example:{t.Port}"), 400, "Host"),
        ["no token reads a misclassified thumbnail"] = new(t => t.Request(HttpMethod.Get, "api/finetune/victim/misclassified/0", token: false), 401, "Authorization"),
        ["misclassified of a bad id"] = new(t => t.Request(HttpMethod.Get, "api/finetune/..%2F..%2Fetc/misclassified"), 400, "id"),
        ["misclassified thumbnail of a bad id"] = new(t => t.Request(HttpMethod.Get, "api/finetune/A%20B/misclassified/0"), 400, "id"),
        ["misclassified thumbnail by a path"] = new(t => t.Request(HttpMethod.Get, "api/finetune/victim/misclassified/..%2F..%2Fspec.json"), 400, "index"),
        ["misclassified thumbnail past the list"] = new(t => t.Request(HttpMethod.Get, "api/finetune/victim/misclassified/99999999999"), 400, "index"),
        ["cross-site POST to the models"] = new(t => Origin(t.Request(HttpMethod.Post, "api/models", token: false), CrossSite), 403, "Origin"),
        ["weights named by a server path from another origin"] = new(t => Origin(t.Request(HttpMethod.Post, "api/finetune",
            Json($$"""{ "dataset": { "location": "blob:d/" }, "weights": { "source": {{JsonSerializer.Serialize(t.SecretFile)}} } }""")), CrossSite), 403, "Origin"),
    };

    public static TheoryData<string> Names => [.. Attacks.Keys];

    [Theory]
    [MemberData(nameof(Names))]
    public async Task TheAttackIsRefusedAndLeavesNothing(string name)
    {
        var attack = Attacks[name];
        var filesBefore = Files();
        long memoryBefore = target.Serve.ResidentBytes;

        using var request = attack.Send(target);
        using var response = await target.Raw.SendAsync(request);
        string body = await response.Content.ReadAsStringAsync();

        long growth = target.Serve.ResidentBytes - memoryBefore;
        log.WriteLine($"{name}: {(int)response.StatusCode} {body[..Math.Min(body.Length, 300)]} (RSS {growth / 1e6:+0.0;-0.0} MB)");
        Assert.Equal(attack.Status, (int)response.StatusCode);
        if (attack.Field.Length > 0)
        {
            var answer = JsonDocument.Parse(body).RootElement;
            Assert.Equal("badInput", answer.GetProperty("errorKind").GetString());
            Assert.True(answer.GetProperty("errors").TryGetProperty(attack.Field, out _), answer.ToString());
        }
        Assert.DoesNotContain(target.Secret, body, StringComparison.Ordinal);
        Assert.DoesNotContain(target.Token, body, StringComparison.Ordinal);
        Assert.DoesNotContain("root:x:0:0", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Set-Cookie", response.Headers.Select(h => h.Key));
        Assert.True(growth < GrowthBoundBytes, $"RSS rose {growth / 1e6:0} MB");
        Assert.Equal(filesBefore, Files());
        using var client = ServeHost.Authorized(target.Serve);
        Assert.Empty(JsonDocument.Parse(await client.GetStringAsync("api/finetune")).RootElement.GetProperty("runs").EnumerateArray());
    }

    /// <summary>Links and Location are the configured address, whichever loopback name the request used (a server of its own: it runs).</summary>
    [Fact]
    public async Task LinksNameTheConfiguredAddressNotTheRequestsHost()
    {
        await using var serve = await ServeProcess.StartAsync();
        using var http = ServeHost.Authorized(serve);
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/finetune")
        {
            Content = Upload(spec: """{ "jobId": "links", "training": { "epochs": 1 } }""", zip: HostileFiles.ZipWith("a/notes.txt")),
        };
        request.Headers.Host = $"LocalHost:{serve.Url.Port}";

        using var started = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        Assert.Equal(new Uri(serve.Url, "api/finetune/links"), started.Headers.Location);
        var links = JsonDocument.Parse(await started.Content.ReadAsStringAsync()).RootElement.GetProperty("links");
        Assert.All(links.EnumerateObject(), link => Assert.StartsWith(serve.Url.ToString(), link.Value.GetString(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheTokenFileIsTheOwnersOnlyAndTheDashboardTurnsTheTokenIntoAStrictCookie()
    {
        string file = Path.Combine(target.Serve.WorkDirectory, LocalAccess.TokenFileName);
        Assert.Equal(target.Token, await File.ReadAllTextAsync(file));
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));

        using var opened = await target.Raw.SendAsync(target.Request(HttpMethod.Get, $"/?token={target.Token}", token: false));
        Assert.Equal(HttpStatusCode.Found, opened.StatusCode);
        Assert.Equal("/", opened.Headers.Location?.OriginalString);
        string cookie = Assert.Single(opened.Headers.GetValues("Set-Cookie"));
        Assert.StartsWith($"finetune-token-{target.Port}={target.Token};", cookie, StringComparison.Ordinal);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);

        using var withCookie = await target.Raw.SendAsync(Cookie(target.Request(HttpMethod.Get, "api/finetune", token: false), target));
        Assert.Equal(HttpStatusCode.OK, withCookie.StatusCode);
        using var page = await target.Raw.SendAsync(target.Request(HttpMethod.Get, "/", token: false));
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("frame-ancestors 'none'", page.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
    }

    /// <summary>--no-auth: no token, a warning, and callers name no server paths; Host and Origin are still checked.</summary>
    [Fact]
    public async Task WithoutTheTokenCallersNameNoServerPathsAndHostAndOriginStillHold()
    {
        await using var serve = await ServeProcess.StartAsync(noAuth: true);
        Assert.Contains("warning: --no-auth", serve.Log, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(serve.WorkDirectory, LocalAccess.TokenFileName)));
        using var http = new HttpClient { BaseAddress = serve.Url };

        using var local = await http.PostAsync("api/finetune", Json("""{ "dataset": { "location": "/etc" } }"""));
        string body = await local.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, local.StatusCode);
        Assert.Contains("dataset.location", body, StringComparison.Ordinal);
        using var rebound = new HttpRequestMessage(HttpMethod.Get, "api/finetune");
        rebound.Headers.Host = $"attacker.example:{serve.Url.Port}";
        Assert.Equal(HttpStatusCode.BadRequest, (await http.SendAsync(rebound)).StatusCode);
        using var crossSite = new HttpRequestMessage(HttpMethod.Post, "api/finetune/x/cancel");
        crossSite.Headers.Add("Origin", CrossSite);
        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(crossSite)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("api/finetune")).StatusCode);
    }

    /// <summary>Every file under the work folder with its length, but the secret the fixture wrote.</summary>
    private SortedDictionary<string, long> Files() => new(Directory.EnumerateFiles(target.Serve.WorkDirectory, "*", SearchOption.AllDirectories)
        .ToDictionary(f => Path.GetRelativePath(target.Serve.WorkDirectory, f), f => new FileInfo(f).Length), StringComparer.Ordinal);

    private static HttpRequestMessage Origin(HttpRequestMessage request, string origin) => Header(request, "Origin", origin);

    private static HttpRequestMessage Host(HttpRequestMessage request, string host)
    {
        request.Headers.Host = host;
        return request;
    }

    private static HttpRequestMessage Bearer(HttpRequestMessage request, string token)
    {
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return request;
    }

    private static HttpRequestMessage Cookie(HttpRequestMessage request, AttackTarget target) =>
        Header(request, "Cookie", $"{LocalAccess.CookieName(target.Port)}={target.Token}");

    private static HttpRequestMessage Header(HttpRequestMessage request, string name, string value)
    {
        request.Headers.TryAddWithoutValidation(name, value);
        return request;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static readonly Lazy<byte[]> Photos = new(() => TuxPaintStamps.CreateZip(perClass: 2, ApiScenarios.Classes));

    private static MultipartFormDataContent Upload(string spec = """{ "training": { "epochs": 1 } }""", string fileName = "photos.zip", byte[]? zip = null)
    {
        var dataset = new ByteArrayContent(zip ?? Photos.Value);
        dataset.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        return new MultipartFormDataContent { { dataset, "dataset", fileName }, { new StringContent(spec), "spec" } };
    }

    private static MultipartFormDataContent TwoDatasets()
    {
        var content = Upload();
        content.Add(new ByteArrayContent(Photos.Value), "dataset", "more.zip");
        return content;
    }

    private static MultipartFormDataContent Parts(int count, string name, string? fileName = null)
    {
        var content = new MultipartFormDataContent();
        for (int i = 0; i < count; i++)
        {
            var part = new ByteArrayContent("x"u8.ToArray());
            if (fileName is null) content.Add(part, name);
            else content.Add(part, name, fileName);
        }
        return content;
    }

    /// <summary>A body sent as is, under <c>multipart/form-data</c> with <paramref name="boundary"/> (null: none).</summary>
    private static ByteArrayContent Raw(string body, string? boundary)
    {
        var content = new ByteArrayContent(Encoding.ASCII.GetBytes(body));
        content.Headers.TryAddWithoutValidation("Content-Type", "multipart/form-data" + (boundary is null ? "" : "; boundary=" + boundary));
        return content;
    }
}
