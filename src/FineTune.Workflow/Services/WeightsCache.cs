using System.Collections.Concurrent;
using System.Security.Cryptography;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>
/// This worker's copies of pretrained weights, fetched from the artifact store once. The copy is checked against the
/// SHA-256 the fetch step verified when fetched and whenever its length or write time changes: a blob replaced in the
/// store, or a local copy rewritten since, is never trained on (damage that keeps both is not looked for).
/// </summary>
internal sealed class WeightsCache(IArtifactStore store, string work)
{
    // Local files this worker has hashed, with the length and write time they had: every activity call of a run loads the
    // weights, and hashing them again per call (63 MB for resnet18) cost more than a call's training.
    private readonly ConcurrentDictionary<string, (long Length, DateTime Written, string Sha256)> _hashed = new();

    /// <summary>The weights as a local file, fetched from the store when this worker has no copy.</summary>
    public async Task<string> PathAsync(WeightsRef weights, CancellationToken cancellationToken)
    {
        string path = Path.Combine(work, weights.ArtifactName);
        if (File.Exists(path))
        {
            if (await LocalSha256Async(path, cancellationToken) == weights.Sha256) return path;
            File.Delete(path);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + ".incoming-" + Guid.NewGuid().ToString("N");
        try
        {
            await using (var input = await store.OpenReadAsync(weights.ArtifactName, cancellationToken))
            await using (var output = File.Create(temp))
                await input.CopyToAsync(output, cancellationToken);
            string actual = await Sha256Async(temp, cancellationToken);
            if (actual != weights.Sha256)
                throw new InvalidWeightsException(
                    $"{weights.ArtifactName} in the artifact store has SHA-256 {actual}, not the {weights.Sha256} fetched from {weights.Source}: it was replaced or damaged");
            File.Move(temp, path, overwrite: true);
            var moved = new FileInfo(path);
            _hashed[path] = (moved.Length, moved.LastWriteTimeUtc, actual);
        }
        finally
        {
            File.Delete(temp);
        }
        return path;
    }

    /// <summary>A local file's SHA-256, hashed again only when its length or write time changed since this worker hashed it.</summary>
    private async Task<string> LocalSha256Async(string path, CancellationToken cancellationToken)
    {
        var file = new FileInfo(path);
        if (_hashed.TryGetValue(path, out var known) && known.Length == file.Length && known.Written == file.LastWriteTimeUtc) return known.Sha256;
        // Length and time read before hashing: a write meanwhile makes the next call hash again.
        var hashed = (file.Length, file.LastWriteTimeUtc, await Sha256Async(path, cancellationToken));
        _hashed[path] = hashed;
        return hashed.Item3;
    }

    private static async Task<string> Sha256Async(string path, CancellationToken cancellationToken)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken));
    }
}
