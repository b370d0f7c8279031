using static TorchSharp.torch;

namespace FineTune.Core.Training;

/// <summary>
/// The new head's convex optimum on cached features. A linear head on frozen features has a convex training objective
/// (the recipe's cross-entropy, with its label smoothing and class weights, plus weightDecay/2·|W|², the bias free), so
/// each weight decay has one optimum, whatever the seed: the linear probe of CLIP-style evaluations. L-BFGS finds it,
/// full batch, in float64. SGD's best epoch stops short of it; on small sets the optimum scores better
/// (bench/DefaultRecipeBench).
/// </summary>
public static class HeadSolver
{
    /// <summary>The weight decays tried, a decade apart, largest first: each solve starts from the previous optimum.</summary>
    public static readonly double[] WeightDecays = [1.0, 0.1, 0.01, 0.001, 0.0001];

    private const int RowsPerChunk = 4096;
    /// <summary>Training rows up to this many float64 values are held between evaluations; more are read a chunk at a time.</summary>
    private const long HeldValues = 8 << 20;
    private const int MaxIterations = 300;
    private const int History = 20;
    /// <summary>Stops when no gradient component is larger: the head's scores then move by far less than its accuracy can show.</summary>
    private const double GradientTolerance = 1e-5;
    private const double LossTolerance = 1e-13;

    /// <summary>
    /// Minimises the objective from <paramref name="start"/> (null: zero); returns the optimum, the weight's rows then the bias.
    /// The algebra of L-BFGS runs on arrays: its vectors are small, and tensor calls would cost more than the arithmetic.
    /// </summary>
    /// <param name="features">the training rows, [N, F]</param>
    /// <param name="labels">their classes</param>
    public static double[] Solve(FeatureRows features, IReadOnlyList<int> labels, int classes, TrainingOptions options, double weightDecay,
        double[]? start, CancellationToken cancellationToken)
    {
        using var objective = new Objective(features, labels, classes, options, weightDecay);
        var x = start is null ? new double[objective.Size] : objective.ToStandardised(start);
        var (loss, gradient) = objective.Evaluate(x);
        var pairs = new List<(double[] S, double[] Y, double Rho)>();
        for (int iteration = 0; iteration < MaxIterations && gradient.Max(Math.Abs) > GradientTolerance; iteration++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var direction = Direction(gradient, pairs);
            double slope = Dot(gradient, direction);
            if (slope >= 0)
            {
                // The curvature pairs no longer describe the objective: start again from steepest descent.
                pairs.Clear();
                direction = [.. gradient.Select(g => -g)];
                slope = -Dot(gradient, gradient);
            }
            double size = pairs.Count == 0 ? Math.Min(1, 1 / gradient.Sum(Math.Abs)) : 1;
            double[] next, nextGradient;
            double nextLoss;
            // Backtracking to a sufficient decrease (Armijo): the objective is smooth and convex, so one is found
            // unless x is the optimum within float64.
            while (true)
            {
                next = [.. x.Select((v, i) => v + size * direction[i])];
                (nextLoss, nextGradient) = objective.Evaluate(next);
                if (nextLoss <= loss + 1e-4 * size * slope) break;
                size /= 2;
                if (size < 1e-20) return objective.FromStandardised(x);
            }
            double[] s = [.. next.Select((v, i) => v - x[i])], y = [.. nextGradient.Select((g, i) => g - gradient[i])];
            double ys = Dot(y, s);
            if (ys > 1e-20)
            {
                if (pairs.Count == History) pairs.RemoveAt(0);
                pairs.Add((s, y, 1 / ys));
            }
            bool settled = Math.Abs(loss - nextLoss) <= LossTolerance * Math.Max(1, Math.Abs(loss));
            (x, loss, gradient) = (next, nextLoss, nextGradient);
            if (settled) break;
        }
        return objective.FromStandardised(x);
    }

