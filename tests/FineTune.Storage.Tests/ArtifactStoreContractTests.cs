using System.Text;

namespace FineTune.Storage.Tests;

/// <summary>The behaviour every artifact store must have, run against the local folder and real Azurite blobs.</summary>
public abstract class ArtifactStoreContractTests : IAsyncLifetime
{
    protected IArtifactStore Store { get; private set; } = null!;

    protected abstract Task<IArtifactStore> CreateAsync();
    protected abstract Task CleanUpAsync();

    public async Task InitializeAsync() => Store = await CreateAsync();
    public Task DisposeAsync() => CleanUpAsync();

    [Fact]
    public async Task WrittenArtifactReadsBackAndIsListed()
    {
        await Write("runs/job-1/reports/report.json", "{\"a\":1}");
        await Write("runs/job-1/reports/predictions.csv", "path,label");
        await Write("runs/job-10/reports/report.json", "{}");

        Assert.Equal("{\"a\":1}", await Read("runs/job-1/reports/report.json"));
        Assert.True(await Store.ExistsAsync("runs/job-1/reports/report.json", default));
        Assert.False(await Store.ExistsAsync("runs/job-1/reports/missing.json", default));
        var listed = await List("runs/job-1/");
        Assert.Equal(["runs/job-1/reports/predictions.csv", "runs/job-1/reports/report.json"], listed.Select(i => i.Name));
        Assert.Equal(7, listed[1].Length);
    }

    [Fact]
    public async Task CreateNewRefusesAnExistingNameAndKeepsWhatWasThere()
    {
        await Write("runs/job-1/published/model.safetensors", "first");
        var error = await Assert.ThrowsAsync<ArtifactExistsException>(() => Write("runs/job-1/published/model.safetensors", "second"));
        Assert.Equal("runs/job-1/published/model.safetensors", error.Name);
        Assert.Equal("first", await Read("runs/job-1/published/model.safetensors"));
    }

    [Fact]
    public async Task OverwriteReplaces()
    {
        await Write("a/b", "one");
        await Write("a/b", "two", WriteMode.Overwrite);
        Assert.Equal("two", await Read("a/b"));
    }

