using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace FineTune.Storage.Checkpoints;

public sealed record CheckpointPart(string Name, long Length, string Sha256);

/// <summary>
/// The commit record of a checkpoint: written last, with a conditional create, after every part is stored.
/// A checkpoint exists only once its manifest does, and is valid only while every part matches it.
/// </summary>
public sealed record CheckpointManifest(
    int Version,
    long Sequence,
    DateTimeOffset CreatedAt,
    IReadOnlyList<CheckpointPart> Parts,
    JsonElement Metadata)
{
    public const int CurrentVersion = 1;
}

/// <summary>A verified checkpoint: its manifest and the bytes of each part.</summary>
public sealed record LoadedCheckpoint(CheckpointManifest Manifest, IReadOnlyDictionary<string, byte[]> Parts);

/// <summary>
/// Checkpoints of a run under <c>runs/{job}/checkpoints/{sequence}/</c>. A reader verifies lengths and SHA-256
/// hashes and falls back to the previous valid checkpoint when the newest is torn, truncated or corrupted.
/// Pruning keeps the last K and the best, and never removes the only valid one.
/// </summary>
public sealed partial class CheckpointStore(IArtifactStore store, ILogger<CheckpointStore> logger)
{
    private const string ManifestName = "manifest.json";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// Stores the parts, then commits the manifest. Saving a sequence that is already committed changes
    /// nothing and returns the stored manifest, so a re-delivered activity does no harm.
    /// </summary>
    public async Task<CheckpointManifest> SaveAsync(string jobId, long sequence, IReadOnlyDictionary<string, byte[]> parts,
        JsonElement metadata, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sequence);
        string folder = Folder(jobId, sequence);
        if (await store.ExistsAsync(folder + ManifestName, cancellationToken))
            return await ReadManifestAsync(folder + ManifestName, cancellationToken);

