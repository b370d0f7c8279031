using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using FineTune.Core.Models;
using FineTune.Core.Weights;

namespace FineTune.Core.Tests.Weights;

public sealed class WeightsFetcherTests : IAsyncLifetime, IDisposable
{
    private static readonly ModelFamily Resnet18 = ModelRegistry.Get("resnet18");
    private readonly string _dir = Directory.CreateTempSubdirectory("fetch-").FullName;
    private readonly byte[] _payload = RandomNumberGenerator.GetBytes(300_000);
    private HttpListener _server = new();
    private readonly CancellationTokenSource _stop = new();
    private int _requests;
    private string _base = "";
    private Task _serving = Task.CompletedTask;

    private string PayloadSha => Convert.ToHexStringLower(SHA256.HashData(_payload));
    private string Cache => Path.Combine(_dir, "cache");

    public Task InitializeAsync()
    {
        // HttpListener cannot bind port 0. A port the OS just handed to a probe is free, but another process may take it before
        // the listener binds it: then Start fails and another is tried, so the tests only use a port the listener holds.
        for (int attempt = 1; ; attempt++)
        {
            _base = $"http://127.0.0.1:{FreePort()}";
            _server.Prefixes.Add(_base + "/");
            try
            {
                _server.Start();
                break;
            }
            catch (HttpListenerException) when (attempt < 10)
            {
                _server.Close();
                _server = new HttpListener();
            }
        }
        _serving = ServeAsync();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _stop.Cancel();
        _server.Stop();
        await _serving.ContinueWith(_ => { });
        Directory.Delete(_dir, recursive: true);
    }

    // xunit calls this after DisposeAsync, once the server loop has ended.
    public void Dispose()
    {
        _server.Close();
        _stop.Dispose();
    }

    [Fact]
    public async Task TorchvisionNamedDownloadIsVerifiedCachedAndFetchedOnce()
    {
        var fetcher = NewFetcher();
        string url = $"{_base}/models/resnet18-{PayloadSha[..8]}.pth";

        var first = await fetcher.FetchAsync(Resnet18, url, null, default);
        var second = await fetcher.FetchAsync(Resnet18, url, first.Sha256, default);

        Assert.Equal(PayloadSha, first.Sha256);
        Assert.Equal(_payload, await File.ReadAllBytesAsync(first.Path));
        Assert.Equal(Path.Combine(Cache, PayloadSha + ".pth"), first.Path);
        Assert.Equal(first.Path, second.Path);
        Assert.Equal(1, _requests);
    }

    [Fact]
    public async Task DownloadWithTheJobsSha256NeedsNoNameConvention()
    {
        var fetched = await NewFetcher().FetchAsync(Resnet18, $"{_base}/weights.safetensors", "SHA256:" + PayloadSha.ToUpperInvariant(), default);
        Assert.Equal(PayloadSha, fetched.Sha256);
    }

