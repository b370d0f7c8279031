using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.ExceptionServices;
using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Export;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Engine;

/// <summary>
/// The tensor work of each step of the recipe, as calls that take and return plain data (paths, bytes, metrics), so a
/// durable activity can run any of them in any process: every call rebuilds the model from the recipe and
/// the latest state, does its work in its own dispose scope, and leaves no tensor behind.
/// </summary>
[SuppressMessage("Performance", "CA1822:Mark members as static",
    Justification = "A singleton service injected into the activities: they depend on an instance, not on the type.")]
public sealed class FineTuneEngine : IDisposable
{
    private const int InferenceBatch = 32;
    // The CPU feature pass runs a batch per core (FeatureCache.Compute): 8 images run as fast per image as 32 there, and
    // with small batches the threads finish together.
    private const int CpuFeatureBatch = 8;
    private readonly ModelPool _headModels = new(pretrained: false);
    private readonly ModelPool _pretrainedModels = new(pretrained: true);

    public void Dispose()
    {
        _headModels.Dispose();
        _pretrainedModels.Dispose();
        _shardPasses.Dispose();
    }

    /// <summary>
    /// "Freeze + replace head": builds the model, reports what trains, and computes the feature cache when it
    /// applies: serialised features by shard (<see cref="FeatureCache.ShardName"/>), each split cut into shards of at
    /// most <paramref name="maxShardBytes"/> (one row at least).
    /// </summary>
    /// <param name="fitted">the images the dataset's scan kept (<see cref="DatasetLoader.Load"/>): the pass decodes only the others</param>
    /// <param name="maxCacheBytes">the most bytes the cache may take, all splits together (<see cref="FeatureCache.DefaultBudgetBytes"/>): past it, training runs on images</param>
    /// <param name="maxPassImages">past this many images, the pass is not computed here but cut into shards of at most this many
    /// (<see cref="PreparedModel.PassShards"/>), which <see cref="ComputeShard"/> computes</param>
    public (PreparedModel Prepared, CachedFeatures? Features) Prepare(Recipe recipe, ImageDataset dataset, CancellationToken cancellationToken,
        long maxShardBytes = FeatureCache.DefaultShardBytes, FittedImages? fitted = null, long maxCacheBytes = FeatureCache.DefaultBudgetBytes,
        int maxPassImages = int.MaxValue)
    {
        using var scope = NewDisposeScope();
        using var model = Build(recipe, dataset.ClassCount, out var freeze);
        var train = TrainSource(recipe, dataset);
        int stepsPerEpoch = Trainer.StepsPerEpochFor(train.Count, recipe.Training.BatchSize);
        // Every split when training can run on the cache; else, with augmentation, the scored splits alone (each epoch's
        // validation and the final evaluation then run only what trains).
        bool cacheTrain = recipe.MayCacheFeatures && FeatureCache.IsExact(model, train);
        bool cacheScored = cacheTrain || (recipe.MayCacheEvaluationFeatures && FeatureCache.IsExact(model, EvaluationSource(recipe, dataset.Validation)));
        List<(string Split, IReadOnlyList<ImageSample> Samples)> splits = [(DatasetSplits.Validation, dataset.Validation), (DatasetSplits.Test, dataset.Test)];
        if (cacheTrain) splits.Insert(0, (DatasetSplits.Train, dataset.Train));
        long images = splits.Sum(s => (long)s.Samples.Count), rowBytes = 0;
        bool cache = cacheScored && images > 0 && (rowBytes = FeatureCache.BytesPerImage(model, recipe.Preprocessing.CropSize)) * images <= maxCacheBytes;
        cacheTrain &= cache;
        CachedFeatures? features = null;
        IReadOnlyList<FeatureShardRange> passShards = [];
        if (cache && images > maxPassImages)
        {
            passShards = [.. splits.SelectMany(s => CachedFeatures.Cut(s.Split, s.Samples.Count, rowBytes, maxShardBytes, maxPassImages))];
        }
        else if (cache)
        {
            // One pass over every split: full batches throughout, and each batch shape the backbone meets costs a
            // warm-up of its own.
            // The model is thrown away after this pass, which is all a frozen-backbone run spends its time on.
            model.FuseForInference();
            int batch = model.Device.type == DeviceType.CPU ? CpuFeatureBatch : InferenceBatch;
            var all = FeatureCache.Compute(model, EvaluationSource(recipe, [.. splits.SelectMany(s => s.Samples)], fitted), batch, cancellationToken);
            features = CachedFeatures.FromTensor(all, [.. splits.Where(s => s.Samples.Count > 0).Select(s => (s.Split, s.Samples.Count))], maxShardBytes);
        }
        return (new PreparedModel(dataset.Classes, freeze, stepsPerEpoch, cacheTrain)
        {
            StacksTrials = cacheTrain && model.BoundaryIsHead && model.Head is TorchSharp.Modules.Linear,
            PassShards = passShards,
        }, features);
    }

