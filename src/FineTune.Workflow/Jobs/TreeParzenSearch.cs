using System.Text.Json;

namespace FineTune.Workflow.Jobs;

/// <summary>
/// The Tree-structured Parzen Estimator (Bergstra et al., 2011) as Optuna's TPESampler runs it by default: each
/// parameter on its own; the scored trials split into the better γ(n) = min(⌈n/10⌉, 25) and the rest; a Parzen
/// density over each set (a truncated normal per trial, its width the larger gap to its neighbours, clipped, plus a
/// prior kernel of weight 1; older trials past the newest 25 weigh less); of 24 draws from the better set's density,
/// the one with the highest ratio to the rest's is proposed. Plain double arithmetic (<see cref="PortableMath"/>) and
/// seeded draws, so a replay on any machine proposes the same values.
/// </summary>
internal static class TreeParzenSearch
{
    private const int Candidates = 24;
    private const int FullWeightTrials = 25;
    private const double PriorWeight = 1;

    /// <summary>Trials drawn from the prior before the model has results to go on: Optuna's 10, fewer for small budgets.</summary>
    public static int StartupTrials(int maxTrials) => Math.Clamp(maxTrials / 4, 5, 10);

    /// <summary>One uniform draw per parameter (log-uniform for log ranges), in the order given.</summary>
    public static Dictionary<string, JsonElement> Prior(IReadOnlyList<(string Key, Dimension Dimension)> space, Random random)
    {
        var values = new Dictionary<string, JsonElement>();
        foreach (var (key, dimension) in space) values[key] = dimension.Prior(random);
        return values;
    }

    /// <summary>The values TPE proposes given the scored trials (at least one; higher scores are better).</summary>
    public static Dictionary<string, JsonElement> Suggest(IReadOnlyList<(string Key, Dimension Dimension)> space, IReadOnlyList<ObservedTrial> scored, Random random)
    {
        // Best first, ties to the earlier trial, so the split does not depend on the order results arrived in.
        var ranked = scored.OrderByDescending(t => t.Score!.Value).ThenBy(t => t.Index).ToList();
        int better = Math.Min((ranked.Count + 9) / 10, FullWeightTrials);
        var below = ranked.Take(better).OrderBy(t => t.Index).ToList();
        var above = ranked.Skip(better).OrderBy(t => t.Index).ToList();
        var values = new Dictionary<string, JsonElement>();
        foreach (var (key, dimension) in space)
            values[key] = dimension.Suggest(Observed(below, key), Observed(above, key), random);
        return values;
    }

    private static List<JsonElement> Observed(List<ObservedTrial> trials, string key) =>
        [.. trials.Where(t => t.Parameters.ContainsKey(key)).Select(t => t.Parameters[key])];

    /// <summary>
    /// Optuna's default_weights: 1 for each of the newest 25 observations (given oldest first), older ones ramping
    /// from 1/n up; then the prior's weight; normalised, as logarithms.
    /// </summary>
    private static double[] LogWeights(int n)
    {
        int ramp = n - FullWeightTrials;
        var weights = new double[n + 1];
        for (int i = 0; i < n; i++)
            weights[i] = i >= ramp ? 1 : ramp == 1 ? 1.0 / n : 1.0 / n + i * (1 - 1.0 / n) / (ramp - 1);
        weights[n] = PriorWeight;
        // Added in order: Enumerable.Sum may vectorise, and the grouping of a floating-point sum changes its last bits.
        double total = 0;
        foreach (double weight in weights) total += weight;
        return [.. weights.Select(w => PortableMath.Log(w / total))];
    }

    private static int Pick(double[] cumulative, Random random)
    {
        double u = random.NextDouble() * cumulative[^1];
        int i = 0;
        while (i < cumulative.Length - 1 && u >= cumulative[i]) i++;
        return i;
    }

    private static double[] Cumulative(IEnumerable<double> probabilities)
    {
        double sum = 0;
        return [.. probabilities.Select(p => sum += p)];
    }

    /// <summary>One swept field as TPE sees it: a list is categorical, a range numeric.</summary>
    internal abstract class Dimension
    {
        public static Dimension Of(SweepParameter parameter) =>
            parameter.Values is { } values ? new Categorical(values) : new Numeric(parameter);

        /// <summary>How many distinct values it has; <see cref="long.MaxValue"/> for a continuous range.</summary>
        public abstract long Size { get; }

        /// <summary>Its <paramref name="index"/>-th value, for a finite one.</summary>
        public abstract JsonElement At(long index);

        public abstract JsonElement Prior(Random random);

        public abstract JsonElement Suggest(IReadOnlyList<JsonElement> better, IReadOnlyList<JsonElement> worse, Random random);
    }

    private sealed class Categorical(IReadOnlyList<JsonElement> values) : Dimension
    {
        public override long Size => values.Count;

