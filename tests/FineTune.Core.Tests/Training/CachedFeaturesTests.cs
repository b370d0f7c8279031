using FineTune.Core.Data;
using FineTune.Core.Training;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Training;

/// <summary>
/// Issue 25, item 4: stored features are read a batch's rows at a time from the worker's files, never a split whole, and
/// give the rows the feature pass computed, exactly, across shard boundaries.
/// </summary>
public sealed class CachedFeaturesTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("cached-features-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData(new long[] { 5 })]
    [InlineData(new long[] { 2, 3, 3 })]
    public void StoredShardsGiveThePassRowsExactlyAcrossShardBoundaries(long[] rowShape)
    {
        using var scope = NewDisposeScope();
        long rowBytes = rowShape.Aggregate(1L, (a, b) => a * b) * sizeof(float);
        var all = randn([23, .. rowShape]);
        // 17 train rows and 6 validation rows, 4 rows a shard: the train split is 5 shards, the last one short.
        using var computed = CachedFeatures.FromTensor(all.clone(), [(DatasetSplits.Train, 17), (DatasetSplits.Validation, 6)], maxShardBytes: 4 * rowBytes + 1);
        Assert.Equal(["train-0000", "train-0001", "train-0002", "train-0003", "train-0004", "validation-0000", "validation-0001"], computed.Shards);

        var files = new Dictionary<string, string>();
        foreach (string shard in computed.Shards)
        {
            files[shard] = Path.Combine(_root, shard);
            using var file = File.Create(files[shard]);
            computed.WriteShard(shard, file);
        }
        using var stored = CachedFeatures.FromFiles(files);
        int[] batch = [16, 3, 4, 5, 0, 15, 7, 8];
        foreach (var features in new[] { computed, stored })
        {
            var train = features.Split(DatasetSplits.Train);
            var validation = features.Split(DatasetSplits.Validation);
            Assert.Equal(17, train.Count);
            Assert.Equal(6, validation.Count);
            Assert.True(train.Rows(batch).allclose(all.index_select(0, tensor(batch.Select(i => (long)i).ToArray())), rtol: 0, atol: 0));
            Assert.True(train.Range(3, 13).allclose(all[3..13], rtol: 0, atol: 0));
            Assert.True(validation.All().allclose(all[17..23], rtol: 0, atol: 0));
            Assert.Equal(0, features.Split(DatasetSplits.Test).Count);
        }
        // A stored shard is copied as written.
        using var copy = new MemoryStream();
        stored.WriteShard("validation-0001", copy);
        Assert.Equal(File.ReadAllBytes(files["validation-0001"]), copy.ToArray());
    }

    [Fact]
    public void AShardCutShortIsRefusedWhenOpened()
    {
        using var scope = NewDisposeScope();
        using var computed = CachedFeatures.FromTensor(randn(4, 3), [(DatasetSplits.Train, 4)], long.MaxValue);
        string path = Path.Combine(_root, "train-0000");
        using (var file = File.Create(path)) computed.WriteShard("train-0000", file);
        using (var file = File.OpenWrite(path)) file.SetLength(file.Length - 4);
        var refused = Assert.Throws<InvalidDataException>(() => CachedFeatures.FromFiles(new Dictionary<string, string> { ["train-0000"] = path }));
        Assert.Contains("does not match its shape", refused.Message, StringComparison.Ordinal);
    }
}