    /// <summary>
    /// One shard of a fanned-out feature pass (<see cref="PreparedModel.PassShards"/>): the features of its rows, computed
    /// as <see cref="Prepare"/>'s single pass computes them (the same fused model, in batches from the shard's first row).
    /// </summary>
    public CachedFeatures ComputeShard(Recipe recipe, ImageDataset dataset, FeatureShardRange shard, CancellationToken cancellationToken)
    {
        // A pass already runs a batch on every core: shards a process was handed together (the in-memory backend hands it
        // them all at once) run one after another, or each would hold a model and its activations at the same time.
        _shardPasses.Wait(cancellationToken);
        try
        {
            return ComputeShardAlone(recipe, dataset, shard, cancellationToken);
        }
        finally
        {
            _shardPasses.Release();
        }
    }

    private readonly SemaphoreSlim _shardPasses = new(1);

    private static CachedFeatures ComputeShardAlone(Recipe recipe, ImageDataset dataset, FeatureShardRange shard, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        using var model = Build(recipe, dataset.ClassCount, out _);
        model.FuseForInference();
        var samples = shard.Split switch
        {
            DatasetSplits.Train => dataset.Train,
            DatasetSplits.Validation => dataset.Validation,
            DatasetSplits.Test => dataset.Test,
            _ => throw new ArgumentException($"no split {shard.Split}", nameof(shard)),
        };
        int batch = model.Device.type == DeviceType.CPU ? CpuFeatureBatch : InferenceBatch;
        var rows = FeatureCache.Compute(model, EvaluationSource(recipe, [.. samples.Take(shard.Start..shard.End)]), batch, cancellationToken);
        return CachedFeatures.OfShard(shard, rows);
    }

    /// <summary>
    /// "Train epochs": at most <paramref name="maxSteps"/> steps from <paramref name="state"/> (the start when
    /// null), fewer when <paramref name="stopRequested"/> says so (see <see cref="Trainer.TrainSteps"/>). When the
    /// epoch ends, the model is scored on the validation set and the epoch joins the history.
    /// </summary>
    /// <param name="keptImages">where the images decoded on the way are kept for the run's later epochs (<see cref="FittedImages"/> kept across epochs); null: none are</param>
    public ChunkOutcome Train(Recipe recipe, ImageDataset dataset, TrainingState? state, CachedFeatures? features,
        int maxSteps, CancellationToken cancellationToken, Action<StepReport>? onStep = null, Func<bool>? stopRequested = null, FittedImages? keptImages = null)
    {
        if (features?.Holds(DatasetSplits.Train) is true && TrainsHeadOnly(recipe))
            return WithPooledModel(_headModels, recipe, dataset.ClassCount, model => TrainOn(model, recipe, dataset, state, features, maxSteps, onStep, stopRequested, keptImages, cancellationToken));
        // A run's later chunks restore every module that trains from its checkpoint, and the frozen ones are the pretrained
        // weights whichever run's chunk last used the model: built once per kind, not each chunk (~0.6 s for resnet18).
        // Models that train stages serve training alone, so their frozen part runs as fast as the feature pass runs it.
        if (state is not null)
        {
            return WithPooledModel(_pretrainedModels, recipe, dataset.ClassCount, model =>
            {
                model.FuseFrozenPart();
                return TrainOn(model, recipe, dataset, state, features, maxSteps, onStep, stopRequested, keptImages, cancellationToken);
            });
        }
        using var model = Build(recipe, dataset.ClassCount, out _);
        model.FuseFrozenPart();
        return TrainOn(model, recipe, dataset, state, features, maxSteps, onStep, stopRequested, keptImages, cancellationToken);
    }