        public override JsonElement At(long index) => values[(int)index];

        public override JsonElement Prior(Random random) => values[random.Next(values.Count)];

        public override JsonElement Suggest(IReadOnlyList<JsonElement> better, IReadOnlyList<JsonElement> worse, Random random)
        {
            var below = Probabilities(better);
            var above = Probabilities(worse);
            var cumulative = Cumulative(below);
            int best = -1;
            double bestScore = 0;
            for (int i = 0; i < Candidates; i++)
            {
                int choice = Pick(cumulative, random);
                double score = PortableMath.Log(below[choice]) - PortableMath.Log(above[choice]);
                if (best < 0 || score > bestScore) (best, bestScore) = (choice, score);
            }
            return values[best];
        }

        /// <summary>
        /// Optuna's categorical Parzen estimator, which is one distribution over the choices: each observation's kernel
        /// puts prior/(n + 1) on every choice and 1 more on its own, normalised; the prior's kernel is uniform.
        /// </summary>
        private double[] Probabilities(IReadOnlyList<JsonElement> observed)
        {
            var chosen = observed.Select(IndexOf).Where(i => i >= 0).ToArray();
            int n = chosen.Length, choices = values.Count;
            var logWeights = LogWeights(n);
            double share = PriorWeight / (n + 1), rowSum = choices * share + 1;
            var probabilities = new double[choices];
            for (int c = 0; c < choices; c++)
                probabilities[c] = PortableMath.Exp(logWeights[n]) / choices;
            for (int k = 0; k < n; k++)
            {
                double weight = PortableMath.Exp(logWeights[k]);
                for (int c = 0; c < choices; c++)
                    probabilities[c] += weight * (share + (chosen[k] == c ? 1 : 0)) / rowSum;
            }
            return probabilities;
        }

        /// <summary>The value's place in the list; numbers compare by value, so a round trip that rewrites 1.0 as 1 still matches.</summary>
        private int IndexOf(JsonElement value)
        {
            for (int i = 0; i < values.Count; i++)
            {
                var candidate = values[i];
                bool same = candidate.ValueKind == value.ValueKind && (value.ValueKind == JsonValueKind.Number
                    ? candidate.GetDouble() == value.GetDouble()
                    : candidate.GetRawText() == value.GetRawText());
                if (same) return i;
            }
            return -1;
        }
    }

    /// <summary>
    /// A range, modelled where it is uniform: on a log scale for log ranges. Whole numbers are a grid of step 1
    /// (on a log scale, a continuous range from min − ½ to max + ½, rounded), as Optuna's IntDistribution.
    /// </summary>
    private sealed class Numeric : Dimension
    {
        private readonly SweepParameter _parameter;
        private readonly double _low, _high, _step;

        public Numeric(SweepParameter parameter)
        {
            _parameter = parameter;
            (_low, _high, _step) = (parameter.WholeNumbers, parameter.Log) switch
            {
                (false, false) => (parameter.Min, parameter.Max, 0.0),
                (false, true) => (PortableMath.Log(parameter.Min), PortableMath.Log(parameter.Max), 0.0),
                (true, false) => (parameter.Min, parameter.Max, 1.0),
                (true, true) => (PortableMath.Log(parameter.Min - 0.5), PortableMath.Log(parameter.Max + 0.5), 0.0),
            };
        }

        public override long Size =>
            _parameter.WholeNumbers ? (long)Math.Min(_parameter.Max - _parameter.Min + 1, long.MaxValue) : _parameter.Min == _parameter.Max ? 1 : long.MaxValue;

        public override JsonElement At(long index) => External(_parameter.WholeNumbers ? _parameter.Min + index : _parameter.Min);

        public override JsonElement Prior(Random random) =>
            _parameter.WholeNumbers && !_parameter.Log
                ? External(random.NextInt64((long)_parameter.Min, (long)_parameter.Max + 1))
                : FromModel(_low + random.NextDouble() * (_high - _low));

        public override JsonElement Suggest(IReadOnlyList<JsonElement> better, IReadOnlyList<JsonElement> worse, Random random)
        {
            if (Size == 1) return At(0);
            var below = new Parzen(ToModel(better), _low, _high, _step);
            var above = new Parzen(ToModel(worse), _low, _high, _step);
            JsonElement best = default;
            double bestScore = double.NegativeInfinity;
            for (int i = 0; i < Candidates; i++)
            {
                var candidate = FromModel(below.Sample(random));
                double x = ToModel(candidate);
                double score = below.LogDensity(x) - above.LogDensity(x);
                if (i == 0 || score > bestScore) (best, bestScore) = (candidate, score);
            }
            return best;
        }

        private double[] ToModel(IReadOnlyList<JsonElement> observed) =>
            [.. observed.Where(v => v.ValueKind == JsonValueKind.Number).Select(ToModel)];

