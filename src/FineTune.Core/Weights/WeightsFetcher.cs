using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using FineTune.Core.Models;
using FineTune.Core.Runtime;

namespace FineTune.Core.Weights;

/// <summary>Verified pretrained weights in the local cache.</summary>
public sealed record FetchedWeights(string Path, string Sha256, long Length, string Source);

/// <summary>
/// The "fetch pretrained weights" step: brings weights from a source into the cache, verified.
/// Sources: <c>bundled</c> (the family's weights that ship with the app), <c>torchvision</c> or a torchvision
/// tag such as <c>IMAGENET1K_V2</c> (<see cref="TorchvisionWeights"/>), <c>blob:NAME</c> (a user's upload), a local
/// file path, or an http(s) URL on an allowed host, every redirect hop included. A download must be verified by
/// the SHA-256 the job gives or, from <see cref="WeightsFetchOptions.NameHashHosts"/> only, by torchvision's
/// convention of a hash prefix in the file name (<c>resnet50-0676ba61.pth</c>).
/// </summary>
/// <param name="openBlob">opens an artifact of the configured store by name (blob sources); none where there is no store</param>
public sealed partial class WeightsFetcher(HttpClient http, WeightsFetchOptions options,
    Func<string, CancellationToken, Task<Stream>>? openBlob = null)
{
    public const string Bundled = "bundled";

    public async Task<FetchedWeights> FetchAsync(ModelFamily family, string source, string? expectedSha256, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        string? expected = expectedSha256 is null ? null : NormaliseSha256(expectedSha256);
        Directory.CreateDirectory(options.CacheDirectory);
        if (expected is not null && CachedPath(expected) is { } hit)
            return new FetchedWeights(hit, expected, new FileInfo(hit).Length, source);

        if (source == Bundled) return await CacheBundledAsync(family, expected, cancellationToken);
        if (TorchvisionWeights.IsName(source))
        {
            var checkpoint = TorchvisionWeights.Resolve(family.Name, source)
                ?? throw new WeightsSourceException($"{family.Name} has no torchvision weights named '{source}'");
            return await DownloadAsync(new Uri(new Uri(options.TorchvisionModelsUrl), checkpoint.FileName), expected, cancellationToken);
        }
        if (BlobReference.IsBlob(source)) return await CacheBlobAsync(BlobReference.Name(source), expected, cancellationToken);
        if (IsUrl(source, out var uri)) return await DownloadAsync(uri, expected, cancellationToken);
        return await CacheLocalFileAsync(source, expected, cancellationToken);
    }

    /// <summary>Whether a source names a file on this machine: none of the bundled weights, a torchvision name, a blob or a URL.</summary>
    public static bool IsLocalFile(string source) =>
        source.Length > 0 && source != Bundled && !TorchvisionWeights.IsName(source) && !BlobReference.IsBlob(source) && !IsUrl(source, out _);

    /// <summary>The file name a file, URL or blob source ends in (a URL's path unescaped, without its query).</summary>
    public static string FileName(string source)
    {
        string path = IsUrl(source, out var uri) ? Uri.UnescapeDataString(uri.AbsolutePath)
            : BlobReference.IsBlob(source) ? BlobReference.Name(source) : source;
        return path[(path.LastIndexOfAny(['/', '\\']) + 1)..];
    }

    private static bool IsUrl(string source, [NotNullWhen(true)] out Uri? uri) =>
        Uri.TryCreate(source, UriKind.Absolute, out uri) && uri.Scheme is "http" or "https";

    private async Task<FetchedWeights> CacheBundledAsync(ModelFamily family, string? expected, CancellationToken cancellationToken)
    {
        if (family.BundledWeights is null)
            throw new WeightsSourceException($"{family.Name} has no bundled weights; give '{TorchvisionWeights.Default}', a file or a URL (families with bundled weights: {string.Join(", ", ModelRegistry.Families.Where(f => f.HasBundledWeights).Select(f => f.Name))})");
        string source = $"{Bundled}:{family.Name}";
        // Converting the shipped weights costs more than reading them: the result is kept, keyed by the code
        // that converts (this assembly's build), and found again through an index file.
        string index = Path.Combine(options.CacheDirectory, $"{Bundled}-{family.Name}-{typeof(WeightsFetcher).Assembly.ManifestModule.ModuleVersionId:N}.sha256");
        if (File.Exists(index) && File.ReadAllText(index).Trim() is var known && (expected is null || expected == known) && CachedPath(known) is { } hit)
            return new FetchedWeights(hit, known, new FileInfo(hit).Length, source);
        string temp = TempPath();
        var state = family.BundledWeights();
        try
        {
            StateDictFile.Write(state, temp, StateDictFormat.Safetensors);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        finally
        {
            foreach (var tensor in state.Values) tensor.Dispose();
        }
        var fetched = await CommitAsync(temp, expected, source, ".safetensors", cancellationToken);
        string indexTemp = TempPath();
        try
        {
            await File.WriteAllTextAsync(indexTemp, fetched.Sha256, cancellationToken);
            File.Move(indexTemp, index, overwrite: true);
        }
        finally
        {
            File.Delete(indexTemp);
        }
        return fetched;
    }

    private async Task<FetchedWeights> CacheBlobAsync(string name, string? expected, CancellationToken cancellationToken)
    {
        if (openBlob is null)
            throw new WeightsSourceException($"'{BlobReference.To(name)}': no artifact store is configured for blob sources");
        string temp = TempPath();
        try
        {
            await using var input = await openBlob(name, cancellationToken);
            await CopyCappedAsync(input, temp, BlobReference.To(name), cancellationToken);
        }
        catch (FileNotFoundException)
        {
            File.Delete(temp);
            throw new WeightsSourceException($"'{BlobReference.To(name)}' does not exist in the artifact store");
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        return await CommitAsync(temp, expected, BlobReference.To(name), Path.GetExtension(name), cancellationToken);
    }

    /// <param name="idleTimeout">how long one read may wait for data (null: as long as the token allows)</param>
    private async Task CopyCappedAsync(Stream input, string temp, string source, CancellationToken cancellationToken, TimeSpan? idleTimeout = null)
    {
        await using var output = File.Create(temp);
        var buffer = new byte[1 << 16];
        long total = 0;
        while (true)
        {
            int read;
            using (var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                if (idleTimeout is { } timeout) idle.CancelAfter(timeout);
                try
                {
                    read = await input.ReadAsync(buffer, idle.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new WeightsSourceException($"{source}: no data for {idleTimeout}: the download stalled");
                }
            }
            if (read == 0) break;
            total += read;
            if (total > options.MaxBytes)
                throw new WeightsSourceException($"{source}: exceeded the {options.MaxBytes}-byte limit");
            await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
        }
    }

    /// <summary>
    /// Copies a local file into the cache, capped like a download: only a regular file (a device never ends, a FIFO
    /// blocks whoever opens it), at most <see cref="WeightsFetchOptions.MaxBytes"/> however it grows meanwhile, and
    /// stopped by the token. The temporary copy never outlives a failure.
    /// </summary>
    private async Task<FetchedWeights> CacheLocalFileAsync(string path, string? expected, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
            throw new WeightsSourceException($"weights file '{path}' does not exist (sources: '{Bundled}', '{TorchvisionWeights.Default}', '{BlobReference.Syntax}', a file path, or an https URL)");
        if (!FileKinds.IsRegularFile(path))
            throw new WeightsSourceException($"weights file '{path}' is not a regular file (a device, a pipe or a socket is no checkpoint)");
        long length = new FileInfo(path).Length;
        if (length > options.MaxBytes)
            throw new WeightsSourceException($"weights file '{path}': {length} bytes is over the {options.MaxBytes}-byte limit");
        string temp = TempPath();
        try
        {
            await using var input = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous | FileOptions.SequentialScan);
            await CopyCappedAsync(input, temp, $"weights file '{path}'", cancellationToken);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        return await CommitAsync(temp, expected, Path.GetFullPath(path), Path.GetExtension(path), cancellationToken);
    }

    private async Task<FetchedWeights> DownloadAsync(Uri uri, string? expected, CancellationToken cancellationToken)
    {
        RequireAllowed(uri, uri);
        // Escaped as Uri keeps it: Uri has decoded the unreserved characters, all that a torchvision name has (so this is the
        // name FileName gives), and a decoded control character never reaches the cached file's extension.
        string fileName = Path.GetFileName(uri.AbsolutePath);
        string? namePrefix = TorchvisionHashPrefix(fileName);
        bool nameVerifies = options.EffectiveNameHashHosts.Any(h => string.Equals(h, uri.Host, StringComparison.OrdinalIgnoreCase));
        if (expected is null && !nameVerifies)
            throw new WeightsSourceException($"{uri}: give its sha256: only files of {string.Join(", ", options.EffectiveNameHashHosts)} are verified by the hash in their name");
        if (expected is null && namePrefix is null)
            throw new WeightsSourceException($"{uri}: cannot be verified: give its sha256, or use a file name with torchvision's hash suffix (name-<hex>.pth)");

        string temp = TempPath();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.Deadline);
        try
        {
            using var response = await ReachAsync(uri, deadline.Token);
            if (!response.IsSuccessStatusCode)
                throw new WeightsSourceException($"{uri}: the server answered {(int)response.StatusCode} {response.ReasonPhrase}");
            if (response.Content.Headers.ContentLength > options.MaxBytes)
                throw new WeightsSourceException($"{uri}: {response.Content.Headers.ContentLength} bytes is over the {options.MaxBytes}-byte limit");
            await using var input = await response.Content.ReadAsStreamAsync(deadline.Token);
            await CopyCappedAsync(input, temp, uri.ToString(), deadline.Token, options.IdleTimeout);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            File.Delete(temp);
            throw new WeightsSourceException($"{uri}: not downloaded within the {options.Deadline} deadline");
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        return await CommitAsync(temp, expected, uri.ToString(), Path.GetExtension(fileName), cancellationToken, expected is null ? namePrefix : null);
    }

    /// <summary>
    /// The download's response. A host that cannot be reached (its name does not resolve, it refuses the connection, TLS
    /// fails) is tried <see cref="WeightsFetchOptions.UnreachableAttempts"/> times, so a blip passes, and then given up
    /// with <see cref="WeightsHostUnreachableException"/>: an offline machine learns so in seconds, not after every retry
    /// a run allows.
    /// </summary>
    private async Task<HttpResponseMessage> ReachAsync(Uri uri, CancellationToken cancellationToken)
    {
        var delay = options.UnreachableRetryDelay;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await GetFollowingAllowedRedirectsAsync(uri, cancellationToken);
            }
            catch (HttpRequestException e) when (Unreachable(e) is { } why)
            {
                if (attempt >= options.UnreachableAttempts) throw new WeightsHostUnreachableException(uri, why, attempt);
                await Task.Delay(delay, cancellationToken);
                delay *= 2;
            }
        }
    }

    private static string? Unreachable(HttpRequestException e) => e.HttpRequestError switch
    {
        HttpRequestError.NameResolutionError => "its name does not resolve",
        HttpRequestError.ConnectionError => "the connection was refused or lost",
        HttpRequestError.SecureConnectionError => "the TLS handshake failed",
        _ => null,
    };

    /// <summary>
    /// Follows redirects itself, checking every hop against the allow-list (an HttpClient that follows them
    /// checks nothing); the final address is checked again in case the client followed some anyway.
    /// </summary>
    private async Task<HttpResponseMessage> GetFollowingAllowedRedirectsAsync(Uri uri, CancellationToken cancellationToken)
    {
        var current = uri;
        for (int hop = 0; ; hop++)
        {
            var response = await http.GetAsync(current, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            RequireAllowed(uri, response.RequestMessage?.RequestUri ?? current);
            if ((int)response.StatusCode is < 300 or > 399 || response.Headers.Location is null) return response;
            var next = response.Headers.Location.IsAbsoluteUri ? response.Headers.Location : new Uri(current, response.Headers.Location);
            response.Dispose();
            if (hop == options.MaxRedirects)
                throw new WeightsSourceException($"{uri}: more than {options.MaxRedirects} redirects");
            RequireAllowed(uri, next);
            current = next;
        }
    }

    private void RequireAllowed(Uri source, Uri hop)
    {
        string via = hop == source ? "" : $" (redirected to {hop})";
        if (hop.Scheme != "https" && !(hop.Scheme == "http" && options.AllowHttp))
            throw new WeightsSourceException($"{source}{via}: only https downloads are allowed");
        if (!options.EffectiveAllowedHosts.Any(h => string.Equals(h, hop.Host, StringComparison.OrdinalIgnoreCase)))
            throw new WeightsSourceException($"{source}{via}: host '{hop.Host}' is not in the allowed hosts ({string.Join(", ", options.EffectiveAllowedHosts)})");
    }

    /// <summary>Verifies the temp file and moves it into the cache under its hash; a failing file is deleted.</summary>
    private async Task<FetchedWeights> CommitAsync(string temp, string? expected, string source, string extension,
        CancellationToken cancellationToken, string? expectedPrefix = null)
    {
        try
        {
            string actual;
            await using (var stream = File.OpenRead(temp))
                actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken));
            if (expected is not null && actual != expected)
                throw new WeightsSourceException($"{source}: SHA-256 is {actual}, the job expects {expected}");
            if (expected is null && expectedPrefix is not null && !actual.StartsWith(expectedPrefix, StringComparison.Ordinal))
                throw new WeightsSourceException($"{source}: SHA-256 is {actual}, which does not start with the file name's {expectedPrefix}");
            string final = Path.Combine(options.CacheDirectory, actual + (string.IsNullOrEmpty(extension) ? ".weights" : extension));
            if (CachedPath(actual) is { } existing)
                return new FetchedWeights(existing, actual, new FileInfo(existing).Length, source);
            try
            {
                File.Move(temp, final);
            }
            catch (IOException) when (File.Exists(final))
            {
                // Another run cached the same weights meanwhile: same hash, same bytes.
            }
            return new FetchedWeights(final, actual, new FileInfo(final).Length, source);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    private string? CachedPath(string sha256) =>
        Directory.EnumerateFiles(options.CacheDirectory, sha256 + ".*").FirstOrDefault();

    private string TempPath() => Path.Combine(options.CacheDirectory, $".incoming-{Guid.NewGuid():N}");

    /// <summary>torchvision names its checkpoints <c>name-&lt;first hex digits of the SHA-256&gt;.ext</c>.</summary>
    public static string? TorchvisionHashPrefix(string fileName)
    {
        var match = TorchvisionName().Match(fileName);
        return match.Success ? match.Groups[1].Value.ToLowerInvariant() : null;
    }

    private static string NormaliseSha256(string value)
    {
        string hex = value.Trim().ToLowerInvariant();
        if (hex.StartsWith("sha256:", StringComparison.Ordinal)) hex = hex[7..];
        if (!Sha256Hex().IsMatch(hex))
            throw new WeightsSourceException($"'{value}' is not a SHA-256 (64 hex digits)");
        return hex;
    }

    [GeneratedRegex(@"-([0-9a-fA-F]{8,64})\.[A-Za-z0-9]+$")]
    private static partial Regex TorchvisionName();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Hex();
}

/// <summary>A weights source that cannot be used: not allowed, not found, or failing verification.</summary>
public sealed class WeightsSourceException(string message) : BadInputException(message);

/// <summary>
/// A download host that could not be reached, after the attempts <see cref="WeightsFetchOptions.UnreachableAttempts"/>
/// allows. Not bad input (the source may be right, the network is not) and not worth more retries: the run fails with
/// the host, the file and the ways to do without the network.
/// </summary>
public sealed class WeightsHostUnreachableException(Uri uri, string why, int attempts)
    : Exception($"{uri}: host '{uri.Host}' cannot be reached ({why}; {attempts} attempts). Without access to it: give a weights file "
        + $"on this machine, upload one and name it '{BlobReference.Syntax}', or point {WeightsFetchOptions.SectionName}:TorchvisionModelsUrl at a mirror");
