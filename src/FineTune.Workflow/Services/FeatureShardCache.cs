using System.Security.Cryptography;
using FineTune.Storage;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>
/// This worker's copies of cached feature shards, kept by hash: every chunk of a run reads them, and they can be
/// gigabytes, so each is fetched from the store once, verified, and read from the local file a batch's rows at a time.
/// </summary>
internal sealed class FeatureShardCache(IArtifactStore store)
{
    /// <summary>The local copy of <paramref name="shard"/>, fetched (streamed to disk, never held whole) when there is none.</summary>
    /// <param name="folder">where this worker keeps its copies</param>
    public async Task<string> PathAsync(string folder, FeatureShardRef shard, CancellationToken cancellationToken)
    {
        string path = Path.Combine(folder, shard.Sha256);
        if (File.Exists(path) && new FileInfo(path).Length == shard.Length) return path;
        Directory.CreateDirectory(folder);
        string temp = path + ".incoming-" + Guid.NewGuid().ToString("N");
        try
        {
            string sha256;
            long length;
            await using (var input = await store.OpenReadAsync(shard.ArtifactName, cancellationToken))
            await using (var output = File.Create(temp))
            {
                (sha256, length) = await CopyHashingAsync(input, output, cancellationToken);
            }
            if (length != shard.Length || sha256 != shard.Sha256)
                throw new InvalidDataException($"cached features {shard.ArtifactName} do not match their SHA-256 {shard.Sha256}: the preparation must run again");
            File.Move(temp, path, overwrite: true);
            return path;
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>
    /// Stores a shard just computed: written by <paramref name="write"/> to this worker's copy (so the run's chunks here fetch
    /// nothing), then uploaded from it. Returns its reference.
    /// </summary>
    public async Task<FeatureShardRef> StoreAsync(string folder, string shard, string artifactName, Action<Stream> write, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(folder);
        string temp = Path.Combine(folder, "outgoing-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var output = File.Create(temp)) write(output);
            string sha256;
            await using (var written = File.OpenRead(temp))
                sha256 = Convert.ToHexStringLower(await SHA256.HashDataAsync(written, cancellationToken));
            long length = new FileInfo(temp).Length;
            await using (var upload = File.OpenRead(temp))
                await store.WriteAsync(artifactName, upload, WriteMode.Overwrite, cancellationToken);
            File.Move(temp, Path.Combine(folder, sha256), overwrite: true);
            return new FeatureShardRef(shard, artifactName, sha256, length);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    private static async Task<(string Sha256, long Length)> CopyHashingAsync(Stream input, Stream output, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        long length = 0;
        for (int read; (read = await input.ReadAsync(buffer, cancellationToken)) > 0; length += read)
        {
            hash.AppendData(buffer, 0, read);
            await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
        }
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), length);
    }
}