        private double ToModel(JsonElement value)
        {
            double v = Math.Clamp(value.GetDouble(), _parameter.Min, _parameter.Max);
            return _parameter.Log ? PortableMath.Log(v) : v;
        }

        private JsonElement FromModel(double x) => External(_parameter.Log ? PortableMath.Exp(x) : x);

        /// <summary>As the job gets it: a whole number, or four significant digits like random search's draws; inside the range.</summary>
        private JsonElement External(double value) => _parameter.WholeNumbers
            ? SweepPlanner.Number(Math.Clamp(Math.Round(value), _parameter.Min, _parameter.Max), integer: true)
            : SweepPlanner.Number(Math.Clamp(SweepPlanner.FourDigits(value), _parameter.Min, _parameter.Max), integer: false);
    }

    /// <summary>
    /// Optuna's univariate Parzen estimator on [low, high] (a grid of <c>step</c> when it is not 0): a truncated normal
    /// per observation and one for the prior, weighted by <see cref="LogWeights"/>.
    /// </summary>
    private sealed class Parzen
    {
        private const double LogSqrt2Pi = 0.91893853320467274178;
        private readonly double[] _mu, _sigma, _logSigma, _logWeight, _logMass, _cumulative;
        private readonly double _low, _high, _step;

        public Parzen(double[] observations, double low, double high, double step)
        {
            (_low, _high, _step) = (low, high, step);
            int n = observations.Length;
            double span = high - low + step;
            // Each observation's width is its larger gap to a neighbour among the observations, the prior's centre and
            // the range's ends (the outermost take their inner gap), clipped to [span / min(100, n + 2), span].
            var points = observations.Append(0.5 * (low + high)).Select((x, i) => (X: x, I: i)).OrderBy(p => p.X).ThenBy(p => p.I).ToArray();
            var sigma = new double[n + 1];
            for (int j = 0; j < points.Length; j++)
            {
                double left = points[j].X - (j == 0 ? low - step / 2 : points[j - 1].X);
                double right = (j == points.Length - 1 ? high + step / 2 : points[j + 1].X) - points[j].X;
                if (points.Length >= 2 && j == 0) left = 0;
                if (points.Length >= 2 && j == points.Length - 1) right = 0;
                sigma[points[j].I] = Math.Max(left, right);
            }
            double minSigma = span / Math.Min(100.0, n + 2);
            for (int k = 0; k < n; k++) sigma[k] = Math.Clamp(sigma[k], minSigma, span);
            sigma[n] = span;
            _mu = [.. observations, 0.5 * (low + high)];
            _sigma = sigma;
            _logSigma = [.. sigma.Select(PortableMath.Log)];
            _logWeight = LogWeights(n);
            _cumulative = Cumulative(_logWeight.Select(PortableMath.Exp));
            _logMass = [.. Enumerable.Range(0, n + 1).Select(k => PortableMath.Log(Mass(k, low - step / 2, high + step / 2)))];
        }

        private double Mass(int k, double from, double to) => PortableMath.NormalMass((from - _mu[k]) / _sigma[k], (to - _mu[k]) / _sigma[k]);

        public double LogDensity(double x)
        {
            var terms = new double[_mu.Length];
            for (int k = 0; k < _mu.Length; k++)
            {
                double z = (x - _mu[k]) / _sigma[k];
                double log = _step == 0
                    ? -0.5 * z * z - _logSigma[k] - LogSqrt2Pi
                    : PortableMath.Log(Mass(k, x - _step / 2, x + _step / 2));
                terms[k] = _logWeight[k] + log - _logMass[k];
            }
            double max = terms.Max();
            if (double.IsNegativeInfinity(max)) return max;
            double sum = 0;
            foreach (double term in terms) sum += PortableMath.Exp(term - max);
            return max + PortableMath.Log(sum);
        }

        /// <summary>A kernel by weight, then a normal draw (Marsaglia's polar method) until inside the range; on a grid, rounded to it.</summary>
        public double Sample(Random random)
        {
            int k = Pick(_cumulative, random);
            double from = _low - _step / 2, to = _high + _step / 2, x = _mu[k];
            // Each kernel keeps over a third of its mass inside (its centre is inside, its width at most the range's):
            // the bound only stops a pathological loop.
            for (int attempt = 0; attempt < 1000; attempt++)
            {
                double u, v, s;
                do
                {
                    u = 2 * random.NextDouble() - 1;
                    v = 2 * random.NextDouble() - 1;
                    s = u * u + v * v;
                }
                while (s >= 1 || s == 0);
                x = _mu[k] + _sigma[k] * u * Math.Sqrt(-2 * PortableMath.Log(s) / s);
                if (x >= from && x <= to) break;
            }
            x = Math.Clamp(x, from, to);
            return _step == 0 ? x : Math.Clamp(_low + Math.Round((x - _low) / _step) * _step, _low, _high);
        }
    }
}