        var described = new List<CheckpointPart>();
        foreach (var (name, data) in parts.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            ArtifactNames.Require(name);
            if (name == ManifestName) throw new ArgumentException($"'{ManifestName}' is reserved", nameof(parts));
            using var content = new MemoryStream(data, writable: false);
            await store.WriteAsync(folder + name, content, WriteMode.Overwrite, cancellationToken);
            described.Add(new CheckpointPart(name, data.Length, Convert.ToHexStringLower(SHA256.HashData(data))));
        }
        var manifest = new CheckpointManifest(CheckpointManifest.CurrentVersion, sequence, DateTimeOffset.UtcNow, described, metadata.Clone());
        try
        {
            using var json = new MemoryStream(JsonSerializer.SerializeToUtf8Bytes(manifest, Json));
            await store.WriteAsync(folder + ManifestName, json, WriteMode.CreateNew, cancellationToken);
            return manifest;
        }
        catch (ArtifactExistsException)
        {
            // Another writer committed this sequence first; training is deterministic, so it holds the same state.
            return await ReadManifestAsync(folder + ManifestName, cancellationToken);
        }
    }

    /// <summary>Sequences with a manifest, newest first (valid or not).</summary>
    public async Task<IReadOnlyList<long>> ListAsync(string jobId, CancellationToken cancellationToken)
    {
        var sequences = new List<long>();
        string prefix = new RunLayout(jobId).Checkpoints;
        await foreach (var item in store.ListAsync(prefix, cancellationToken))
        {
            var rest = item.Name[prefix.Length..].Split('/');
            if (rest is [var folder, ManifestName] && long.TryParse(folder, NumberStyles.None, CultureInfo.InvariantCulture, out long sequence))
                sequences.Add(sequence);
        }
        return sequences.OrderDescending().ToList();
    }

    /// <summary>The newest checkpoint whose parts all verify, or null when the run has none.</summary>
    public async Task<LoadedCheckpoint?> LoadLatestAsync(string jobId, CancellationToken cancellationToken)
    {
        foreach (long sequence in await ListAsync(jobId, cancellationToken))
        {
            var (checkpoint, problem) = await TryLoadAsync(jobId, sequence, cancellationToken);
            if (checkpoint is not null) return checkpoint;
            Unusable(sequence, jobId, problem);
        }
        return null;
    }

    /// <summary>Loads one checkpoint, verified; null with the reason when it is damaged.</summary>
    public async Task<(LoadedCheckpoint? Checkpoint, string? Problem)> TryLoadAsync(string jobId, long sequence, CancellationToken cancellationToken)
    {
        string folder = Folder(jobId, sequence);
        CheckpointManifest manifest;
        try
        {
            manifest = await ReadManifestAsync(folder + ManifestName, cancellationToken);
        }
        catch (Exception e) when (e is JsonException or ArtifactNotFoundException or InvalidDataException)
        {
            return (null, $"manifest unreadable: {e.Message}");
        }
        var parts = new Dictionary<string, byte[]>();
        foreach (var part in manifest.Parts)
        {
            byte[] data;
            try
            {
                await using var stream = await store.OpenReadAsync(folder + part.Name, cancellationToken);
                using var buffer = new MemoryStream();
                await stream.CopyToAsync(buffer, cancellationToken);
                data = buffer.ToArray();
            }
            catch (ArtifactNotFoundException)
            {
                return (null, $"part {part.Name} is missing");
            }
            if (data.Length != part.Length)
                return (null, $"part {part.Name} has {data.Length} bytes, the manifest says {part.Length}");
            if (Convert.ToHexStringLower(SHA256.HashData(data)) != part.Sha256)
                return (null, $"part {part.Name} does not match its SHA-256");
            parts[part.Name] = data;
        }
        return (new LoadedCheckpoint(manifest, parts), null);
    }

    /// <summary>
    /// Deletes all but the newest <paramref name="keepLast"/> valid checkpoints and <paramref name="keep"/>
    /// (the best). The newest valid checkpoint always stays, whatever the arguments.
    /// </summary>
    public async Task PruneAsync(string jobId, int keepLast, long? keep, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keepLast, 1);
        var valid = new List<long>();
        var all = await ListAsync(jobId, cancellationToken);
        foreach (long sequence in all)
        {
            if (valid.Count >= keepLast) break;
            if ((await TryLoadAsync(jobId, sequence, cancellationToken)).Checkpoint is not null) valid.Add(sequence);
        }
        if (valid.Count == 0) return;
        long oldestKept = valid[^1];
        foreach (long sequence in all.Where(s => s < oldestKept && s != keep))
            await DeleteAsync(jobId, sequence, cancellationToken);
    }

    private async Task DeleteAsync(string jobId, long sequence, CancellationToken cancellationToken)
    {
        string folder = Folder(jobId, sequence);
        // The manifest goes first: a half-deleted checkpoint is then simply uncommitted.
        await store.DeleteAsync(folder + ManifestName, cancellationToken);
        await foreach (var item in store.ListAsync(folder, cancellationToken))
            await store.DeleteAsync(item.Name, cancellationToken);
    }

    private async Task<CheckpointManifest> ReadManifestAsync(string name, CancellationToken cancellationToken)
    {
        await using var stream = await store.OpenReadAsync(name, cancellationToken);
        var manifest = await JsonSerializer.DeserializeAsync<CheckpointManifest>(stream, Json, cancellationToken)
            ?? throw new InvalidDataException("empty manifest");
        if (manifest.Version != CheckpointManifest.CurrentVersion || manifest.Parts is null)
            throw new InvalidDataException($"manifest version {manifest.Version} is not {CheckpointManifest.CurrentVersion}");
        return manifest;
    }

    private static string Folder(string jobId, long sequence) =>
        new RunLayout(jobId).Checkpoints + sequence.ToString("D12", CultureInfo.InvariantCulture) + "/";

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkpoint {Sequence} of run {JobId} is not usable ({Problem}); falling back to the previous one")]
    private partial void Unusable(long sequence, string jobId, string? problem);
}
