using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Core.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Training;

/// <summary>
/// A trial trained in a stack ends where the same trial trained alone by <see cref="Trainer"/> ends: for every
/// optimizer and schedule, with dropout, label smoothing, class weights and clipping, across a save and restore.
/// </summary>
public sealed class StackedHeadsTests
{
    private const int Classes = 3, Features = 512, TrainCount = 23, ValidationCount = 9;
    private static readonly ModelFamily Family = ModelRegistry.Get("resnet18");

    /// <summary>Every optimizer and schedule, the options a sweep varies, and members that stop at other epochs.</summary>
    private static readonly StackMember[] Members =
    [
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 0.05, Seed = 1 }, 0),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 0.05, Nesterov = true, WeightDecay = 1e-3, Schedule = ScheduleKind.Step, StepEpochs = 1, Gamma = 0.5, Seed = 2 }, 0),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 0.1, Momentum = 0, Schedule = ScheduleKind.Cosine, WarmupSteps = 3, Seed = 3 }, 0),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, Optimizer = OptimizerKind.Adam, LearningRate = 0.01, WeightDecay = 1e-2, LabelSmoothing = 0.1, Seed = 4 }, 0),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, Optimizer = OptimizerKind.AdamW, LearningRate = 0.01, WeightDecay = 0.05, Schedule = ScheduleKind.Cosine, Seed = 5 }, 0.2),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 0.05, ClassWeightedLoss = true, GradientClipNorm = 0.05, LabelSmoothing = 0.2, Seed = 6 }, 0.3),
        new(new TrainingOptions { Epochs = 3, BatchSize = 5, LearningRate = 0.05, Seed = 7 }, 0),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, Optimizer = OptimizerKind.Adam, LearningRate = 0.02, ClassWeightedLoss = true, GradientClipNorm = 0.1, Seed = 8 }, 0.25),
        new(new TrainingOptions { Epochs = 2, BatchSize = 4, LearningRate = 0.05, Schedule = ScheduleKind.Cosine, Seed = 9 }, 0),
        new(new TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 0.5, EarlyStoppingPatience = 1, StoppingMetric = StoppingMetric.ValidationAccuracy, Seed = 10 }, 0),
    ];

    /// <summary>An optimizer added to the table without a member here would have its stacked step untested.</summary>
    [Fact]
    public void EveryOptimizerHasAMember() =>
        Assert.Equal(Optimizers.Choices.All.Select(c => c.Value).Order(), Members.Select(m => m.Options.Optimizer).Distinct().Order());

    [Fact]
    public void EachMemberEndsWhereItsLoneRunEnds()
    {
        using var scope = NewDisposeScope();
        var (train, trainLabels, validation, validationLabels) = Data();
        var lone = Members.Select(m => Lone(m, train, trainLabels, validation, validationLabels)).ToList();

        // Trained to epoch 1, saved, rebuilt from the checkpoint, then trained to the end: as a sweep's rungs do.
        Dictionary<string, Tensor> saved;
        IReadOnlyList<StackMemberProgress> progress;
        using (var first = NewStack(train, trainLabels, validation, validationLabels))
        {
            Assert.True(first.Train(1, new HashSet<int>(), default));
            saved = first.State().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            progress = [.. Enumerable.Range(0, first.Count).Select(first.ProgressOf)];
        }
        using var stack = NewStack(train, trainLabels, validation, validationLabels);
        stack.Restore(saved, progress);
        Assert.True(stack.Train(int.MaxValue, new HashSet<int>(), default));

        for (int i = 0; i < Members.Length; i++)
        {
            var expected = lone[i];
            var actual = stack.ProgressOf(i);
            Assert.Equal(expected.History.Count, actual.History.Count);
            Assert.Equal(expected.StoppedEarly, actual.StoppedEarly);
            for (int e = 0; e < expected.History.Count; e++)
            {
                var (a, b) = (expected.History[e], actual.History[e]);
                Assert.True(Math.Abs(a.TrainLoss - b.TrainLoss) < 1e-5 && Math.Abs(a.ValidationLoss - b.ValidationLoss) < 1e-5
                    && a.TrainAccuracy == b.TrainAccuracy && a.ValidationAccuracy == b.ValidationAccuracy && Math.Abs(a.LearningRate - b.LearningRate) < 1e-12,
                    $"member {i} epoch {e}: alone {a}, stacked {b}");
            }
            AssertClose(expected.Weight, stack.BestHead(i).Weight, $"member {i}'s best weight");
            AssertClose(expected.Bias, stack.BestHead(i).Bias!, $"member {i}'s best bias");
        }
        Assert.True(stack.ProgressOf(9).StoppedEarly, "the patient member's patience runs out (lr 0.5)");
    }

    [Fact]
    public void ExcludedMembersStayWhereTheyAre()
    {
        using var scope = NewDisposeScope();
        var (train, trainLabels, validation, validationLabels) = Data();
        using var stack = NewStack(train, trainLabels, validation, validationLabels);
        Assert.True(stack.Train(1, new HashSet<int>(), default));
        var before = stack.State()["2.weight"].clone();
        Assert.True(stack.Train(3, new HashSet<int> { 2 }, default));
        Assert.Equal(1, stack.ProgressOf(2).Epoch);
        Assert.True(before.equal(stack.State()["2.weight"]).all().item<bool>());
        Assert.Equal(3, stack.ProgressOf(0).Epoch);
        Assert.Equal(2, stack.ProgressOf(8).Epoch);
        Assert.True(stack.IsFinished(8));
    }

    [Fact]
    public void AStopRequestKeepsTheLastFinishedEpoch()
    {
        using var scope = NewDisposeScope();
        var (train, trainLabels, validation, validationLabels) = Data();
        using var stack = NewStack(train, trainLabels, validation, validationLabels);
        Assert.True(stack.Train(1, new HashSet<int>(), default));
        var before = stack.State()["0.weight"].clone();
        int asked = 0;
        Assert.False(stack.Train(2, new HashSet<int>(), default, () => ++asked > 2));
        Assert.Equal(1, stack.ProgressOf(0).Epoch);
        Assert.True(before.equal(stack.State()["0.weight"]).all().item<bool>(), "a stopped epoch leaves the member as it was");
    }

    private static StackedHeads NewStack(Tensor train, int[] trainLabels, Tensor validation, int[] validationLabels)
    {
        var heads = Members.Select(m =>
        {
            using var model = FineTuneModel.Create(Family, Classes, m.Options.Seed, m.HeadDropout);
            var head = (Linear)model.Head;
            return (head.weight!.detach().clone(), (Tensor?)head.bias!.detach().clone());
        }).ToList();
        return new StackedHeads(train, trainLabels, validation, validationLabels, Classes, Members, heads);
    }

    private sealed record LoneResult(IReadOnlyList<EpochMetrics> History, bool StoppedEarly, Tensor Weight, Tensor Bias);

    /// <summary>The member trained alone, as a run on cached features trains: its best epoch's head.</summary>
    private static LoneResult Lone(StackMember member, Tensor train, int[] trainLabels, Tensor validation, int[] validationLabels)
    {
        var options = member.Options;
        using var model = FineTuneModel.Create(Family, Classes, options.Seed, member.HeadDropout);
        model.Freeze(FreezeMode.Head);
        // The images never run: the head trains on the features.
        var source = new TensorImageSource(zeros(TrainCount, 3, 8, 8), trainLabels);
        using var trainer = new Trainer(model, source, options, FeatureRows.Of(train));
        var history = new List<EpochMetrics>();
        Tensor? bestWeight = null, bestBias = null;
        var head = (Linear)model.Head;
        bool stopped = false;
        for (int epoch = 0; epoch < options.Epochs && !stopped; epoch++)
        {
            var chunk = trainer.TrainSteps(int.MaxValue, default);
            var logits = Evaluator.Logits(model, new TensorImageSource(zeros(ValidationCount, 3, 8, 8), validationLabels), 32, default, FeatureRows.Of(validation));
            var target = tensor(validationLabels.Select(l => (long)l).ToArray());
            double loss = nn.functional.cross_entropy(logits, target).item<float>();
            double accuracy = logits.argmax(1).eq(target).sum().item<long>() / (double)ValidationCount;
            var metrics = new EpochMetrics(epoch, chunk.EpochLoss, chunk.EpochAccuracy, loss, accuracy, chunk.LearningRate, 0);
            history.Add(metrics);
            if (TrainingHistory.Best(history, options.StoppingMetric) == metrics)
            {
                bestWeight = head.weight!.detach().clone();
                bestBias = head.bias!.detach().clone();
            }
            stopped = TrainingHistory.ShouldStop(history, options.StoppingMetric, options.EarlyStoppingPatience);
        }
        return new LoneResult(history, stopped, bestWeight!, bestBias!);
    }

    private static (Tensor Train, int[] TrainLabels, Tensor Validation, int[] ValidationLabels) Data()
    {
        var generator = new Generator(17);
        var train = randn([TrainCount, Features], generator: generator).relu();
        var validation = randn([ValidationCount, Features], generator: generator).relu();
        var random = new Random(3);
        // Imbalanced, so class weighting changes the loss.
        int[] trainLabels = [.. Enumerable.Range(0, TrainCount).Select(i => i % 5 == 0 ? 2 : random.Next(2))];
        int[] validationLabels = [.. Enumerable.Range(0, ValidationCount).Select(i => i % Classes)];
        return (train, trainLabels, validation, validationLabels);
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double difference = (expected - actual).abs().max().item<float>();
        Assert.True(difference <= 2e-6, $"{what}: max |Δ| = {difference}");
    }
}