    /// <summary>Many rounds: a check-then-rename (File.Move on Unix) lets two writers win only when they interleave just so; one round failed once in CI, 3,000 rounds on loaded cores failed in seconds.</summary>
    [Fact]
    public async Task OfConcurrentCreatesExactlyOneWinsAndItsContentStays()
    {
        for (int round = 0; round < 200; round++)
        {
            string name = $"race/commit-{round}";
            var attempts = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
            {
                try { await Write(name, $"writer {i}"); return i; }
                catch (ArtifactExistsException) { return -1; }
            })).ToList();
            int[] winners = [.. (await Task.WhenAll(attempts)).Where(i => i >= 0)];
            Assert.Single(winners);
            Assert.Equal($"writer {winners[0]}", await Read(name));
        }
    }

    [Fact]
    public async Task MissingArtifactIsNotFound()
    {
        var error = await Assert.ThrowsAsync<ArtifactNotFoundException>(() => Store.OpenReadAsync("nothing/here", default));
        Assert.Equal("nothing/here", error.Name);
        Assert.Empty(await List("nothing/"));
    }

    [Fact]
    public async Task DeleteRemovesOnlyThatArtifact()
    {
        await Write("d/1", "x");
        await Write("d/2", "y");
        Assert.True(await Store.DeleteAsync("d/1", default));
        Assert.False(await Store.DeleteAsync("d/1", default));
        Assert.Equal(["d/2"], (await List("d/")).Select(i => i.Name));
    }

    [Fact]
    public async Task LargeArtifactsRoundTrip()
    {
        var data = new byte[5 * 1024 * 1024 + 17];
        new Random(1).NextBytes(data);
        await Store.WriteAsync("big/blob.bin", new MemoryStream(data), WriteMode.CreateNew, default);
        await using var stream = await Store.OpenReadAsync("big/blob.bin", default);
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        Assert.Equal(data, copy.ToArray());
    }

    [Theory]
    [InlineData("datasets/pets/cat/IMG_0001 (1).png")]
    [InlineData("datasets/pets/chat noir/photo été #2.jpg")]
    public async Task NamesUsersGiveTheirFilesRoundTrip(string name)
    {
        await Write(name, "x");
        Assert.Equal("x", await Read(name));
        Assert.Equal([name], (await List("datasets/pets/")).Select(i => i.Name));
    }

    /// <summary>As blob prefixes are: "runs/sw-t" lists every file of runs sw-t1, sw-t2 …, a file named so too, nothing else.</summary>
    [Fact]
    public async Task APrefixMayEndInTheMiddleOfAName()
    {
        string[] names = ["runs/sw-t1/reports/metrics.jsonl", "runs/sw-t2/published/model.safetensors", "runs/sw-t3", "runs/sw-s1/checkpoints/a", "runs/sw/spec.json", "other/sw-t1"];
        foreach (var name in names) await Write(name, name);
        Assert.Equal(["runs/sw-t1/reports/metrics.jsonl", "runs/sw-t2/published/model.safetensors", "runs/sw-t3"], (await List("runs/sw-t")).Select(i => i.Name));
        Assert.Equal(["runs/sw-t2/published/model.safetensors"], (await List("runs/sw-t2/pub")).Select(i => i.Name));
        Assert.Empty(await List("runs/sw-x"));
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("runs/../../etc/passwd")]
    [InlineData("/absolute")]
    [InlineData("a//b")]
    [InlineData("a/./b")]
    [InlineData("back\\slash")]
    [InlineData("")]
    [InlineData("tab\tname")]
    public async Task NamesThatCouldEscapeAreRefusedBeforeAnyStorageCall(string name)
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Store.WriteAsync(name, new MemoryStream([1]), WriteMode.Overwrite, default));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.OpenReadAsync(name, default));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.DeleteAsync(name, default));
    }

    private Task Write(string name, string text, WriteMode mode = WriteMode.CreateNew) =>
        Store.WriteAsync(name, new MemoryStream(Encoding.UTF8.GetBytes(text)), mode, default);

    private async Task<string> Read(string name)
    {
        await using var stream = await Store.OpenReadAsync(name, default);
        return await new StreamReader(stream).ReadToEndAsync();
    }

    private async Task<List<ArtifactInfo>> List(string prefix)
    {
        var items = new List<ArtifactInfo>();
        await foreach (var item in Store.ListAsync(prefix, default)) items.Add(item);
        return items;
    }
}

public sealed class LocalFolderArtifactStoreTests : ArtifactStoreContractTests
{
    private readonly string _root = Directory.CreateTempSubdirectory("artifacts-").FullName;

    protected override Task<IArtifactStore> CreateAsync() => Task.FromResult<IArtifactStore>(new LocalFolderArtifactStore(_root));

    protected override Task CleanUpAsync()
    {
        Directory.Delete(_root, recursive: true);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task NoTemporaryFilesAreLeftOrListed()
    {
        await Store.WriteAsync("x/y", new MemoryStream([1, 2]), WriteMode.CreateNew, default);
        await Assert.ThrowsAsync<ArtifactExistsException>(() => Store.WriteAsync("x/y", new MemoryStream([3]), WriteMode.CreateNew, default));
        Assert.Equal(["y"], Directory.GetFiles(Path.Combine(_root, "x")).Select(Path.GetFileName));
    }
}

public sealed class BlobArtifactStoreTests : ArtifactStoreContractTests
{
    private Azure.Storage.Blobs.BlobContainerClient _container = null!;

    protected override Task<IArtifactStore> CreateAsync()
    {
        _container = Azurite.NewContainer();
        return Task.FromResult<IArtifactStore>(new BlobArtifactStore(_container));
    }

    protected override Task CleanUpAsync() => _container.DeleteIfExistsAsync();

    [Fact]
    public void OptionsPickTheStoreFromConfiguration()
    {
        Assert.IsType<BlobArtifactStore>(new ArtifactStoreOptions { ConnectionString = Azurite.ConnectionString }.Create());
        Assert.IsType<BlobArtifactStore>(new ArtifactStoreOptions { AccountUrl = new Uri("https://example.blob.core.windows.net") }.Create());
        var root = Path.Combine(Path.GetTempPath(), "opts-" + Guid.NewGuid().ToString("N"));
        Assert.IsType<LocalFolderArtifactStore>(new ArtifactStoreOptions { LocalRoot = root }.Create());
        Directory.Delete(root);
    }
}
