using System.Diagnostics;
using FineTune.Core.Runtime;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

/// <summary>One trial of a <see cref="StackedHeads"/>: its training options and the dropout on its head's input.</summary>
public sealed record StackMember(TrainingOptions Options, double HeadDropout);

/// <summary>Where one member of a stack stands: epochs done, their metrics, and whether its patience stopped it.</summary>
public sealed record StackMemberProgress(int Epoch, IReadOnlyList<EpochMetrics> History, bool StoppedEarly)
{
    public static StackMemberProgress Start => new(0, [], false);
}

/// <summary>
/// Many linear heads trained at once on the same cached features, as one tensor program: the heads stacked
/// ([members, classes, features]), batched matrix multiplies, each member's hyper-parameters as tensors, and the
/// optimizers' steps written for the stack (<see cref="OptimizerChoice.Stacked"/>). Each member draws what a lone
/// <see cref="Trainer"/> with its options draws (epoch order, dropout masks) and applies the same arithmetic, so it
/// ends with the weights that member would reach alone, to float rounding. A sweep's trials cost one small matrix
/// multiply each instead of a run each.
/// </summary>
/// <remarks>
/// Members train epoch by epoch in lock step; those that share an optimizer, a batch size and an epoch form one
/// stack for that epoch. State is kept per member between epochs, so any member can stop (its epochs done, its
/// patience out, or terminated by the caller) without disturbing the others.
/// </remarks>
public sealed class StackedHeads : IDisposable
{
    private readonly Tensor _train, _trainLabels, _validation, _validationLabels;
    private readonly int[] _labels;
    private readonly Tensor? _classWeights;
    private readonly int _classes;
    private readonly MemberState[] _members;