    /// <summary>Copies a solution (<see cref="Solve"/>) into a head of the same shape.</summary>
    public static void Load(TorchSharp.Modules.Linear head, double[] solution)
    {
        using var scope = NewDisposeScope();
        int weights = (int)head.weight!.numel();
        using (no_grad())
        {
            head.weight.copy_(tensor(solution[..weights]).view(head.weight.shape).to(head.weight.dtype));
            head.bias?.copy_(tensor(solution[weights..]).to(head.bias.dtype));
        }
    }

    /// <summary>L-BFGS's two-loop recursion: minus the inverse Hessian estimate times <paramref name="gradient"/>.</summary>
    private static double[] Direction(double[] gradient, List<(double[] S, double[] Y, double Rho)> pairs)
    {
        var q = (double[])gradient.Clone();
        var alphas = new double[pairs.Count];
        for (int i = pairs.Count - 1; i >= 0; i--)
        {
            alphas[i] = pairs[i].Rho * Dot(pairs[i].S, q);
            Axpy(-alphas[i], pairs[i].Y, q);
        }
        if (pairs.Count > 0)
        {
            var (s, y, _) = pairs[^1];
            double scale = Dot(s, y) / Dot(y, y);
            for (int j = 0; j < q.Length; j++) q[j] *= scale;
        }
        for (int i = 0; i < pairs.Count; i++)
            Axpy(alphas[i] - pairs[i].Rho * Dot(pairs[i].Y, q), pairs[i].S, q);
        for (int j = 0; j < q.Length; j++) q[j] = -q[j];
        return q;
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>y += a·x.</summary>
    private static void Axpy(double a, double[] x, double[] y)
    {
        for (int i = 0; i < y.Length; i++) y[i] += a * x[i];
    }

    /// <summary>
    /// The objective and its gradient at a point, summed over the training rows chunk by chunk: held in float64 when they
    /// are few (<see cref="HeldValues"/>), else read from <see cref="FeatureRows"/> at each evaluation. It is evaluated on
    /// standardised features (each centred and scaled to unit deviation), the head's weights scaled to match and the weight
    /// decay charged on the original weights: the same objective at the same optimum, but far better conditioned (features
    /// after a ReLU are all positive and of unequal scales), so L-BFGS needs a fraction of the iterations.
    /// </summary>
    private sealed class Objective : IDisposable
    {
        private readonly FeatureRows _features;
        private readonly int _classes, _dimension;
        private readonly double _labelSmoothing, _weightDecay, _normaliser;
        private readonly Tensor? _classWeights;
        private readonly List<(int Start, int End, Tensor Targets)> _chunks = [];
        private readonly List<Tensor>? _held;
        private readonly double[] _mean, _deviation;
        private readonly Tensor _mean64, _deviation64;

        public Objective(FeatureRows features, IReadOnlyList<int> labels, int classes, TrainingOptions options, double weightDecay)
        {
            (_features, _classes, _labelSmoothing, _weightDecay) = (features, classes, options.LabelSmoothing, weightDecay);
            using (var first = features.Range(0, 1)) _dimension = (int)(first.numel() / first.shape[0]);
            for (int start = 0; start < labels.Count; start += RowsPerChunk)
            {
                int end = Math.Min(labels.Count, start + RowsPerChunk);
                _chunks.Add((start, end, tensor(labels.Skip(start).Take(end - start).Select(l => (long)l).ToArray()).DetachFromDisposeScope()));
            }
            (_mean, _deviation) = Moments(features, labels.Count, _dimension);
            _mean64 = tensor(_mean).DetachFromDisposeScope();
            _deviation64 = tensor(_deviation).DetachFromDisposeScope();
            if ((long)labels.Count * _dimension <= HeldValues)
                _held = [.. _chunks.Select(c => Rows(c.Start, c.End).DetachFromDisposeScope())];
            if (options.ClassWeightedLoss)
            {
                _classWeights = StackedHeads.ClassWeights(labels, classes).to(float64).DetachFromDisposeScope();
                var perClass = _classWeights.data<double>().ToArray();
                // PyTorch's mean over weighted rows divides by the rows' weights summed: so does the sum over chunks here.
                _normaliser = labels.Sum(l => perClass[l]);
            }
            else
            {
                _normaliser = labels.Count;
            }
        }

        public int Size => _classes * _dimension + _classes;

        public (double Loss, double[] Gradient) Evaluate(double[] point)
        {
            using var scope = NewDisposeScope();
            var x = tensor(point).requires_grad_(true);
            int weights = _classes * _dimension;
            var weight = x[..weights].view(_classes, _dimension);
            var bias = x[weights..];
            double loss = 0;
            for (int i = 0; i < _chunks.Count; i++)
            {
                using var chunkScope = NewDisposeScope();
                var (start, end, targets) = _chunks[i];
                var rows = _held?[i] ?? Rows(start, end);
                var chunk = nn.functional.cross_entropy(rows.matmul(weight.t()) + bias, targets, weight: _classWeights,
                    reduction: nn.Reduction.Sum, label_smoothing: _labelSmoothing) / _normaliser;
                chunk.backward();
                loss += chunk.item<double>();
            }
            var penalty = _weightDecay / 2 * (weight / _deviation64).square().sum();
            penalty.backward();
            loss += penalty.item<double>();
            return (loss, x.grad!.data<double>().ToArray());
        }

        private Tensor Rows(int start, int end) => (_features.Range(start, end).flatten(1).to(float64) - _mean64) / _deviation64;

        /// <summary>Each feature's mean and standard deviation over the rows (1 where it is constant), in float64.</summary>
        private static (double[] Mean, double[] Deviation) Moments(FeatureRows features, int count, int dimension)
        {
            using var scope = NewDisposeScope();
            var sum = zeros(dimension, dtype: float64);
            var squares = zeros(dimension, dtype: float64);
            for (int start = 0; start < count; start += RowsPerChunk)
            {
                using var chunkScope = NewDisposeScope();
                var rows = features.Range(start, Math.Min(count, start + RowsPerChunk)).flatten(1).to(float64);
                sum.add_(rows.sum(0));
                squares.add_(rows.square().sum(0));
            }
            var mean = sum / count;
            var deviation = (squares / count - mean.square()).clamp_min(0).sqrt();
            deviation = where(deviation > 1e-12, deviation, ones_like(deviation));
            return (mean.data<double>().ToArray(), deviation.data<double>().ToArray());
        }

        /// <summary>A head in the original coordinates (W, b) in the standardised ones: W' = W·σ, b' = b + W·μ.</summary>
        public double[] ToStandardised(double[] head)
        {
            var result = (double[])head.Clone();
            for (int k = 0; k < _classes; k++)
            {
                for (int j = 0; j < _dimension; j++)
                {
                    double w = head[k * _dimension + j];
                    result[k * _dimension + j] = w * _deviation[j];
                    result[_classes * _dimension + k] += w * _mean[j];
                }
            }
            return result;
        }

        /// <summary>The inverse of <see cref="ToStandardised"/>: W = W'/σ, b = b' − W'·(μ/σ).</summary>
        public double[] FromStandardised(double[] head)
        {
            var result = (double[])head.Clone();
            for (int k = 0; k < _classes; k++)
            {
                for (int j = 0; j < _dimension; j++)
                {
                    double w = head[k * _dimension + j] / _deviation[j];
                    result[k * _dimension + j] = w;
                    result[_classes * _dimension + k] -= w * _mean[j];
                }
            }
            return result;
        }

        public void Dispose()
        {
            foreach (var chunk in _chunks) chunk.Targets.Dispose();
            foreach (var rows in _held ?? []) rows.Dispose();
            _classWeights?.Dispose();
            _mean64.Dispose();
            _deviation64.Dispose();
        }
    }
}
