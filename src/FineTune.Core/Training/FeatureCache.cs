using FineTune.Core.Data;
using FineTune.Core.Models;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

/// <summary>
/// The frozen-backbone shortcut: when only the head trains and nothing before it is random, every epoch would
/// push each image through the same backbone to the same features. Computing them once and training the head
/// on them gives the same result, and epochs after the first cost no backbone pass.
/// </summary>
public static class FeatureCache
{
    /// <summary>
    /// The most bytes one stored shard of features holds: a .NET array (and so one artifact read whole) stops at
    /// 2 GiB, which 2048-d features of ~262k images reach; a split is stored as as many shards as it needs.
    /// </summary>
    public const long DefaultShardBytes = 1L << 30;

    /// <summary>The name of shard <paramref name="index"/> of a split's features; shards of a split sort in order.</summary>
    public static string ShardName(string split, int index) => $"{split}-{index:D4}";

    /// <summary>Whether <paramref name="shard"/> (a <see cref="ShardName"/>) holds features of <paramref name="split"/>.</summary>
    public static bool IsShardOf(string shard, string split) =>
        shard.Length == split.Length + 5 && shard.StartsWith(split + "-", StringComparison.Ordinal);

    /// <summary>
    /// Whether cached features equal what training would compute: no augmentation, no trainable parameter
    /// outside the head (so frozen BatchNorm stays in eval mode), and no dropout outside the head.
    /// </summary>
    public static bool IsExact(FineTuneModel model, IImageSource source)
    {
        if (source.IsAugmented) return false;
        if (model.Module.named_parameters().Any(p => p.parameter.requires_grad && !model.Family.IsHeadKey(p.name))) return false;
        return !model.Module.named_modules().Any(m =>
            m.module.GetType().Name.Contains("Dropout", StringComparison.Ordinal)
            && !m.name.StartsWith(model.Family.HeadPath, StringComparison.Ordinal));
    }

    /// <summary>The backbone features of every image, [N, F], computed in eval mode in batches.</summary>
    public static Tensor Compute(FineTuneModel model, IImageSource source, int batchSize, CancellationToken cancellationToken,
        Action<int>? onProgress = null)
    {
        model.EvalMode();
        var batches = new List<Tensor>();
        using var _ = no_grad();
        using var reuse = Runtime.GlibcMalloc.ReuseLargeBlocks();
        for (int start = 0; start < source.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            int end = Math.Min(source.Count, start + batchSize);
            var images = source.Range(start, end);
            // Kept in host memory: the cache is stored as an artifact and can outgrow the GPU.
            batches.Add(model.Features(images).cpu().MoveToOuterDisposeScope());
            onProgress?.Invoke(end);
        }
        var features = cat(batches, 0);
        foreach (var batch in batches) batch.Dispose();
        return features;
    }
}
