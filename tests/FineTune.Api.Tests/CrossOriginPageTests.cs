using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using OpenQA.Selenium;
using OpenQA.Selenium.Support.UI;
using Xunit.Abstractions;

namespace FineTune.Api.Tests;

/// <summary>
/// A hostile page in real Chromium, served from another loopback origin while the user has the dashboard open (its
/// cookie set): it posts a run as multipart and as text/plain JSON, cancels and purges with <c>no-cors</c> fetches,
/// submits a form with a file into a hidden frame, and tries to read the run list. Same site as the dashboard
/// (127.0.0.1 on another port), so the browser even attaches the SameSite=Strict cookie: Origin holds it.
/// </summary>
public sealed class CrossOriginPageTests(ITestOutputHelper log)
{
    [Fact]
    public async Task APageOnAnotherOriginStartsCancelsPurgesAndReadsNothing()
    {
        await using var serve = await ServeProcess.StartAsync();
        using var http = ServeHost.Authorized(serve);
        string zip = Convert.ToBase64String(TuxPaintStamps.CreateZip(perClass: 2, ApiScenarios.Classes));
        int port = FreePort();
        using var page = new HttpListener();
        page.Prefixes.Add($"http://127.0.0.1:{port}/");
        page.Start();
        var serving = ServeAsync(page, AttackPage([$"http://127.0.0.1:{serve.Url.Port}", $"http://localhost:{serve.Url.Port}"], zip));
        string downloads = Directory.CreateDirectory(Path.Combine(serve.WorkDirectory, "downloads")).FullName;
        using var browser = DashboardBrowserTests.Chrome(downloads);
        var wait = new WebDriverWait(browser, TimeSpan.FromMinutes(1)) { PollingInterval = TimeSpan.FromMilliseconds(100) };

        // The user's session: the dashboard opened with its token, so the browser holds the cookie.
        browser.Navigate().GoToUrl(serve.DashboardUrl);
        wait.Until(b => b.Manage().Cookies.GetCookieNamed(LocalAccess.CookieName(serve.Url.Port)) is not null);
        browser.Navigate().GoToUrl($"http://127.0.0.1:{port}/");
        wait.Until(b => b.Title == "done");

        var results = JsonDocument.Parse(browser.FindElement(By.Id("results")).Text).RootElement;
        log.WriteLine(results.ToString());
        // no-cors requests are sent (opaque answers); reads across origins are blocked by CORS.
        Assert.All(results.EnumerateObject().Where(r => r.Name.EndsWith("read", StringComparison.Ordinal)), r => Assert.StartsWith("blocked", r.Value.GetString(), StringComparison.Ordinal));
        Assert.Contains(results.EnumerateObject(), r => r.Value.GetString()!.StartsWith("sent:opaque", StringComparison.Ordinal));
        Assert.Empty(JsonDocument.Parse(await http.GetStringAsync("api/finetune")).RootElement.GetProperty("runs").EnumerateArray());
        Assert.False(Directory.Exists(Path.Combine(serve.ArtifactRoot, "datasets")), "an upload was stored");
        page.Stop();
        await serving;
    }

    /// <summary>The attacker's page: every request a page may send to <paramref name="targets"/> without a preflight, then a read.</summary>
    private static string AttackPage(string[] targets, string zipBase64) => $$"""
        <!doctype html>
        <html><head><title>attacking</title></head><body>
        <iframe name="sink" id="sink"></iframe>
        <pre id="results"></pre>
        <script>
        const targets = {{JsonSerializer.Serialize(targets)}};
        const zip = Uint8Array.from(atob('{{zipBase64}}'), c => c.charCodeAt(0));
        const zipFile = name => new File([zip], name, { type: 'application/zip' });
        const results = {};
        async function attack(target, n) {
          const form = new FormData();
          form.append('dataset', zipFile('photos.zip'));
          form.append('spec', JSON.stringify({ jobId: 'evil-' + n, training: { epochs: 1 } }));
          const tries = {
            start: () => fetch(target + '/api/finetune', { method: 'POST', mode: 'no-cors', credentials: 'include', body: form }),
            startTextPlain: () => fetch(target + '/api/finetune', { method: 'POST', mode: 'no-cors', credentials: 'include',
              headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ jobId: 'evil-text-' + n, dataset: { location: '/etc' } }) }),
            cancel: () => fetch(target + '/api/finetune/victim/cancel', { method: 'POST', mode: 'no-cors', credentials: 'include' }),
            purge: () => fetch(target + '/api/finetune/victim', { method: 'DELETE', credentials: 'include' }),
            read: () => fetch(target + '/api/finetune', { credentials: 'include' }).then(r => r.text()),
          };
          for (const [name, send] of Object.entries(tries)) {
            try {
              const r = await send();
              results[n + ':' + name] = typeof r === 'string' ? 'read:' + r : 'sent:' + r.type + ':' + r.status;
            } catch (e) {
              results[n + ':' + name] = 'blocked:' + e.message;
            }
          }
          // A plain form with a file, posted into a hidden frame.
          const post = document.createElement('form');
          post.method = 'POST';
          post.enctype = 'multipart/form-data';
          post.action = target + '/api/finetune';
          post.target = 'sink';
          const spec = document.createElement('input');
          spec.name = 'spec';
          spec.value = JSON.stringify({ jobId: 'evil-form-' + n });
          const file = document.createElement('input');
          file.type = 'file';
          file.name = 'dataset';
          const files = new DataTransfer();
          files.items.add(zipFile('form.zip'));
          file.files = files.files;
          post.append(spec, file);
          document.body.append(post);
          const loaded = new Promise(resolve => { document.getElementById('sink').onload = resolve; setTimeout(resolve, 5000); });
          post.submit();
          await loaded;
        }
        (async () => {
          for (const [n, target] of targets.entries()) await attack(target, n);
          document.getElementById('results').textContent = JSON.stringify(results);
          document.title = 'done';
        })();
        </script>
        </body></html>
        """;

    private static async Task ServeAsync(HttpListener listener, string html)
    {
        byte[] body = Encoding.UTF8.GetBytes(html);
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }
            context.Response.ContentType = "text/html; charset=utf-8";
            await context.Response.OutputStream.WriteAsync(body);
            context.Response.Close();
        }
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
