using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using FineTune.Testing;

namespace FineTune.Api.Tests;

/// <summary>Runs only where Debian's <c>prometheus</c> is installed; on CI (<c>CI=true</c>) its absence fails the test instead.</summary>
public sealed class PrometheusFactAttribute : FactAttribute
{
    public const string Binary = "/usr/bin/prometheus";

    public PrometheusFactAttribute()
    {
        if (!File.Exists(Binary) && Environment.GetEnvironmentVariable("CI") != "true")
            Skip = $"{Binary} is missing: apt-get install --no-install-recommends prometheus (as .ci/run does)";
    }
}

/// <summary>Issue 26, item 3: <c>finetune serve</c>'s <c>/metrics</c>, scraped by a real Prometheus server.</summary>
public sealed class PrometheusScrapeTests
{
    [Fact]
    public async Task MetricsNeedTheTokenAndTheServersOwnHost()
    {
        await using var serve = await ServeProcess.StartAsync();
        using var anonymous = new HttpClient { BaseAddress = serve.Url };
        using (var response = await anonymous.GetAsync("/metrics")) Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        using var authorized = ServeHost.Authorized(serve);
        using var rebound = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        rebound.Headers.Host = $"attacker.example:{serve.Url.Port}";
        using (var response = await authorized.SendAsync(rebound)) Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using (var response = await authorized.GetAsync("/metrics"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        }
    }

    [PrometheusFact]
    public async Task PrometheusScrapesARunsValidationAccuracyAsMetricsJsonlHasIt()
    {
        Assert.True(File.Exists(PrometheusFactAttribute.Binary), $"{PrometheusFactAttribute.Binary} is missing on CI: .ci/run installs it");
        await using var host = new ServeHost(await ServeProcess.StartAsync());
        string work = host.Process.WorkDirectory;
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(work, "photos"), perClass: 5, ApiScenarios.Classes);
        using (var started = await host.Client.PostAsync("api/finetune", new StringContent(
                   $$"""{ "jobId": "scraped", "dataset": { "location": {{JsonSerializer.Serialize(photos)}}, "resize": "pad" }, "training": { "epochs": 2, "batchSize": 4 } }""",
                   System.Text.Encoding.UTF8, "application/json")))
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);

        int port = FreePort();
        string config = Path.Combine(work, "prometheus.yml");
        // As README.md shows: the token from serve's work folder, never in the config itself.
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: finetune
                authorization:
                  credentials_file: {Path.Combine(work, LocalAccess.TokenFileName)}
                static_configs:
                  - targets: ['127.0.0.1:{host.Process.Url.Port}']
            """);
        var start = new ProcessStartInfo(PrometheusFactAttribute.Binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[$"--config.file={config}", $"--storage.tsdb.path={Path.Combine(work, "tsdb")}", $"--web.listen-address=127.0.0.1:{port}"])
            start.ArgumentList.Add(argument);
        using var prometheus = Process.Start(start)!;
        var log = new System.Text.StringBuilder();
        prometheus.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        prometheus.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        prometheus.BeginOutputReadLine();
        prometheus.BeginErrorReadLine();
        try
        {
            string metricsFile = Path.Combine(host.Process.ArtifactRoot, "runs/scraped/reports/metrics.jsonl");
            using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            string? seen = null;
            while (true)
            {
                Assert.False(timeout.IsCancellationRequested, $"Prometheus never answered the run's last validation accuracy (last answer {seen}); its log:\n{log}\nserve's log:\n{host.Log}");
                // The expected value is metrics.jsonl's last line once the run has finished both epochs.
                var lines = File.Exists(metricsFile) ? File.ReadAllLines(metricsFile) : [];
                double? expected = lines.Length == 2 ? JsonDocument.Parse(lines[^1]).RootElement.GetProperty("validationAccuracy").GetDouble() : null;
                try
                {
                    seen = await api.GetStringAsync("api/v1/query?query=" + Uri.EscapeDataString("finetune_epoch_validation_accuracy{run_id=\"scraped\"}"), timeout.Token);
                    var result = JsonDocument.Parse(seen).RootElement.GetProperty("data").GetProperty("result");
                    if (expected is not null && result.GetArrayLength() == 1
                        && double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture) == expected)
                        break;
                }
                catch (HttpRequestException)
                {
                    // Prometheus still starting.
                }
                await Task.Delay(500, CancellationToken.None);
            }
        }
        finally
        {
            prometheus.Kill();
            await prometheus.WaitForExitAsync();
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
