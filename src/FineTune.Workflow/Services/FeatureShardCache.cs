using System.Security.Cryptography;
using FineTune.Storage;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>
/// This worker's copies of cached feature shards, kept by hash: every chunk of a run needs all of them, and they can be
/// gigabytes, so each is fetched from the store once and verified.
/// </summary>
internal sealed class FeatureShardCache(IArtifactStore store)
{
    /// <param name="folder">where this worker keeps its copies</param>
    public async Task<byte[]> ReadAsync(string folder, FeatureShardRef shard, CancellationToken cancellationToken)
    {
        string path = Path.Combine(folder, shard.Sha256);
        if (File.Exists(path) && new FileInfo(path).Length == shard.Length) return await File.ReadAllBytesAsync(path, cancellationToken);
        byte[] data;
        await using (var input = await store.OpenReadAsync(shard.ArtifactName, cancellationToken))
        using (var buffer = new MemoryStream())
        {
            await input.CopyToAsync(buffer, cancellationToken);
            data = buffer.ToArray();
        }
        if (data.Length != shard.Length || Convert.ToHexStringLower(SHA256.HashData(data)) != shard.Sha256)
            throw new InvalidDataException($"cached features {shard.ArtifactName} do not match their SHA-256 {shard.Sha256}: the preparation must run again");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + ".incoming-" + Guid.NewGuid().ToString("N");
        await File.WriteAllBytesAsync(temp, data, cancellationToken);
        File.Move(temp, path, overwrite: true);
        return data;
    }
}