    private static ChunkOutcome TrainOn(FineTuneModel model, Recipe recipe, ImageDataset dataset, TrainingState? state, CachedFeatures? features,
        int maxSteps, Action<StepReport>? onStep, Func<bool>? stopRequested, FittedImages? keptImages, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var train = TrainSource(recipe, dataset, keptImages);
        var trainFeatures = CachedFeatures.Of(features, DatasetSplits.Train);
        using var trainer = new Trainer(model, train, recipe.Training, trainFeatures);
        var progress = state?.Progress ?? TrainingProgress.Start;
        if (state is not null) TrainingSnapshot.Restore(model, trainer, state.Parts, progress.Position);

        double? lastLoss = null;
        var chunk = trainer.TrainSteps(maxSteps, cancellationToken, step =>
        {
            lastLoss = step.Loss;
            onStep?.Invoke(step);
        }, stopRequested);
        var history = progress.History;
        if (chunk.EpochCompleted)
        {
            var clock = Stopwatch.StartNew();
            var validation = Score(model, recipe, dataset, DatasetSplits.Validation, features, keptImages, cancellationToken);
            history = [.. history, new EpochMetrics(chunk.Position.Epoch, chunk.EpochLoss, chunk.EpochAccuracy, validation.Loss,
                validation.Top1Accuracy, chunk.LearningRate, chunk.Seconds + clock.Elapsed.TotalSeconds)];
        }
        var next = new TrainingProgress(trainer.Position, history);
        return new ChunkOutcome(new TrainingState(TrainingSnapshot.Capture(model, trainer), next), lastLoss);
    }

    /// <summary>
    /// "Train a sweep's trials": the trials of one feature group (their recipes differ only in training options and head
    /// dropout) as one <see cref="StackedHeads"/> on the group's cached features, from <paramref name="state"/> (the start
    /// when null). The session keeps the stack between epochs, so a rung costs its tensor work only.
    /// </summary>
    public StackSession OpenStack(IReadOnlyList<Recipe> trials, ImageDataset dataset, CachedFeatures features, StackState? state)
    {
        using var scope = NewDisposeScope();
        var heads = trials.Select(recipe => WithPooledModel(_headModels, recipe, dataset.ClassCount, model =>
        {
            var head = model.Head as TorchSharp.Modules.Linear
                ?? throw new ArgumentException($"{recipe.Family}'s head is not linear: its trials train one by one", nameof(trials));
            return (head.weight!.detach().clone(), head.bias?.detach().clone());
        })).ToList();
        var device = Runtime.TorchDevice.Resolve(trials[0].Device);
        var stack = new StackedHeads(features.Split(DatasetSplits.Train).All().to(device), [.. dataset.Train.Select(s => s.Label)],
            features.Split(DatasetSplits.Validation).All(), [.. dataset.Validation.Select(s => s.Label)], dataset.ClassCount,
            [.. trials.Select(r => new StackMember(r.Training, r.HeadDropout))], heads);
        try
        {
            if (state is not null) stack.Restore(ReadAll(state.Tensors), state.Members);
        }
        catch
        {
            stack.Dispose();
            throw;
        }
        return new StackSession(stack);
    }

