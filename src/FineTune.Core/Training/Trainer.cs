using System.Diagnostics;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

/// <summary>Where training stands: the epoch under way, its next step, and the running sums of that epoch.</summary>
public sealed record TrainerPosition(int Epoch, int Step, double LossSum, long Correct, long Seen)
{
    public static TrainerPosition Start => new(0, 0, 0, 0, 0);
}

/// <summary>One optimisation step, for progress reporting.</summary>
public sealed record StepReport(int Epoch, int Step, int StepsPerEpoch, double Loss, double LearningRate);

/// <summary>What a call to <see cref="Trainer.TrainSteps"/> did.</summary>
public sealed record ChunkResult(TrainerPosition Position, bool EpochCompleted, double EpochLoss, double EpochAccuracy, double LearningRate, double Seconds);

/// <summary>
/// Trains a <see cref="FineTuneModel"/> in resumable units: "run at most N steps of the current epoch from
/// this state". Everything random derives from the seed and the position (epoch order, augmentation, dropout),
/// and the learning rate is a function of the position, so the model, the optimizer state and
/// <see cref="Position"/> are all a resumed run needs to continue bit for bit.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly FineTuneModel _model;
    private readonly IImageSource _train;
    private readonly TrainingOptions _options;
    private readonly FeatureRows? _features;
    private readonly Tensor? _classWeights;
    private readonly OptimizerHelper _optimizer;
    private readonly List<Parameter> _trainable;

    /// <param name="cachedFeatures">what the model's <see cref="FineTuneModel.Boundary"/> receives for each image of <paramref name="train"/>, to train from there on, from <see cref="FeatureCache"/></param>
    public Trainer(FineTuneModel model, IImageSource train, TrainingOptions options, FeatureRows? cachedFeatures = null)
    {
        if (train.Count == 0) throw new ArgumentException("no training images", nameof(train));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Epochs, 1);
        if (cachedFeatures is not null && !FeatureCache.IsExact(model, train))
            throw new ArgumentException("cached features would not give the same result for this model and data", nameof(cachedFeatures));
        _model = model;
        _train = train;
        _options = options;
        _features = cachedFeatures;
        _trainable = model.Module.parameters().Where(p => p.requires_grad).ToList();
        if (_trainable.Count == 0) throw new ArgumentException("the model has no trainable parameters", nameof(model));
        _optimizer = Optimizers.Create(_trainable, options);
        _classWeights = options.ClassWeightedLoss
            ? StackedHeads.ClassWeights([.. Enumerable.Range(0, train.Count).Select(train.Label)], model.NumClasses).to(model.Device)
            : null;
    }

    /// <summary>Mixed with the seed and the step into the seed of a step's dropout masks.</summary>
    public const long DropoutSeedSalt = 0x5eed;

    /// <summary>Mixed with the seed and the step into the seed of a step's mixup or CutMix draw.</summary>
    public const long MixupSeedSalt = 0x313c;

    public TrainerPosition Position { get; private set; } = TrainerPosition.Start;
    public int StepsPerEpoch => StepsPerEpochFor(_train.Count, _options.BatchSize);

    /// <summary>Batches per epoch; the last one may be short (no sample is dropped).</summary>
    public static int StepsPerEpochFor(int samples, int batchSize) => (samples + batchSize - 1) / batchSize;
    public long TotalSteps => (long)StepsPerEpoch * _options.Epochs;
    public bool UsesCachedFeatures => _features is not null;

    /// <summary>
    /// Runs up to <paramref name="maxSteps"/> steps of the current epoch (fewer when it ends); when it ends, the
    /// result carries the epoch's loss and accuracy and the position moves to the next epoch.
    /// <paramref name="stopRequested"/>, asked before each step, ends the chunk early at that step boundary, a point
    /// training can resume from (a cancelled run is checkpointed there); <paramref name="cancellationToken"/> abandons
    /// the chunk with an exception.
    /// </summary>
    public ChunkResult TrainSteps(int maxSteps, CancellationToken cancellationToken, Action<StepReport>? onStep = null, Func<bool>? stopRequested = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSteps, 1);
        var clock = Stopwatch.StartNew();
        var position = Position;
        int[] order = EpochOrder(position.Epoch);
        double rate = 0;
        if (_features is not null && _model.BoundaryIsHead) _model.Head.train();
        else _model.TrainMode();
        int epoch = position.Epoch;
        int[] BatchAt(int step) => order.Skip(step * _options.BatchSize).Take(_options.BatchSize).ToArray();
        // On images, the next step's batch is decoded while this one trains (one batch ahead, like a DataLoader's prefetch).
        Func<Tensor>? Images(int step) => _features is null ? _train.Prefetch(BatchAt(step), i => Seeds.Mix(_options.Seed, epoch, i)) : null;
        var images = position.Step < StepsPerEpoch ? Images(position.Step) : null;
        // Each step allocates the same large activations and gradients again: reused, not mapped and zeroed anew each time.
        using var reuse = GlibcMalloc.ReuseLargeBlocks();
        for (int done = 0; done < maxSteps && position.Step < StepsPerEpoch && stopRequested?.Invoke() != true; done++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long globalStep = (long)position.Epoch * StepsPerEpoch + position.Step;
            rate = LearningRateSchedule.At(_options, position.Epoch, globalStep, TotalSteps);
            var batch = BatchAt(position.Step);
            var current = images;
            images = done + 1 < maxSteps && position.Step + 1 < StepsPerEpoch ? Images(position.Step + 1) : null;
            var (loss, correct) = Step(batch, current, globalStep, rate);
            position = position with
            {
                Step = position.Step + 1,
                LossSum = position.LossSum + loss * batch.Length,
                Correct = position.Correct + correct,
                Seen = position.Seen + batch.Length,
            };
            Position = position;
            onStep?.Invoke(new StepReport(position.Epoch, position.Step, StepsPerEpoch, loss, rate));
        }
        bool completed = position.Step == StepsPerEpoch;
        var result = new ChunkResult(position, completed, position.LossSum / position.Seen, (double)position.Correct / position.Seen, rate, clock.Elapsed.TotalSeconds);
        if (completed) Position = TrainerPosition.Start with { Epoch = position.Epoch + 1 };
        return result;
    }

    /// <param name="images">the batch's images, prefetched; null on cached features</param>
    private (double Loss, long Correct) Step(int[] batch, Func<Tensor>? images, long globalStep, double rate)
    {
        lock (TorchRandom.Gate) return SeededStep(batch, images, globalStep, rate);
    }

    private (double Loss, long Correct) SeededStep(int[] batch, Func<Tensor>? images, long globalStep, double rate)
    {
        using var scope = NewDisposeScope();
        // Dropout draws from torch's global generator: seeding it per step makes a resumed run draw the same masks.
        manual_seed(Seeds.Mix(_options.Seed, globalStep, DropoutSeedSalt));
        var labels = tensor(batch.Select(i => (long)_train.Label(i)).ToArray()).to(_model.Device);
        Tensor logits;
        Tensor? targets = null;
        if (_features is not null)
        {
            logits = _model.FromBoundary(_features.Rows(batch).to(_model.Device));
        }
        else
        {
            var batchImages = images!().to(_model.Device);
            if (_options.Augmentation is { Mixes: true } augmentation)
            {
                // The batch's mixing draws from the seed and the step alone, so a resumed run mixes alike.
                var random = new Random(Seeds.Mix(_options.Seed, globalStep, MixupSeedSalt));
                (batchImages, targets, _) = Mixup.Apply(augmentation, batchImages, labels, _model.NumClasses, _options.LabelSmoothing, random);
            }
            logits = _model.Forward(batchImages);
        }
        var loss = targets is null
            ? nn.functional.cross_entropy(logits, labels, weight: _classWeights, label_smoothing: _options.LabelSmoothing)
            : Mixup.SoftTargetLoss(logits, targets, _classWeights);
        _optimizer.zero_grad();
        loss.backward();
        if (_options.GradientClipNorm is { } clip) nn.utils.clip_grad_norm_(_trainable, clip);
        foreach (var group in _optimizer.ParamGroups) group.LearningRate = rate;
        _optimizer.step();
        long correct = logits.argmax(1).eq(labels).sum().item<long>();
        return (loss.item<float>(), correct);
    }

    /// <summary>The epoch's sample order: a permutation drawn from the seed and the epoch alone.</summary>
    public int[] EpochOrder(int epoch) => EpochOrder(_options.Seed, epoch, _train.Count);

    /// <summary>The order a run seeded with <paramref name="seed"/> visits <paramref name="samples"/> samples in that epoch.</summary>
    public static int[] EpochOrder(long seed, int epoch, int samples)
    {
        var order = Enumerable.Range(0, samples).ToArray();
        new Random(Seeds.Mix(seed, epoch)).Shuffle(order);
        return order;
    }

    public void SaveOptimizer(Stream stream)
    {
        using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        _optimizer.save_state_dict(writer);
    }

    /// <summary>Continues from a saved point: the model's weights must already be loaded.</summary>
    public void Restore(TrainerPosition position, Stream optimizerState)
    {
        using (var reader = new BinaryReader(optimizerState, System.Text.Encoding.UTF8, leaveOpen: true))
            _optimizer.load_state_dict(reader);
        Position = position;
    }

    public void Dispose()
    {
        _optimizer.Dispose();
        _classWeights?.Dispose();
    }
}