    [Fact]
    public async Task WrongHashPrefixIsRefusedAndNothingIsCached()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher().FetchAsync(Resnet18, $"{_base}/resnet18-00000000.pth", null, default));
        Assert.Contains("does not start with the file name's 00000000", error.Message);
        Assert.Empty(Directory.EnumerateFiles(Cache));
    }

    [Fact]
    public async Task WrongSha256IsRefused()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher().FetchAsync(Resnet18, $"{_base}/w.pth", new string('a', 64), default));
        Assert.Contains("the job expects aaaa", error.Message);
        Assert.Empty(Directory.EnumerateFiles(Cache));
    }

    [Fact]
    public async Task UnverifiableUrlIsRefusedBeforeDownloading()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher().FetchAsync(Resnet18, $"{_base}/weights.pth", null, default));
        Assert.Contains("cannot be verified", error.Message);
        Assert.Equal(0, _requests);
    }

    [Fact]
    public async Task HostOutsideTheAllowListIsRefusedBeforeDownloading()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher(allowed: "download.pytorch.org").FetchAsync(Resnet18, $"{_base}/resnet18-{PayloadSha[..8]}.pth", null, default));
        Assert.Contains("host '127.0.0.1' is not in the allowed hosts", error.Message);
        Assert.Equal(0, _requests);
    }

    [Fact]
    public async Task RedirectToAHostOutsideTheAllowListIsRefused()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher().FetchAsync(Resnet18, $"{_base}/redirect/localhost/resnet18-{PayloadSha[..8]}.pth", null, default));
        Assert.Contains("redirected to http://localhost:", error.Message);
        Assert.Contains("host 'localhost' is not in the allowed hosts", error.Message);
        Assert.Equal(1, _requests);
        Assert.Empty(Directory.EnumerateFiles(Cache));
    }

    [Fact]
    public async Task RedirectWithinTheAllowListIsFollowed()
    {
        var fetched = await NewFetcher().FetchAsync(Resnet18, $"{_base}/redirect/127.0.0.1/models/resnet18-{PayloadSha[..8]}.pth", null, default);
        Assert.Equal(PayloadSha, fetched.Sha256);
        Assert.Equal(2, _requests);
    }

    [Fact]
    public async Task StalledDownloadIsAbandonedAfterTheIdleTimeout()
    {
        var started = DateTime.UtcNow;
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher(idle: TimeSpan.FromSeconds(1)).FetchAsync(Resnet18, $"{_base}/stall/resnet18-{PayloadSha[..8]}.pth", null, default));
        Assert.Contains("the download stalled", error.Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30));
        Assert.Empty(Directory.EnumerateFiles(Cache));
    }

    [Fact]
    public async Task HostsOtherThanTorchvisionsNeedTheJobsSha256()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher(nameHashes: false).FetchAsync(Resnet18, $"{_base}/resnet18-{PayloadSha[..8]}.pth", null, default));
        Assert.Contains("give its sha256: only files of download.pytorch.org are verified by the hash in their name", error.Message);
        Assert.Equal(0, _requests);
    }

    [Fact]
    public void AConfiguredHostListReplacesTheDefault()
    {
        Assert.Equal(["download.pytorch.org"], new WeightsFetchOptions().EffectiveAllowedHosts);
        Assert.Equal(["mirror.example"], new WeightsFetchOptions { AllowedHosts = ["mirror.example"] }.EffectiveAllowedHosts);
        Assert.Empty(new WeightsFetchOptions { AllowedHosts = [""] }.EffectiveAllowedHosts);
    }

    [Fact]
    public async Task PlainHttpIsRefusedUnlessAllowed()
    {
        var fetcher = new WeightsFetcher(new HttpClient(), new WeightsFetchOptions { AllowedHosts = ["127.0.0.1"], CacheDirectory = Cache });
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            fetcher.FetchAsync(Resnet18, $"{_base}/resnet18-{PayloadSha[..8]}.pth", null, default));
        Assert.Contains("only https", error.Message);
    }

    [Theory]
    [InlineData("/resnet18-{0}.pth")]
    [InlineData("/chunked/resnet18-{0}.pth")]
    public async Task OversizedDownloadIsStoppedAndDiscarded(string path)
    {
        var fetcher = NewFetcher(maxBytes: 100_000);
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            fetcher.FetchAsync(Resnet18, _base + string.Format(CultureInfo.InvariantCulture, path, PayloadSha[..8]), null, default));
        Assert.Contains("100000-byte limit", error.Message);
        Assert.Empty(Directory.EnumerateFiles(Cache));
    }

    [Fact]
    public async Task MissingRemoteFileSaysWhatTheServerAnswered()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            NewFetcher().FetchAsync(Resnet18, $"{_base}/missing/resnet18-{PayloadSha[..8]}.pth", null, default));
        Assert.Contains("404", error.Message);
    }

    [Fact]
    public async Task LocalFileIsCachedByHashAndVerifiedWhenAHashIsGiven()
    {
        var file = Path.Combine(_dir, "mine.pth");
        await File.WriteAllBytesAsync(file, _payload);
        var fetcher = NewFetcher();

        var fetched = await fetcher.FetchAsync(Resnet18, file, null, default);
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() => fetcher.FetchAsync(Resnet18, file, new string('b', 64), default));

        Assert.Equal(PayloadSha, fetched.Sha256);
        Assert.Contains("the job expects bbbb", error.Message);
        Assert.Single(Directory.EnumerateFiles(Cache));
    }

    [Fact]
    public async Task MissingLocalFileIsAClearError()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() => NewFetcher().FetchAsync(Resnet18, "/nope/w.pth", null, default));
        Assert.Contains("'/nope/w.pth' does not exist", error.Message);
    }

    [Theory]
    [InlineData("/dev/zero")]
    [InlineData("/dev/urandom")]
    [InlineData("fifo")]
    public async Task DevicesAndPipesAreRefusedBeforeTheyAreOpened(string source)
    {
        string path = source == "fifo" ? Fifo() : source;

        // Opening a FIFO blocks until a writer comes, and a device never ends: the bound only keeps a regression from hanging.
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() => NewFetcher().FetchAsync(Resnet18, path, null, default).WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Contains("is not a regular file", error.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Cache));
    }

    [Fact]
    public async Task LocalFileOverTheCapIsRefusedUnread()
    {
        var file = Path.Combine(_dir, "big.pth");
        await File.WriteAllBytesAsync(file, _payload);

        var error = await Assert.ThrowsAsync<WeightsSourceException>(() => NewFetcher(maxBytes: 100_000).FetchAsync(Resnet18, file, null, default));

        Assert.Contains("300000 bytes is over the 100000-byte limit", error.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Cache));
    }

    [Fact]
    public async Task CancelStopsALongLocalCopyAtOnceAndRemovesItsTemporaryFile()
    {
        // 8 GiB that take no disk (a sparse file), copied at disk speed: long enough to be cancelled midway.
        var file = Path.Combine(_dir, "huge.pth");
        using (var stream = File.Create(file)) stream.SetLength(8L << 30);
        using var cancel = new CancellationTokenSource();
        var copying = NewFetcher(maxBytes: 16L << 30).FetchAsync(Resnet18, file, null, cancel.Token);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        while (!Directory.Exists(Cache) || !Directory.EnumerateFiles(Cache).Any(f => new FileInfo(f).Length > 0)) await Task.Delay(5, timeout.Token);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => copying.WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"stopped {clock.Elapsed} after the cancel");
        Assert.Empty(Directory.EnumerateFileSystemEntries(Cache));
    }

    private string Fifo()
    {
        string path = Path.Combine(_dir, "pipe.pth");
        using var mkfifo = System.Diagnostics.Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
        return path;
    }

    [Fact]
    public async Task BundledWeightsAreMaterialisedOnceAsSafetensors()
    {
        var family = ModelRegistry.Get(CntkResNet18.FamilyName);
        var fetcher = NewFetcher();

        var first = await fetcher.FetchAsync(family, WeightsFetcher.Bundled, null, default);
        var written = File.GetLastWriteTimeUtc(first.Path);
        var again = await fetcher.FetchAsync(family, WeightsFetcher.Bundled, first.Sha256, default);

        Assert.EndsWith(".safetensors", first.Path);
        Assert.Equal(first.Path, again.Path);
        Assert.Equal(written, File.GetLastWriteTimeUtc(again.Path));
        using var model = FineTuneModel.Create(family, 3, seed: 0);
        PretrainedWeights.LoadBackbone(model, StateDictFile.Read(first.Path));
    }

    [Fact]
    public async Task FamilyWithoutBundledWeightsSaysWhichHaveThem()
    {
        var error = await Assert.ThrowsAsync<WeightsSourceException>(() => NewFetcher().FetchAsync(Resnet18, WeightsFetcher.Bundled, null, default));
        Assert.Contains("resnet18 has no bundled weights", error.Message);
        Assert.Contains(CntkResNet18.FamilyName, error.Message);
    }

    [Theory]
    [InlineData("no-such-host.invalid", "its name does not resolve")]
    [InlineData("127.0.0.1:1", "the connection was refused or lost")]
    public async Task AnUnreachableHostIsTriedAFewTimesThenNamedWithTheWaysAround(string host, string why)
    {
        var options = new WeightsFetchOptions
        {
            AllowedHosts = [host.Split(':')[0]],
            NameHashHosts = [host.Split(':')[0]],
            AllowHttp = true,
            CacheDirectory = Cache,
            UnreachableAttempts = 3,
            UnreachableRetryDelay = TimeSpan.FromMilliseconds(200),
        };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<WeightsHostUnreachableException>(() =>
            new WeightsFetcher(new HttpClient(), options).FetchAsync(Resnet18, $"http://{host}/resnet18-0123abcd.pth", null, default));
        Assert.Contains($"http://{host}/resnet18-0123abcd.pth", e.Message);
        Assert.Contains($"{why}; 3 attempts", e.Message);
        Assert.Contains("TorchvisionModelsUrl", e.Message);
        // The two waits between the three attempts, doubling: 200 ms, then 400 ms (less a little: a timer may fire a
        // millisecond before the stopwatch says, and did: 599.06 ms in one CI run).
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(580), $"gave up after {clock.Elapsed}");
        Assert.Empty(Directory.GetFiles(Cache));
    }

    private WeightsFetcher NewFetcher(string allowed = "127.0.0.1", long maxBytes = 10_000_000, TimeSpan? idle = null, bool nameHashes = true) =>
        new(new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }), new WeightsFetchOptions
        {
            AllowedHosts = [allowed],
            NameHashHosts = nameHashes ? [allowed] : null,
            IdleTimeout = idle ?? TimeSpan.FromSeconds(60),
            AllowHttp = true,
            MaxBytes = maxBytes,
            CacheDirectory = Cache,
        });

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try { context = await _server.GetContextAsync(); }
            catch (Exception) when (_stop.IsCancellationRequested) { return; }
            Interlocked.Increment(ref _requests);
            string path = context.Request.Url!.AbsolutePath;
            var response = context.Response;
            if (path.StartsWith("/missing/", StringComparison.Ordinal))
            {
                response.StatusCode = 404;
                response.Close();
                continue;
            }
            if (path.StartsWith("/redirect/", StringComparison.Ordinal))
            {
                // /redirect/HOST/rest → http://HOST:port/rest
                var parts = path.Split('/', 4);
                response.StatusCode = 302;
                response.RedirectLocation = $"http://{parts[2]}:{new Uri(_base).Port}/{parts[3]}";
                response.Close();
                continue;
            }
            if (path.StartsWith("/stall/", StringComparison.Ordinal))
            {
                response.ContentLength64 = _payload.Length;
                _ = StallAsync(response);
                continue;
            }
            response.SendChunked = path.StartsWith("/chunked/", StringComparison.Ordinal);
            if (!response.SendChunked) response.ContentLength64 = _payload.Length;
            try { await response.OutputStream.WriteAsync(_payload); response.Close(); }
            catch (Exception) { response.Abort(); } // the client may stop reading early
        }
    }

    /// <summary>Sends a tenth of the payload, then nothing until the test ends.</summary>
    private async Task StallAsync(HttpListenerResponse response)
    {
        try
        {
            await response.OutputStream.WriteAsync(_payload.AsMemory(0, _payload.Length / 10));
            await response.OutputStream.FlushAsync();
            await Task.Delay(Timeout.Infinite, _stop.Token);
        }
        catch (Exception)
        {
            response.Abort();
        }
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