    /// <summary>
    /// One trial of a stack as a checkpoint of its own run: its best epoch's head in the model its lone run would have
    /// built, for <see cref="Evaluate"/> and <see cref="Export"/>.
    /// </summary>
    public TrainingState TrialState(Recipe trial, int member, ImageDataset dataset, StackState state)
    {
        using var scope = NewDisposeScope();
        var (weight, bias) = StackedHeads.BestHeadIn(ReadAll(state.Tensors), member);
        var progress = state.Members[member];
        var best = TrainingHistory.Best(progress.History, trial.Training.StoppingMetric);
        return WithPooledModel(_headModels, trial, dataset.ClassCount, model =>
        {
            var head = (TorchSharp.Modules.Linear)model.Head;
            using (no_grad())
            {
                head.weight!.copy_(weight);
                if (bias is not null) head.bias!.copy_(bias);
            }
            int epochs = best is null ? 0 : best.Epoch + 1;
            return new TrainingState(TrainingSnapshot.CaptureWeights(model),
                new TrainingProgress(TrainerPosition.Start with { Epoch = epochs }, [.. progress.History.Take(epochs)]));
        });
    }

    /// <summary>"Evaluate": the full report of the model in <paramref name="state"/> on the test set, or the validation set when there is none.</summary>
    /// <param name="keptImages">the images training kept (<see cref="Train"/>), and where those decoded here are kept</param>
    public EvaluationReport Evaluate(Recipe recipe, ImageDataset dataset, TrainingState state, CachedFeatures? features,
        CancellationToken cancellationToken, FittedImages? keptImages = null)
    {
        using var scope = NewDisposeScope();
        bool headOnCachedFeatures = features?.Holds(dataset.EvaluationSplit) is true && TrainsHeadOnly(recipe);
        // Otherwise the model training used, already built: its frozen part is pretrained (and fused), the checkpoint sets the rest.
        return WithPooledModel(headOnCachedFeatures ? _headModels : _pretrainedModels, recipe, dataset.ClassCount, model =>
        {
            if (!headOnCachedFeatures) model.FuseFrozenPart();
            TrainingSnapshot.RestoreWeights(model, state.Parts);
            return Score(model, recipe, dataset, dataset.EvaluationSplit, features, keptImages, cancellationToken);
        });
    }

    /// <summary>
    /// The head's convex optimum beside SGD's best epoch (<paramref name="best"/>): each of <see cref="HeadSolver.WeightDecays"/>
    /// solved on the cached training features and scored on validation, the best by the run's stopping metric (the larger
    /// weight decay on ties), kept when it scores better than the epoch (<see cref="HeadSolution.State"/>). Null where it does
    /// not apply: <see cref="TrainingOptions.ConvexHead"/> off, stages training, the training or validation split not cached,
    /// or a head that is not one linear layer.
    /// </summary>
    public HeadSolution? SolveHead(Recipe recipe, ImageDataset dataset, TrainingState best, CachedFeatures? features, CancellationToken cancellationToken)
    {
        if (!recipe.Training.ConvexHead || !TrainsHeadOnly(recipe) || features?.Holds(DatasetSplits.Train) is not true
            || !features.Holds(DatasetSplits.Validation) || dataset.Validation.Count == 0)
            return null;
        using var scope = NewDisposeScope();
        return WithPooledModel(_headModels, recipe, dataset.ClassCount, model =>
        {
            if (model.Head is not TorchSharp.Modules.Linear head) return null;
            var metric = recipe.Training.StoppingMetric;
            double Rank(EvaluationReport report) => TrainingHistory.Score(new EpochMetrics(0, 0, 0, report.Loss, report.Top1Accuracy, 0, 0), metric);
            TrainingSnapshot.RestoreWeights(model, best.Parts);
            var epoch = Score(model, recipe, dataset, DatasetSplits.Validation, features, null, cancellationToken);
            var train = features.Split(DatasetSplits.Train);
            int[] labels = [.. dataset.Train.Select(s => s.Label)];
            double[]? solution = null;
            (double Decay, EvaluationReport Report, double[] Solution)? chosen = null;
            foreach (double decay in HeadSolver.WeightDecays)
            {
                solution = HeadSolver.Solve(train, labels, dataset.ClassCount, recipe.Training, decay, solution, cancellationToken);
                HeadSolver.Load(head, solution);
                var report = Score(model, recipe, dataset, DatasetSplits.Validation, features, null, cancellationToken);
                if (chosen is null || Rank(report) > Rank(chosen.Value.Report)) chosen = (decay, report, solution);
            }
            var (weightDecay, optimum, weights) = chosen!.Value;
            HeadSolver.Load(head, weights);
            var state = Rank(optimum) > Rank(epoch) ? new TrainingState(TrainingSnapshot.CaptureWeights(model), best.Progress) : null;
            return new HeadSolution(weightDecay, optimum.Loss, optimum.Top1Accuracy, epoch.Loss, epoch.Top1Accuracy, state);
        });
    }

