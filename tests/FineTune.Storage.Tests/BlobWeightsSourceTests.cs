using System.Security.Cryptography;
using FineTune.Core.Models;
using FineTune.Core.Weights;

namespace FineTune.Storage.Tests;

public sealed class BlobWeightsSourceTests : IAsyncLifetime
{
    private readonly Azure.Storage.Blobs.BlobContainerClient _container = Azurite.NewContainer();
    private readonly string _cache = Directory.CreateTempSubdirectory("blob-weights-").FullName;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        Directory.Delete(_cache, recursive: true);
        await _container.DeleteIfExistsAsync();
    }

    [Fact]
    public async Task WeightsInTheArtifactStoreAreFetchedVerifiedAndLoadable()
    {
        var store = new BlobArtifactStore(_container);
        var family = ModelRegistry.Get("resnet18");
        byte[] weights;
        using (var model = FineTuneModel.Create(family, 10, seed: 1))
        using (var stream = new MemoryStream())
        {
            StateDictFile.Write(model.Module.state_dict(), stream, StateDictFormat.PyTorch);
            weights = stream.ToArray();
        }
        await store.WriteAsync("uploads/my-resnet18.pth", new MemoryStream(weights), WriteMode.CreateNew, default);
        var fetcher = new WeightsFetcher(new HttpClient(), new WeightsFetchOptions { CacheDirectory = _cache }, store.OpenReadAsync);

        var fetched = await fetcher.FetchAsync(family, "blob:uploads/my-resnet18.pth", Convert.ToHexStringLower(SHA256.HashData(weights)), default);
        var missing = await Assert.ThrowsAsync<WeightsSourceException>(() => fetcher.FetchAsync(family, "blob:uploads/none.pth", null, default));
        var escaping = await Assert.ThrowsAsync<ArgumentException>(() => fetcher.FetchAsync(family, "blob:../secrets", null, default));

        Assert.Equal(weights, await File.ReadAllBytesAsync(fetched.Path));
        using var target = FineTuneModel.Create(family, 3, seed: 2);
        PretrainedWeights.LoadBackbone(target, StateDictFile.Read(fetched.Path));
        Assert.Contains("does not exist in the artifact store", missing.Message);
        Assert.Contains("not allowed", escaping.Message);
    }
}