    /// <param name="trainFeatures">the training split's cached features, [N, F]</param>
    /// <param name="validationFeatures">the validation split's, [M, F]</param>
    /// <param name="heads">each member's initial head: weight [C, F] and bias [C] (null for a head without one), as a lone run's model starts</param>
    public StackedHeads(Tensor trainFeatures, IReadOnlyList<int> trainLabels, Tensor validationFeatures, IReadOnlyList<int> validationLabels, int classes,
        IReadOnlyList<StackMember> members, IReadOnlyList<(Tensor Weight, Tensor? Bias)> heads)
    {
        if (trainLabels.Count == 0) throw new ArgumentException("no training images", nameof(trainLabels));
        if (members.Count != heads.Count) throw new ArgumentException("one initial head per member", nameof(heads));
        foreach (var member in members)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(member.Options.BatchSize, 1);
            ArgumentOutOfRangeException.ThrowIfLessThan(member.Options.Epochs, 1);
        }
        var device = trainFeatures.device;
        _train = trainFeatures.detach().DetachFromDisposeScope();
        _labels = [.. trainLabels];
        _trainLabels = tensor(_labels.Select(l => (long)l).ToArray()).to(device).DetachFromDisposeScope();
        _validation = validationFeatures.to(device).detach().DetachFromDisposeScope();
        _validationLabels = tensor(validationLabels.Select(l => (long)l).ToArray()).to(device).DetachFromDisposeScope();
        _classes = classes;
        _classWeights = members.Any(m => m.Options.ClassWeightedLoss) ? ClassWeights(_labels, classes).to(device).DetachFromDisposeScope() : null;
        _members = [.. members.Select((m, i) => new MemberState(m, heads[i].Weight.to(device), heads[i].Bias?.to(device)))];
    }

    public int Count => _members.Length;
    public int StepsPerEpoch(int member) => Trainer.StepsPerEpochFor(_labels.Length, _members[member].Member.Options.BatchSize);
    public StackMemberProgress ProgressOf(int member) => _members[member].Progress;

    /// <summary>True when the member has nothing left to train: all its epochs, or stopped by its patience.</summary>
    public bool IsFinished(int member) => _members[member] is var m && (m.Progress.StoppedEarly || m.Progress.Epoch >= m.Member.Options.Epochs);

    /// <summary>
    /// Trains every member not finished and not in <paramref name="exclude"/> to the end of epoch <paramref name="untilEpoch"/>
    /// (its last epoch when sooner; its patience may stop it before). <paramref name="stopRequested"/>, asked before each
    /// step, abandons the epoch under way (the members keep their last finished epoch) and returns false.
    /// </summary>
    public bool Train(int untilEpoch, IReadOnlySet<int> exclude, CancellationToken cancellationToken, Func<bool>? stopRequested = null)
    {
        while (true)
        {
            var due = Enumerable.Range(0, _members.Length)
                .Where(i => !exclude.Contains(i) && !IsFinished(i) && _members[i].Progress.Epoch < untilEpoch).ToList();
            if (due.Count == 0) return true;
            // The earliest epoch first, so members that started later catch up before the others move on.
            int epoch = due.Min(i => _members[i].Progress.Epoch);
            foreach (var group in due.Where(i => _members[i].Progress.Epoch == epoch)
                .GroupBy(i => (_members[i].Member.Options.Optimizer, _members[i].Member.Options.BatchSize)))
            {
                if (!TrainEpoch([.. group], epoch, stopRequested, cancellationToken)) return false;
            }
        }
    }

    /// <summary>The member's head at its best epoch by <paramref name="metric"/> (the latest when it has none yet).</summary>
    public (Tensor Weight, Tensor? Bias) BestHead(int member)
    {
        var m = _members[member];
        return m.Best is { } best ? (best.Weight, best.Bias) : (m.Weight, m.Bias);
    }

    /// <summary><see cref="BestHead"/> read from a checkpoint's tensors (<see cref="State"/>), without building the stack.</summary>
    public static (Tensor Weight, Tensor? Bias) BestHeadIn(IReadOnlyDictionary<string, Tensor> state, int member)
    {
        string prefix = state.ContainsKey($"{member}.best.weight") ? $"{member}.best." : $"{member}.";
        return (state[prefix + "weight"], state.GetValueOrDefault(prefix + "bias"));
    }

    /// <summary>Every member's tensors by name, for a checkpoint; <see cref="Restore"/> reads them back.</summary>
    public Dictionary<string, Tensor> State()
    {
        var state = new Dictionary<string, Tensor>();
        for (int i = 0; i < _members.Length; i++)
        {
            foreach (var (name, value) in _members[i].Tensors()) state[$"{i}.{name}"] = value;
        }
        return state;
    }

    /// <summary>Puts a checkpoint's tensors and progress back (the members must be the ones it was saved with).</summary>
    public void Restore(IReadOnlyDictionary<string, Tensor> state, IReadOnlyList<StackMemberProgress> progress)
    {
        if (progress.Count != _members.Length) throw new ArgumentException($"the checkpoint holds {progress.Count} members, the stack {_members.Length}", nameof(progress));
        for (int i = 0; i < _members.Length; i++)
        {
            string prefix = $"{i}.";
            _members[i].Load(state.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value),
                progress[i], _train.device);
        }
    }

    public void Dispose()
    {
        foreach (var member in _members) member.Dispose();
        foreach (var t in (Tensor?[])[_train, _trainLabels, _validation, _validationLabels, _classWeights]) t?.Dispose();
    }

    private bool TrainEpoch(int[] group, int epoch, Func<bool>? stopRequested, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var members = group.Select(i => _members[i]).ToArray();
        var options = members.Select(m => m.Member.Options).ToArray();
        var kind = options[0].Optimizer;
        int batchSize = options[0].BatchSize, samples = _labels.Length;
        int steps = Trainer.StepsPerEpochFor(samples, batchSize);
        // Each member's epoch order, as its lone run draws it.
        var orders = options.Select(o => Trainer.EpochOrder(o.Seed, epoch, samples)).ToArray();
        var device = _train.device;
        var lossSums = new double[group.Length];
        var correct = new long[group.Length];
        double[] rates = new double[group.Length];

        using var epochScope = NewDisposeScope();
        bool hasBias = members[0].Bias is not null;
        var weight = stack(members.Select(m => m.Weight)).requires_grad_();
        var bias = hasBias ? stack(members.Select(m => m.Bias!)).requires_grad_() : null;
        var moments = members[0].Moments.Select((_, k) => stack(members.Select(m => m.Moments[k]))).ToArray();
        var smoothing = Column(options.Select(o => o.LabelSmoothing), device);
        var weighted = options.Any(o => o.ClassWeightedLoss)
            ? stack(options.Select(o => o.ClassWeightedLoss ? _classWeights! : ones(_classes, device: device)))
            : null;

        for (int step = 0; step < steps; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (stopRequested?.Invoke() == true) return false;
            using var scope = NewDisposeScope();
            int start = step * batchSize, count = Math.Min(batchSize, samples - start);
            var indices = tensor(orders.SelectMany(o => o.Skip(start).Take(count)).Select(i => (long)i).ToArray(), [group.Length, count]).to(device);
            var labels = _trainLabels.index_select(0, indices.view(-1)).view(group.Length, count);
            var inputs = Dropped(_train.index_select(0, indices.view(-1)).view(group.Length, count, -1), options, members, epoch, step, steps);
            var logits = bias is null ? inputs.bmm(weight.transpose(1, 2)) : inputs.bmm(weight.transpose(1, 2)) + bias.unsqueeze(1);
            var losses = CrossEntropy(logits, labels, smoothing, weighted);
            losses.sum().backward();
            using (no_grad())
            {
                Tensor[] parameters = bias is null ? [weight] : [weight, bias];
                var gradients = parameters.Select(p => p.grad!).ToArray();
                Clip(gradients, options, device);
                for (int m = 0; m < group.Length; m++)
                {
                    long globalStep = (long)epoch * steps + step;
                    rates[m] = LearningRateSchedule.At(options[m], epoch, globalStep, (long)steps * options[m].Epochs);
                }
                Update(kind, parameters, gradients, moments, options, rates, (long)epoch * steps + step + 1, device);
                foreach (var p in parameters) p.grad!.zero_();
            }
            var stepLosses = losses.detach().cpu().data<float>().ToArray();
            var stepCorrect = logits.detach().argmax(2).eq(labels).sum(1).cpu().data<long>().ToArray();
            for (int m = 0; m < group.Length; m++)
            {
                lossSums[m] += stepLosses[m] * count;
                correct[m] += stepCorrect[m];
            }
        }

        var (validationLoss, validationAccuracy) = Validate(weight.detach(), bias?.detach());
        double seconds = clock.Elapsed.TotalSeconds;
        for (int m = 0; m < group.Length; m++)
        {
            var metrics = new EpochMetrics(epoch, lossSums[m] / samples, (double)correct[m] / samples, validationLoss[m], validationAccuracy[m], rates[m], seconds);
            members[m].Finish(weight[m], bias?[m], moments.Select(t => t[m]).ToArray(), metrics);
        }
        return true;
    }

    /// <summary>Each member's batch through its dropout, with the mask its lone run draws at this step (from a per-step seed).</summary>
    private static Tensor Dropped(Tensor inputs, TrainingOptions[] options, MemberState[] members, int epoch, int step, int steps)
    {
        if (members.All(m => m.Member.HeadDropout == 0)) return inputs;
        var rows = new Tensor[members.Length];
        lock (TorchRandom.Gate)
        {
            for (int m = 0; m < members.Length; m++)
            {
                double p = members[m].Member.HeadDropout;
                if (p == 0)
                {
                    rows[m] = inputs[m];
                    continue;
                }
                manual_seed(Seeds.Mix(options[m].Seed, (long)epoch * steps + step, Trainer.DropoutSeedSalt));
                rows[m] = nn.functional.dropout(inputs[m], p, training: true);
            }
        }
        return stack(rows);
    }

    /// <summary>
    /// torch's cross entropy per member, mean-reduced: with label smoothing and class weights it is normalised, as
    /// torch does, by the summed weights of the targets. <paramref name="weights"/>: [members, C], or null for none.
    /// </summary>
    private static Tensor CrossEntropy(Tensor logits, Tensor labels, Tensor smoothing, Tensor? weights)
    {
        int classes = (int)logits.shape[2];
        var logProbabilities = nn.functional.log_softmax(logits, 2);
        var picked = -logProbabilities.gather(2, labels.unsqueeze(2)).squeeze(2);
        Tensor nll, smooth;
        if (weights is null)
        {
            nll = picked.mean([1]);
            smooth = -logProbabilities.sum(2).mean([1]);
        }
        else
        {
            var targetWeights = weights.gather(1, labels);
            var total = targetWeights.sum(1);
            nll = (picked * targetWeights).sum(1) / total;
            smooth = -(logProbabilities * weights.unsqueeze(1)).sum(2).sum(1) / total;
        }
        var flat = smoothing.view(-1);
        return (1 - flat) * nll + smooth * (flat / classes);
    }

    /// <summary>Each member's gradients clipped to its global L2 norm, as <c>clip_grad_norm_</c> does for a lone run.</summary>
    private static void Clip(Tensor[] gradients, TrainingOptions[] options, Device device)
    {
        if (options.All(o => o.GradientClipNorm is null)) return;
        var total = stack(gradients.Select(g => g.view(g.shape[0], -1).pow(2).sum(1)), 1).sum(1).sqrt();
        var limits = tensor(options.Select(o => (float)(o.GradientClipNorm ?? double.PositiveInfinity)).ToArray()).to(device);
        var coefficients = (limits / (total + 1e-6)).clamp_max(1.0);
        foreach (var g in gradients) g.mul_(coefficients.view([-1, .. Enumerable.Repeat(1L, (int)g.dim() - 1)]));
    }

    /// <summary>
    /// The optimizer's step (<see cref="OptimizerChoice.Stacked"/>) on each stacked parameter, member by member through
    /// broadcast hyper-parameters. <paramref name="moments"/>: the optimizer's tensors, <see cref="OptimizerChoice.Moments"/> per parameter.
    /// </summary>
    private static void Update(OptimizerKind kind, Tensor[] parameters, Tensor[] gradients, Tensor[] moments, TrainingOptions[] options, double[] rates,
        long step, Device device)
    {
        var optimizer = Optimizers.Choices[kind];
        for (int k = 0; k < parameters.Length; k++)
        {
            var p = parameters[k];
            Tensor Each(Func<TrainingOptions, int, double> value) =>
                tensor(options.Select(value).Select(v => (float)v).ToArray()).to(device).view([-1, .. Enumerable.Repeat(1L, (int)p.dim() - 1)]);
            optimizer.Stacked(p, gradients[k], moments[(k * optimizer.Moments)..((k + 1) * optimizer.Moments)], Each, rates, step);
        }
    }

    /// <summary>Each member's validation loss and top-1 accuracy, as a lone run scores its epoch.</summary>
    private (double[] Loss, double[] Accuracy) Validate(Tensor weight, Tensor? bias)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        int members = (int)weight.shape[0];
        long count = _validation.shape[0];
        if (count == 0) return (new double[members], new double[members]);
        var inputs = _validation.unsqueeze(0).expand(members, -1, -1);
        var logits = bias is null ? inputs.bmm(weight.transpose(1, 2)) : inputs.bmm(weight.transpose(1, 2)) + bias.unsqueeze(1);
        var labels = _validationLabels.unsqueeze(0).expand(members, -1);
        var loss = -nn.functional.log_softmax(logits, 2).gather(2, labels.unsqueeze(2)).squeeze(2).mean([1]);
        var accuracy = logits.argmax(2).eq(labels).sum(1);
        return ([.. loss.cpu().data<float>().ToArray().Select(v => (double)v)], [.. accuracy.cpu().data<long>().ToArray().Select(c => (double)c / count)]);
    }

    private static Tensor Column(IEnumerable<double> values, Device device) => tensor(values.Select(v => (float)v).ToArray()).to(device).view(-1, 1);

    internal static Tensor ClassWeights(IReadOnlyList<int> labels, int classes)
    {
        var counts = new double[classes];
        foreach (int label in labels) counts[label]++;
        return tensor(counts.Select(c => c == 0 ? 0f : (float)(labels.Count / (classes * c))).ToArray());
    }

    /// <summary>One member's tensors between epochs: its head, its optimizer's moments, its best epoch's head.</summary>
    private sealed class MemberState : IDisposable
    {
        public MemberState(StackMember member, Tensor weight, Tensor? bias)
        {
            Member = member;
            Weight = weight.detach().clone().DetachFromDisposeScope();
            Bias = bias?.detach().clone().DetachFromDisposeScope();
            // The optimizer's state per parameter (SGD's momentum buffer, Adam's two moments), all starting at zero.
            int perParameter = Optimizers.Choices[member.Options.Optimizer].Moments;
            Tensor[] parameters = Bias is null ? [Weight] : [Weight, Bias];
            Moments = [.. parameters.SelectMany(p => Enumerable.Range(0, perParameter).Select(_ => zeros_like(p).DetachFromDisposeScope()))];
        }

        public StackMember Member { get; }
        public Tensor Weight { get; private set; }
        public Tensor? Bias { get; private set; }
        public Tensor[] Moments { get; private set; }
        public (Tensor Weight, Tensor? Bias)? Best { get; private set; }
        public StackMemberProgress Progress { get; private set; } = StackMemberProgress.Start;

        public void Finish(Tensor weight, Tensor? bias, Tensor[] moments, EpochMetrics metrics)
        {
            Replace(weight, bias, moments);
            var history = (IReadOnlyList<EpochMetrics>)[.. Progress.History, metrics];
            var options = Member.Options;
            if (TrainingHistory.Best(history, options.StoppingMetric) == metrics) KeepBest();
            Progress = new StackMemberProgress(metrics.Epoch + 1, history, TrainingHistory.ShouldStop(history, options.StoppingMetric, options.EarlyStoppingPatience));
        }

        public IEnumerable<(string Name, Tensor Value)> Tensors()
        {
            yield return ("weight", Weight);
            if (Bias is not null) yield return ("bias", Bias);
            for (int k = 0; k < Moments.Length; k++) yield return ($"moment{k}", Moments[k]);
            if (Best is { } best)
            {
                yield return ("best.weight", best.Weight);
                if (best.Bias is not null) yield return ("best.bias", best.Bias);
            }
        }

        public void Load(Dictionary<string, Tensor> saved, StackMemberProgress progress, Device device)
        {
            Tensor Take(string name) => saved.TryGetValue(name, out var t) ? t.to(device) : throw new ArgumentException($"the checkpoint misses a member's {name}");
            Replace(Take("weight"), Bias is null ? null : Take("bias"), [.. Moments.Select((_, k) => Take($"moment{k}"))]);
            DisposeBest();
            if (saved.ContainsKey("best.weight"))
                Best = (Take("best.weight").detach().clone().DetachFromDisposeScope(), Bias is null ? null : Take("best.bias").detach().clone().DetachFromDisposeScope());
            Progress = progress;
        }

        private void Replace(Tensor weight, Tensor? bias, Tensor[] moments)
        {
            var old = (Tensor?[])[Weight, Bias, .. Moments];
            Weight = weight.detach().clone().DetachFromDisposeScope();
            Bias = bias?.detach().clone().DetachFromDisposeScope();
            Moments = [.. moments.Select(m => m.detach().clone().DetachFromDisposeScope())];
            foreach (var t in old) t?.Dispose();
        }

        private void KeepBest()
        {
            DisposeBest();
            Best = (Weight.clone().DetachFromDisposeScope(), Bias?.clone().DetachFromDisposeScope());
        }

        private void DisposeBest()
        {
            if (Best is not { } best) return;
            best.Weight.Dispose();
            best.Bias?.Dispose();
            Best = null;
        }

        public void Dispose()
        {
            foreach (var t in (Tensor?[])[Weight, Bias, .. Moments]) t?.Dispose();
            DisposeBest();
        }
    }
}
