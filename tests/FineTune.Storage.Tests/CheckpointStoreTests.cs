using System.Text.Json;
using FineTune.Storage.Checkpoints;
using Microsoft.Extensions.Logging;

namespace FineTune.Storage.Tests;

public sealed class CheckpointStoreTests : IAsyncLifetime
{
    private readonly string _root = Directory.CreateTempSubdirectory("checkpoints-").FullName;
    private readonly Azure.Storage.Blobs.BlobContainerClient _container = Azurite.NewContainer();
    private readonly RecordingLogger<CheckpointStore> _log = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        Directory.Delete(_root, recursive: true);
        await _container.DeleteIfExistsAsync();
    }

    public static TheoryData<string> Stores => new(["local", "blob"]);

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task SavedCheckpointLoadsWithItsPartsAndMetadata(string kind)
    {
        var (_, checkpoints) = Create(kind);
        await Save(checkpoints, "job-a", 3, "three");
        await Save(checkpoints, "job-a", 7, "seven");

        var latest = await checkpoints.LoadLatestAsync("job-a", default);

        Assert.NotNull(latest);
        Assert.Equal(7, latest.Manifest.Sequence);
        Assert.Equal(Parts("seven")["weights.bin"], latest.Parts["weights.bin"]);
        Assert.Equal("seven", latest.Manifest.Metadata.GetProperty("label").GetString());
        Assert.Equal([7L, 3L], await checkpoints.ListAsync("job-a", default));
        Assert.Null(await checkpoints.LoadLatestAsync("job-none", default));
    }

    [Theory]
    [InlineData("local", "truncate")]
    [InlineData("local", "flip")]
    [InlineData("local", "delete-part")]
    [InlineData("local", "delete-manifest")]
    [InlineData("local", "garbage-manifest")]
    [InlineData("blob", "truncate")]
    [InlineData("blob", "flip")]
    [InlineData("blob", "delete-part")]
    [InlineData("blob", "delete-manifest")]
    [InlineData("blob", "garbage-manifest")]
    public async Task DamagedNewestCheckpointFallsBackToThePreviousAndSaysSo(string kind, string damage)
    {
        var (store, checkpoints) = Create(kind);
        await Save(checkpoints, "job-b", 1, "good");
        await Save(checkpoints, "job-b", 2, "newest");
        string folder = "runs/job-b/checkpoints/000000000002/";
        byte[] part = Parts("newest")["weights.bin"];
        switch (damage)
        {
            case "truncate": await store.WriteAsync(await StoredAsync(store, folder, "weights.bin"), new MemoryStream(part[..^10]), WriteMode.Overwrite, default); break;
            case "flip": await FlipAsync(store, folder, "weights.bin"); break;
            case "delete-part": await store.DeleteAsync(await StoredAsync(store, folder, "optimizer.bin"), default); break;
            case "delete-manifest": await store.DeleteAsync(folder + "manifest.json", default); break;
            case "garbage-manifest": await store.WriteAsync(folder + "manifest.json", new MemoryStream("{not json"u8.ToArray()), WriteMode.Overwrite, default); break;
        }

        var latest = await checkpoints.LoadLatestAsync("job-b", default);

        Assert.Equal(1, latest!.Manifest.Sequence);
        Assert.Equal("good", latest.Manifest.Metadata.GetProperty("label").GetString());
        if (damage != "delete-manifest")
            Assert.Contains(_log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("Checkpoint 2 of run job-b is not usable"));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task SavingACommittedSequenceAgainChangesNothing(string kind)
    {
        var (_, checkpoints) = Create(kind);
        var first = await Save(checkpoints, "job-c", 5, "original");
        var again = await Save(checkpoints, "job-c", 5, "different");

        Assert.Equal(first.Parts, again.Parts);
        var loaded = await checkpoints.LoadLatestAsync("job-c", default);
        Assert.Equal("original", loaded!.Manifest.Metadata.GetProperty("label").GetString());
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task PartsAreNamedByTheirContent(string kind)
    {
        var (store, checkpoints) = Create(kind);
        var manifest = await Save(checkpoints, "job-n", 4, "named");

        string weights = await StoredAsync(store, "runs/job-n/checkpoints/000000000004/", "weights.bin");

        Assert.Equal($"runs/job-n/checkpoints/000000000004/{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Parts("named")["weights.bin"]))}-weights.bin", weights);
        Assert.Equal(manifest.Parts.Single(p => p.Name == "weights.bin").Sha256, weights.Split('/')[^1][..64]);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task SavingADamagedCommittedSequenceAgainRepairsIt(string kind)
    {
        var (store, checkpoints) = Create(kind);
        await Save(checkpoints, "job-r", 1, "older");
        await Save(checkpoints, "job-r", 2, "newest");
        await FlipAsync(store, "runs/job-r/checkpoints/000000000002/", "weights.bin");
        Assert.Equal(1, (await checkpoints.LoadLatestAsync("job-r", default))!.Manifest.Sequence);

        // What a run does after falling back: it trains to the same point again and saves it.
        await Save(checkpoints, "job-r", 2, "newest");

        var latest = await checkpoints.LoadLatestAsync("job-r", default);
        Assert.Equal(2, latest!.Manifest.Sequence);
        Assert.Equal(Parts("newest")["weights.bin"], latest.Parts["weights.bin"]);
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("Checkpoint 2 of run job-r is committed but not usable"));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task PruningKeepsTheLastAndTheBestAndNeverTheOnlyValidOne(string kind)
    {
        var (store, checkpoints) = Create(kind);
        for (int i = 1; i <= 6; i++) await Save(checkpoints, "job-d", i, $"c{i}");
        await store.DeleteAsync(await StoredAsync(store, "runs/job-d/checkpoints/000000000006/", "weights.bin"), default);

        await checkpoints.PruneAsync("job-d", keepLast: 2, keep: 2, verified: null, default);

        Assert.Equal([6L, 5L, 4L, 2L], await checkpoints.ListAsync("job-d", default));
        Assert.Equal(5, (await checkpoints.LoadLatestAsync("job-d", default))!.Manifest.Sequence);
        var remaining = new List<string>();
        await foreach (var item in store.ListAsync("runs/job-d/checkpoints/000000000001/", default)) remaining.Add(item.Name);
        Assert.Empty(remaining);

        for (int i = 4; i <= 5; i++) await store.DeleteAsync(await StoredAsync(store, $"runs/job-d/checkpoints/00000000000{i}/", "optimizer.bin"), default);
        await checkpoints.PruneAsync("job-d", keepLast: 1, keep: null, verified: null, default);
        Assert.Equal(2, (await checkpoints.LoadLatestAsync("job-d", default))!.Manifest.Sequence);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task TwoRunsWritingAtOnceNeverTouchEachOthersCheckpoints(string kind)
    {
        var (_, checkpoints) = Create(kind);
        await Task.WhenAll(
            Task.Run(async () => { for (int i = 0; i < 10; i++) await Save(checkpoints, "job-x", i, $"x{i}"); }),
            Task.Run(async () => { for (int i = 0; i < 10; i++) await Save(checkpoints, "job-y", i, $"y{i}"); }));

        var x = await checkpoints.LoadLatestAsync("job-x", default);
        var y = await checkpoints.LoadLatestAsync("job-y", default);
        Assert.Equal("x9", x!.Manifest.Metadata.GetProperty("label").GetString());
        Assert.Equal(Parts("y9")["weights.bin"], y!.Parts["weights.bin"]);
        Assert.Equal(10, (await checkpoints.ListAsync("job-x", default)).Count);
    }

    private (IArtifactStore Store, CheckpointStore Checkpoints) Create(string kind)
    {
        IArtifactStore store = kind == "blob" ? new BlobArtifactStore(_container) : new LocalFolderArtifactStore(_root);
        return (store, new CheckpointStore(store, _log));
    }

    /// <summary>The stored name of part <paramref name="part"/> in a checkpoint folder (parts are named by hash).</summary>
    private static async Task<string> StoredAsync(IArtifactStore store, string folder, string part)
    {
        await foreach (var item in store.ListAsync(folder, default))
            if (item.Name.EndsWith("-" + part, StringComparison.Ordinal)) return item.Name;
        throw new InvalidOperationException($"no part {part} in {folder}");
    }

    /// <summary>Flips one bit of a stored part, in place, as storage rot would.</summary>
    private static async Task FlipAsync(IArtifactStore store, string folder, string part)
    {
        string name = await StoredAsync(store, folder, part);
        using var buffer = new MemoryStream();
        await using (var stream = await store.OpenReadAsync(name, default)) await stream.CopyToAsync(buffer);
        byte[] data = buffer.ToArray();
        data[data.Length / 2] ^= 0x01;
        await store.WriteAsync(name, new MemoryStream(data), WriteMode.Overwrite, default);
    }

    private static Task<CheckpointManifest> Save(CheckpointStore checkpoints, string job, long sequence, string label) =>
        checkpoints.SaveAsync(job, sequence, Parts(label), JsonSerializer.SerializeToElement(new { label }), default);

    private static Dictionary<string, byte[]> Parts(string label)
    {
        var random = new Random(label.Sum(c => c));
        var weights = new byte[4096];
        random.NextBytes(weights);
        return new Dictionary<string, byte[]> { ["weights.bin"] = weights, ["optimizer.bin"] = System.Text.Encoding.UTF8.GetBytes(label) };
    }
}
