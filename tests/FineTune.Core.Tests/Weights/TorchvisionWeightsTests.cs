using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Weights;

namespace FineTune.Core.Tests.Weights;

/// <summary>Weights by name: the table against torchvision's own, and the download path over real https from an allow-listed host.</summary>
public sealed class TorchvisionWeightsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("torchvision-weights-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EveryFamilyButTheBundledOnesHasTorchvisionsFilesEachNamingItsHashPrefix()
    {
        foreach (var family in ModelRegistry.Families)
        {
            var checkpoint = TorchvisionWeights.Resolve(family, TorchvisionWeights.Default);
            Assert.True(family.HasBundledWeights == (checkpoint is null), family.Name);
            Assert.Equal(checkpoint, TorchvisionWeights.Resolve(family, TorchvisionWeights.DefaultTag));
        }
        foreach (var checkpoint in TorchvisionWeights.All)
        {
            // Eight hex digits mostly; ShuffleNetV2 and MNASNet name ten (torch.hub checks as many as the name gives).
            Assert.Matches("^[0-9a-f]{8,64}$", checkpoint.Sha256Prefix);
            Assert.StartsWith(TorchvisionWeights.ModelsUrl, checkpoint.Url);
            Assert.Contains(checkpoint.Family, ModelRegistry.Families);
        }
        Assert.Equal("IMAGENET1K_V2", TorchvisionWeights.Resolve("resnet50", TorchvisionWeights.Default)!.Tag);
        Assert.Equal("IMAGENET1K_V1", TorchvisionWeights.Resolve("resnet18", TorchvisionWeights.Default)!.Tag);
        Assert.Null(TorchvisionWeights.Resolve("resnet18", "IMAGENET1K_V2"));
        Assert.Null(TorchvisionWeights.Resolve("no-such-model", TorchvisionWeights.Default));
    }

    /// <summary>
    /// Debian's torchvision 0.14 lists every builder's weights (<c>get_model_weights</c>): the table is exactly those, tag
    /// for tag, with each tag's URL, the hash prefix in its file name, its <c>transforms()</c> (crop, resize,
    /// interpolation, mean, std), its categories count, its parameter count and which tag is DEFAULT.
    /// </summary>
    [Fact]
    public void TheTableIsTorchvisionsOwn()
    {
        var builders = ModelRegistry.Families.Where(f => !f.HasBundledWeights).Select(f => f.Name).ToArray();
        var theirs = PythonReference.RunScript(WeightsTable, ["rows", .. builders]).Split('\n').Select(line => line.Trim());
        var ours = ModelRegistry.Families.SelectMany(f => f.Weights.Select(w => string.Join(' ',
            f.Name, w.Tag, w.Url, w.Sha256Prefix, w.Preprocessing.CropSize, w.Preprocessing.ResizeSize,
            Interpolations.Choices[w.Preprocessing.Interpolation].Name, Floats(w.Preprocessing.Mean), Floats(w.Preprocessing.Std),
            w.Categories, w.NumParams, w.Tag == f.DefaultWeights ? "default" : "-")));
        Assert.Equal(theirs, ours);
        Assert.All(TorchvisionWeights.All, c => Assert.Equal((ChannelOrder.Rgb, 1f / 255f), (c.Weights.Preprocessing.ChannelOrder, c.Weights.Preprocessing.Scale)));
    }

    /// <summary>Every classification builder of Debian's torchvision 0.14 is registered under its name (the CNTK ResNets besides, with no torchvision weights).</summary>
    [Fact]
    public void EveryTorchvisionClassificationBuilderIsRegistered()
    {
        var theirs = PythonReference.RunScript("-c", "import torchvision; print(' '.join(torchvision.models.list_models(module=torchvision.models)))").Split(' ');
        Assert.Equal(80, theirs.Length);
        Assert.Equal(theirs.Order(StringComparer.Ordinal), ModelRegistry.Families.Where(f => !f.HasBundledWeights).Select(f => f.Name).Order(StringComparer.Ordinal));
    }

    private static string WeightsTable => Path.Combine(AppContext.BaseDirectory, "Reference", "weights_table.py");

    /// <summary>As the script prints them: Python's <c>f"{v:.6g}"</c>.</summary>
    private static string Floats(IEnumerable<float> values) =>
        string.Join(',', values.Select(v => ((double)v).ToString("G6", System.Globalization.CultureInfo.InvariantCulture)));

    [Fact]
    public async Task ANameIsDownloadedOverHttpsFromTheConfiguredFolderAndVerified()
    {
        byte[] payload = RandomNumberGenerator.GetBytes(200_000);
        string sha = Convert.ToHexStringLower(SHA256.HashData(payload));
        string file = TorchvisionWeights.Resolve("resnet50", "IMAGENET1K_V1")!.FileName;
        await using var server = new HttpsServer(path => path == $"/models/{file}" || path == $"/models/resnet50-{sha[..8]}.pth" ? payload : null);
        var fetcher = new WeightsFetcher(server.Client(), new WeightsFetchOptions
        {
            AllowedHosts = ["localhost"],
            // A mirror of torchvision's folder: its names' hash prefixes verify its files, as torchvision's own do.
            NameHashHosts = ["localhost"],
            TorchvisionModelsUrl = $"https://localhost:{server.Port}/models/",
            CacheDirectory = Path.Combine(_dir, "cache"),
        });
        var resnet50 = ModelRegistry.Get("resnet50");

        // These bytes are not torchvision's: only the job's sha256 can vouch for them, and does.
        var byName = await fetcher.FetchAsync(resnet50, "IMAGENET1K_V1", sha, default);
        Assert.Equal(sha, byName.Sha256);
        Assert.Equal(payload, await File.ReadAllBytesAsync(byName.Path));
        Assert.EndsWith(file, byName.Source);
        // A torchvision-style name is verified by its prefix, over https too.
        var byUrl = await fetcher.FetchAsync(resnet50, $"https://localhost:{server.Port}/models/resnet50-{sha[..8]}.pth", null, default);
        Assert.Equal(sha, byUrl.Sha256);
        // Without the job's hash, the name's own prefix decides: these bytes are refused.
        var refused = await Assert.ThrowsAsync<WeightsSourceException>(() => fetcher.FetchAsync(resnet50, "IMAGENET1K_V1", null, default));
        Assert.Contains("does not start with the file name's", refused.Message);
        Assert.Equal(3, server.Requests);
    }

    [Fact]
    public async Task HuggingFaceHubUrlsAreAllowedOnlyWhenConfigured()
    {
        const string url = "https://huggingface.co/owner/model/resolve/main/model.safetensors";
        var options = new WeightsFetchOptions { CacheDirectory = Path.Combine(_dir, "cache") };
        var refused = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            new WeightsFetcher(new HttpClient(), options).FetchAsync(ModelRegistry.Get("resnet18"), url, null, default));
        Assert.Contains("is not in the allowed hosts", refused.Message);

        options.AllowHuggingFaceHub = true;
        // Past the allow-list; the hub's files carry no hash in their names, so the job must give one.
        var unverifiable = await Assert.ThrowsAsync<WeightsSourceException>(() =>
            new WeightsFetcher(new HttpClient(), options).FetchAsync(ModelRegistry.Get("resnet18"), url, null, default));
        Assert.Contains("give its sha256", unverifiable.Message);
    }

    /// <summary>An HTTPS/1.1 server on loopback with a self-signed certificate for localhost, which only its own client trusts.</summary>
    private sealed class HttpsServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly X509Certificate2 _certificate;
        private readonly Func<string, byte[]?> _content;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _serving;
        private int _requests;

        public HttpsServer(Func<string, byte[]?> content)
        {
            _content = content;
            using var key = RSA.Create(2048);
            var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName("localhost");
            request.CertificateExtensions.Add(names.Build());
            using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
            _certificate = X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
            _listener.Start();
            _serving = ServeAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;
        public int Requests => _requests;

        public HttpClient Client() => new(new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate?.GetCertHashString() == _certificate.GetCertHashString() },
        });

        private async Task ServeAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient client;
                try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
                catch (OperationCanceledException) { return; }
                using (client)
                await using (var tls = new SslStream(client.GetStream()))
                {
                    try
                    {
                        await tls.AuthenticateAsServerAsync(_certificate);
                        var head = new StringBuilder();
                        var buffer = new byte[1];
                        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await tls.ReadAsync(buffer) == 1)
                            head.Append((char)buffer[0]);
                        Interlocked.Increment(ref _requests);
                        string path = head.ToString().Split(' ')[1];
                        byte[]? body = _content(path);
                        string status = body is null ? "404 Not Found" : "200 OK";
                        await tls.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: {body?.Length ?? 0}\r\nConnection: close\r\n\r\n"));
                        if (body is not null) await tls.WriteAsync(body);
                    }
                    catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException)
                    {
                        // A client that gave up: the next one is served.
                    }
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _serving;
            _certificate.Dispose();
            _stop.Dispose();
        }
    }
}
