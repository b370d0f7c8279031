using System.Runtime.ExceptionServices;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
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

    /// <summary>
    /// The most bytes of cached features a run keeps (each split is read whole to train and score on): past it, it trains
    /// on images. Head features stay far below (70,000 images of resnet50's 2,048 take 0.57 GB); what a stage boundary
    /// receives is larger (resnet18's layer4: 200 kB an image, so ~5,000 images).
    /// </summary>
    public const long DefaultBudgetBytes = 1L << 30;

    /// <summary>
    /// The bytes one image's cached features take: the head's input width where the head is a Linear, else what the
    /// boundary receives for one blank image of the model's input size.
    /// </summary>
    public static long BytesPerImage(FineTuneModel model, int cropSize)
    {
        if (model.BoundaryIsHead && model.Head is TorchSharp.Modules.Linear linear) return linear.weight!.shape[1] * sizeof(float);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.EvalMode();
        return model.Features(zeros(1, 3, cropSize, cropSize)).numel() * sizeof(float);
    }

    /// <summary>The name of shard <paramref name="index"/> of a split's features; shards of a split sort in order.</summary>
    public static string ShardName(string split, int index) => $"{split}-{index:D4}";

    /// <summary>Whether <paramref name="shard"/> (a <see cref="ShardName"/>) holds features of <paramref name="split"/>.</summary>
    public static bool IsShardOf(string shard, string split) =>
        shard.Length == split.Length + 5 && shard.StartsWith(split + "-", StringComparison.Ordinal);

    /// <summary>
    /// Whether cached features (what <see cref="FineTuneModel.Boundary"/> receives) equal what training would compute: no
    /// augmentation, a boundary the network can start at, no trainable parameter before it, and no dropout or stochastic
    /// depth that training leaves on before it. Those inside a fully frozen module are off (<see cref="FineTuneModel.TrainMode"/>
    /// keeps such a module in eval: ViT's, Swin's and MaxViT's blocks); one beside the head in a module that trains
    /// (mobilenet_v2's classifier.0) is on, and runs from the boundary too when that is a stage.
    /// </summary>
    public static bool IsExact(FineTuneModel model, IImageSource source)
    {
        if (source.IsAugmented || !model.CanStartAtBoundary) return false;
        Func<string, bool> before;
        if (model.BoundaryIsHead)
        {
            before = name => !model.Family.IsHeadKey(name + ".");
        }
        else
        {
            var paths = model.PathsBeforeBoundary;
            before = name => paths.Any(p => name == p || name.StartsWith(p + ".", StringComparison.Ordinal));
        }
        if (model.Module.named_parameters().Any(p => p.parameter.requires_grad && before(p.name))) return false;
        var frozen = model.Module.named_modules()
            .Where(m => m.module.parameters().Any() && !m.module.parameters().Any(p => p.requires_grad))
            .Select(m => m.name + ".").ToList();
        return !model.Module.named_modules().Any(m =>
            m.module.GetType().Name is var type && (type.Contains("Dropout", StringComparison.Ordinal) || type.Contains("StochasticDepth", StringComparison.Ordinal))
            && before(m.name)
            && !frozen.Any(f => m.name.StartsWith(f, StringComparison.Ordinal)));
    }

    /// <summary>
    /// The backbone features of every image, [N, F], computed in eval mode in batches. On the CPU, batches go to as many
    /// threads as torch has intra-op threads, each decoding its batch and running it on one core (<see cref="OpenMpThreads"/>).
    /// </summary>
    public static Tensor Compute(FineTuneModel model, IImageSource source, int batchSize, CancellationToken cancellationToken)
    {
        model.EvalMode();
        int batchCount = (source.Count + batchSize - 1) / batchSize;
        // torch counts the machine's cores, .NET the ones a container may use: each stream holds a batch's activations.
        int streams = model.Device.type == TorchSharp.DeviceType.CPU && OpenMpThreads.Available
            ? Math.Clamp(Math.Min(get_num_threads(), Environment.ProcessorCount), 1, batchCount)
            : 1;
        int next = -1;
        // Each batch is copied into its rows as it comes (kept in host memory: the cache is stored as an artifact and can
        // outgrow the GPU): joining the batches at the end held every feature twice.
        Tensor? all = null;
        var allocating = new Lock();
        using var reuse = GlibcMalloc.ReuseLargeBlocks();
        using var capture = model.CaptureFeatures();
        try
        {
            void Run()
            {
                try
                {
                    // Grad mode and the OpenMP team size are the calling thread's own.
                    using var _ = no_grad();
                    using var single = streams > 1 ? OpenMpThreads.OneThread() : null;
                    for (int batch = Interlocked.Increment(ref next); batch < batchCount; batch = Interlocked.Increment(ref next))
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        using var scope = NewDisposeScope();
                        int start = batch * batchSize, end = Math.Min(source.Count, (batch + 1) * batchSize);
                        var features = capture.Of(source.Range(start, end)).cpu();
                        lock (allocating)
                            all ??= empty([source.Count, .. features.shape[1..]], features.dtype).DetachFromDisposeScope();
                        all.narrow(0, start, end - start).copy_(features);
                    }
                }
                catch
                {
                    // The other threads stop at their next batch.
                    Interlocked.Exchange(ref next, batchCount);
                    throw;
                }
            }
            var helpers = Enumerable.Range(1, streams - 1)
                .Select(_ => Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToList();
            Exception? failure = null;
            try
            {
                Run();
            }
            catch (Exception e)
            {
                failure = e;
            }
            // Never left running on tensors this method disposes; a helper's failure surfaces when this thread's did not.
            try
            {
                Task.WaitAll(helpers.ToArray(), CancellationToken.None);
            }
            catch (AggregateException e)
            {
                failure ??= e.InnerExceptions[0];
            }
            if (failure is not null) ExceptionDispatchInfo.Throw(failure);
            // The caller's dispose scope owns what is returned, as it owns any tensor made on its thread.
            return (all ?? throw new ArgumentException("no images to compute features of", nameof(source))).alias();
        }
        finally
        {
            // The rows live on in the returned alias.
            all?.Dispose();
        }
    }
}