    /// <summary>
    /// Whether only the head trains, so work on cached features runs the head alone and any built model of the kind serves
    /// it (<see cref="ModelPool"/>); when stages train too, they start from the pretrained weights.
    /// </summary>
    private static bool TrainsHeadOnly(Recipe recipe) => recipe.Freeze == FreezeMode.Head;

    /// <summary>
    /// "Publish": the whole fine-tuned model's state dict, written in each format to its stream (one model serves them all),
    /// tensor by tensor from the model's memory: nothing holds a second copy of the weights.
    /// </summary>
    public void Export(Recipe recipe, ImageDataset dataset, TrainingState state, IReadOnlyDictionary<StateDictFormat, Stream> destinations)
    {
        using var scope = NewDisposeScope();
        // A pooled model's backbone is random until loaded; the checkpoint then sets every module that trained, so every
        // tensor of the state dict is overwritten whatever the model served before.
        WithPooledModel(_headModels, recipe, dataset.ClassCount, model =>
        {
            PretrainedWeights.LoadBackbone(model, recipe.WeightsPath);
            TrainingSnapshot.RestoreWeights(model, state.Parts);
            var stateDict = model.Module.state_dict();
            // Each format is a pass over the same tensors, which it only reads: one format per core.
            try
            {
                Parallel.ForEach(destinations, destination =>
                {
                    // Dispose scopes are per thread: each format's temporaries are its own thread's to free.
                    using var formatScope = NewDisposeScope();
                    StateDictFile.Write(stateDict, destination.Value, destination.Key);
                });
            }
            catch (AggregateException e)
            {
                ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
            }
        });
    }

    /// <summary>"Publish" when asked: the fine-tuned model as an ONNX graph at <paramref name="path"/> (<see cref="OnnxExporter.Save"/>: its weights beside it, never held twice, when they pass 1.75 GiB); returns the files written.</summary>
    public IReadOnlyList<string> ExportOnnx(Recipe recipe, ImageDataset dataset, TrainingState state, string path)
    {
        using var scope = NewDisposeScope();
        using var model = Restore(recipe, dataset, state);
        return OnnxExporter.Save(model, dataset.Classes, recipe.Preprocessing, path);
    }

    private static FineTuneModel Restore(Recipe recipe, ImageDataset dataset, TrainingState state)
    {
        var model = Build(recipe, dataset.ClassCount, out _);
        TrainingSnapshot.RestoreWeights(model, state.Parts);
        return model;
    }

    /// <param name="split"><see cref="DatasetSplits.Validation"/> or <see cref="DatasetSplits.Test"/></param>
    private static EvaluationReport Score(FineTuneModel model, Recipe recipe, ImageDataset dataset, string split,
        CachedFeatures? features, FittedImages? keptImages, CancellationToken cancellationToken)
    {
        bool test = split == DatasetSplits.Test;
        var samples = test ? dataset.Test : dataset.Validation;
        var cached = CachedFeatures.Of(features, split);
        var logits = Evaluator.Logits(model, EvaluationSource(recipe, samples, keptImages), InferenceBatch, cancellationToken, cached);
        return Evaluator.Report(split, logits, samples.Select(s => s.Label).ToList(), dataset.Classes, samples.Select(s => s.Name).ToList());
    }

