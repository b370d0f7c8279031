using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace FineTune.Storage.Checkpoints;

public sealed record CheckpointPart(string Name, long Length, string Sha256);

/// <summary>
/// The commit record of a checkpoint: written last, with a conditional create, after every part is stored.
/// A checkpoint exists only once its manifest does, and is valid only while every part matches it. From
/// version 2 on, each part is stored under a name made of its SHA-256 and its name, so a part's name says
/// what it must hold; version 1 stored parts under their bare names and is still read.
/// </summary>
public sealed record CheckpointManifest(
    int Version,
    long Sequence,
    DateTimeOffset CreatedAt,
    IReadOnlyList<CheckpointPart> Parts,
    JsonElement Metadata)
{
    public const int CurrentVersion = 2;
    public const int ContentNamedSince = 2;

    /// <summary>Where <paramref name="part"/> lies in the checkpoint's folder.</summary>
    public string StoredName(CheckpointPart part) => Version >= ContentNamedSince ? $"{part.Sha256}-{part.Name}" : part.Name;
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
    /// Stores the parts, then commits the manifest. Saving a sequence that is already committed and verifies
    /// changes nothing and returns the stored manifest, so a re-delivered activity does no harm. A committed
    /// sequence that does not verify (a part damaged or lost) is written again and its manifest replaced:
    /// returning it unchecked would hand back a state no reader can load, and a run would retrain to it forever.
    /// </summary>
    public async Task<CheckpointManifest> SaveAsync(string jobId, long sequence, IReadOnlyDictionary<string, byte[]> parts,
        JsonElement metadata, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sequence);
        string folder = Folder(jobId, sequence);
        bool replace = false;
        if (await store.ExistsAsync(folder + ManifestName, cancellationToken))
        {
            var (existing, problem) = await TryLoadAsync(jobId, sequence, cancellationToken);
            if (existing is not null) return existing.Manifest;
            Replacing(sequence, jobId, problem);
            replace = true;
        }

        var described = new List<CheckpointPart>();
        foreach (var (name, data) in parts.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            ArtifactNames.Require(name);
            if (name == ManifestName) throw new ArgumentException($"'{ManifestName}' is reserved", nameof(parts));
            described.Add(new CheckpointPart(name, data.Length, Sha256(data)));
        }
        var manifest = new CheckpointManifest(CheckpointManifest.CurrentVersion, sequence, DateTimeOffset.UtcNow, described, metadata.Clone());
        foreach (var part in described)
            await WritePartAsync(folder + manifest.StoredName(part), parts[part.Name], part.Sha256, cancellationToken);
        try
        {
            using var json = new MemoryStream(JsonSerializer.SerializeToUtf8Bytes(manifest, Json));
            await store.WriteAsync(folder + ManifestName, json, replace ? WriteMode.Overwrite : WriteMode.CreateNew, cancellationToken);
            return manifest;
        }
        catch (ArtifactExistsException)
        {
            // Another writer committed this sequence first; training is deterministic, so it holds the same state.
            return await ReadManifestAsync(folder + ManifestName, cancellationToken);
        }
    }

    /// <summary>
    /// Create-only: a part's name is its hash, so a stored part is never overwritten with other bytes. One that
    /// exists but does not hold what its name says (damaged) is the only thing ever replaced.
    /// </summary>
    private async Task WritePartAsync(string name, byte[] data, string sha256, CancellationToken cancellationToken)
    {
        try
        {
            using var content = new MemoryStream(data, writable: false);
            await store.WriteAsync(name, content, WriteMode.CreateNew, cancellationToken);
        }
        catch (ArtifactExistsException)
        {
            if (await ReadPartAsync(name, data.Length, cancellationToken) is { } stored && Sha256(stored) == sha256) return;
            using var content = new MemoryStream(data, writable: false);
            await store.WriteAsync(name, content, WriteMode.Overwrite, cancellationToken);
        }
    }

    /// <summary>
    /// A part read into one array of the length its manifest records (a growing buffer copied a 100 MB part three times
    /// over); null when the stored part is shorter or longer, found from the stream's length where it has one, else by
    /// reading at most one byte past that length. A damaged manifest's length allocates nothing it cannot hold.
    /// </summary>
    private async Task<byte[]?> ReadPartAsync(string name, long length, CancellationToken cancellationToken)
    {
        if (length < 0 || length > Array.MaxLength) return null;
        await using var stream = await store.OpenReadAsync(name, cancellationToken);
        if (stream.CanSeek && stream.Length != length) return null;
        var data = GC.AllocateUninitializedArray<byte>((int)length);
        int read = await stream.ReadAtLeastAsync(data, data.Length, throwOnEndOfStream: false, cancellationToken);
        return read == data.Length && await stream.ReadAsync(new byte[1], cancellationToken) == 0 ? data : null;
    }

    private static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

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
            byte[]? data;
            try
            {
                data = await ReadPartAsync(folder + manifest.StoredName(part), part.Length, cancellationToken);
            }
            catch (ArtifactNotFoundException)
            {
                return (null, $"part {part.Name} is missing");
            }
            if (data is null)
                return (null, $"part {part.Name} does not have the {part.Length} bytes the manifest says");
            if (Sha256(data) != part.Sha256)
                return (null, $"part {part.Name} does not match its SHA-256");
            parts[part.Name] = data;
        }
        return (new LoadedCheckpoint(manifest, parts), null);
    }

    /// <summary>
    /// Deletes all but the newest <paramref name="keepLast"/> valid checkpoints and <paramref name="keep"/>
    /// (the best). The newest valid checkpoint always stays, whatever the arguments. <paramref name="verified"/>: a
    /// sequence the caller has just saved (so knows valid), which is not downloaded again to check.
    /// </summary>
    public async Task PruneAsync(string jobId, int keepLast, long? keep, long? verified, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keepLast, 1);
        var valid = new List<long>();
        var all = await ListAsync(jobId, cancellationToken);
        foreach (long sequence in all)
        {
            if (valid.Count >= keepLast) break;
            if (sequence == verified || (await TryLoadAsync(jobId, sequence, cancellationToken)).Checkpoint is not null) valid.Add(sequence);
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
        if (manifest.Version is < 1 or > CheckpointManifest.CurrentVersion || manifest.Parts is null)
            throw new InvalidDataException($"manifest version {manifest.Version} is not 1-{CheckpointManifest.CurrentVersion}");
        return manifest;
    }

    private static string Folder(string jobId, long sequence) =>
        new RunLayout(jobId).Checkpoints + sequence.ToString("D12", CultureInfo.InvariantCulture) + "/";

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkpoint {Sequence} of run {JobId} is not usable ({Problem}); falling back to the previous one")]
    private partial void Unusable(long sequence, string jobId, string? problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkpoint {Sequence} of run {JobId} is committed but not usable ({Problem}); writing it again")]
    private partial void Replacing(long sequence, string jobId, string? problem);
}