    /// <summary>
    /// The prepared model: family, fresh head under the seed, pretrained backbone, freezing. Without
    /// <paramref name="backboneWeights"/> the backbone keeps its random initialisation: for work on cached
    /// features, which never runs the backbone and so need not read its weights.
    /// </summary>
    private static FineTuneModel Build(Recipe recipe, int classes, out FreezeReport freeze, bool backboneWeights = true)
    {
        FineTuneModel? model = null;
        try
        {
            model = FineTuneModel.Create(recipe.ModelFamily, classes, recipe.Training.Seed, recipe.HeadDropout);
            // Read tensor by tensor into the model: the largest builders' 2.5 GB of weights are never held twice.
            if (backboneWeights) PretrainedWeights.LoadBackbone(model, recipe.WeightsPath);
            freeze = model.Freeze(recipe.Freeze);
            var device = Runtime.TorchDevice.Resolve(recipe.Device);
            Runtime.TorchDevice.UseTf32(device, recipe.Tf32);
            model.Module.to(device);
            return model;
        }
        catch
        {
            model?.Dispose();
            throw;
        }
    }

    /// <summary>Runs <paramref name="work"/> on a model from <paramref name="pool"/>, returned to it unless the work fails.</summary>
    private static T WithPooledModel<T>(ModelPool pool, Recipe recipe, int classes, Func<FineTuneModel, T> work)
    {
        T result = default!;
        WithPooledModel(pool, recipe, classes, model => { result = work(model); });
        return result;
    }

    /// <inheritdoc cref="WithPooledModel{T}"/>
    private static void WithPooledModel(ModelPool pool, Recipe recipe, int classes, Action<FineTuneModel> work)
    {
        var model = pool.Rent(recipe, classes);
        try
        {
            work(model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        pool.Return(recipe, classes, model);
    }

    /// <summary>
    /// Built models of a kind. Without <paramref name="pretrained"/>, for work that never trusts the backbone a model holds:
    /// training and scoring on cached features (only the head runs) and export (which loads the backbone); building one
    /// initialises a whole backbone, which costs more than a chunk of head training (a sweep trains hundreds of chunks), so
    /// a few are kept per kind. With it, the pretrained backbone is loaded once and kept (one per kind, the weights file
    /// part of the kind), for chunks that restore everything that trains. Each call gets one whose head is what a fresh
    /// build under its seed would have.
    /// </summary>
    private sealed class ModelPool(bool pretrained) : IDisposable
    {
        private readonly int _idlePerKind = pretrained ? 1 : 4;
        private readonly ConcurrentDictionary<string, ConcurrentBag<FineTuneModel>> _idle = new();

        private string Kind(Recipe recipe, int classes) =>
            string.Join('|', recipe.ModelFamily.Name, recipe.Preprocessing.CropSize, classes, recipe.HeadDropout, recipe.Freeze, recipe.Device,
                pretrained ? recipe.WeightsPath : "");

        public FineTuneModel Rent(Recipe recipe, int classes)
        {
            if (!_idle.TryGetValue(Kind(recipe, classes), out var idle) || !idle.TryTake(out var model))
                return Build(recipe, classes, out _, backboneWeights: pretrained);
            model.ResetHeads(recipe.Training.Seed);
            model.Freeze(recipe.Freeze);
            model.EvalMode();
            return model;
        }

        public void Return(Recipe recipe, int classes, FineTuneModel model)
        {
            var idle = _idle.GetOrAdd(Kind(recipe, classes), _ => []);
            if (idle.Count < _idlePerKind) idle.Add(model);
            else model.Dispose();
        }

        public void Dispose()
        {
            foreach (var model in _idle.Values.SelectMany(bag => bag)) model.Dispose();
            _idle.Clear();
        }
    }

    private static FileImageSource TrainSource(Recipe recipe, ImageDataset dataset, FittedImages? keptImages = null) =>
        new(dataset.Train, recipe.Preprocessing, recipe.Training.Augmentation, fitted: keptImages);

    private static FileImageSource EvaluationSource(Recipe recipe, IReadOnlyList<ImageSample> samples, FittedImages? fitted = null) =>
        new(samples, recipe.Preprocessing, fitted: fitted);

    /// <summary>Every tensor of a safetensors file held in memory.</summary>
    private static Dictionary<string, Tensor> ReadAll(byte[] data)
    {
        using var stream = new MemoryStream(data, writable: false);
        return StateDictFile.Read(stream);
    }
}
