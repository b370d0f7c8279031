using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace FineTune.Workflow.Jobs;

/// <summary>
/// One trial of a sweep: its job id (<c>{sweep}-tNN</c>), the values it sets and its full job spec. Trials with the same
/// <see cref="FeatureGroup"/> see the same images through the same frozen backbone, so they share one feature pass.
/// </summary>
public sealed record SweepTrial(int Index, string JobId, IReadOnlyDictionary<string, JsonElement> Parameters, JobSpec Spec, int FeatureGroup);

/// <summary>
/// A trial the sweep has proposed, as <see cref="SweepPlanner.Propose"/> reads it: its index, the values it set and
/// its score, higher being better (the negated loss when the metric is a loss); null while it runs, when it failed or
/// when it recorded no metric.
/// </summary>
public sealed record ObservedTrial(int Index, IReadOnlyDictionary<string, JsonElement> Parameters, double? Score);

/// <summary>
/// Turns a job spec with a <see cref="SweepSpec"/> into its trials, deterministically (the orchestrator replays it), and
/// reports every problem with the sweep as field errors before anything runs.
/// </summary>
public static class SweepPlanner
{
    public const int MaxTrialsLimit = 1000;
    public const int MaxParallelism = 64;
    /// <summary>A trial's id adds "-t" and up to four digits to the sweep's.</summary>
    public const int MaxSweepIdLength = 63 - 6;

    /// <summary>Fields a trial may not set: they name or shape the sweep itself.</summary>
    private static readonly string[] Reserved = ["version", "jobId", "sweep"];

    public static string TrialId(string sweepId, int index, int trials) =>
        $"{TrialPrefix(sweepId)}{index.ToString(new string('0', trials.ToString(CultureInfo.InvariantCulture).Length), CultureInfo.InvariantCulture)}";

    /// <summary>What every trial id of the sweep <paramref name="sweepId"/> starts with.</summary>
    public static string TrialPrefix(string sweepId) => sweepId + "-t";

    /// <summary>A stack of trials trained together (numbered from 1 across the sweep): its checkpoints and its slot.</summary>
    public static string StackId(string sweepId, int stack) => $"{sweepId}-s{stack.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>The run that computes one feature group's backbone features (and holds the dataset's copy) for its trials.</summary>
    public static string FeatureRunId(string sweepId, int group) => $"{sweepId}-f{group}";

    /// <summary>
    /// Every trial of <paramref name="spec"/>'s sweep, which must be valid (<see cref="Validate"/>). A bayesian sweep's
    /// trials depend on the results: its plan is what <see cref="Propose"/> gives with none (prior draws), whose ids
    /// and count are the sweep's but whose values past the first few are not the ones that will run.
    /// </summary>
    public static IReadOnlyList<SweepTrial> Plan(JobSpec spec)
    {
        var sweep = spec.Sweep ?? throw new ArgumentException("the job has no sweep", nameof(spec));
        if (sweep.Method == SweepMethod.Bayesian) return Bayesian(spec, [], int.MaxValue);
        string sweepId = spec.JobId ?? JobSpecReader.DeriveJobId(spec);
        var combinations = Combinations(sweep);
        var groups = new List<string>();
        var trials = new List<SweepTrial>(combinations.Count);
        for (int i = 0; i < combinations.Count; i++)
        {
            string id = TrialId(sweepId, i + 1, combinations.Count);
            var trialSpec = Apply(spec, combinations[i], id);
            trials.Add(new SweepTrial(i + 1, id, combinations[i], trialSpec, Group(groups, trialSpec)));
        }
        return trials;
    }

    /// <summary>
    /// The next <paramref name="count"/> trials, given <paramref name="observed"/>: every trial proposed so far (indices
    /// 1 to observed.Count, in any order), with its score where it has one. The new trials take the indices that
    /// follow; fewer come back when the sweep's trials run out, none once all are proposed. Grid and random give the
    /// next ones of <see cref="Plan"/>, whatever the scores. Bayesian draws from the prior until
    /// <c>clamp(maxTrials / 4, 5, 10)</c> trials have scores, then proposes by TPE from the scored trials (the running
    /// and failed ones only keep their values from being proposed again); it never repeats a trial nor proposes values
    /// that clash as a job (nesterov with adam), and runs <c>maxTrials</c> trials or as many as its lists and whole-number
    /// ranges have combinations. Deterministic: the same spec and observations give the same trials on any machine,
    /// and proposing n trials in one call gives what n calls give, each seeing the trials before as unscored. A
    /// trial's feature group is the place of its feature key among those of trials 1, 2, … in index order: the same
    /// whichever call proposed it, and for grid and random the same as in <see cref="Plan"/>.
    /// </summary>
    public static IReadOnlyList<SweepTrial> Propose(JobSpec spec, IReadOnlyList<ObservedTrial> observed, int count)
    {
        var sweep = spec.Sweep ?? throw new ArgumentException("the job has no sweep", nameof(spec));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var ordered = observed.OrderBy(t => t.Index).ToArray();
        for (int i = 0; i < ordered.Length; i++)
        {
            if (ordered[i].Index != i + 1)
                throw new ArgumentException("observed must be every trial proposed so far, with indices 1 to observed.Count", nameof(observed));
        }
        return sweep.Method == SweepMethod.Bayesian ? Bayesian(spec, ordered, count) : [.. Plan(spec).Skip(ordered.Length).Take(count)];
    }

    /// <summary>
    /// The first <paramref name="count"/> trials as <see cref="Propose"/> gave them, without proposing again (a sweep that
    /// continued as new carries no more): grid and random's are <paramref name="planned"/>'s (<see cref="Plan"/>); a bayesian
    /// sweep's come from <paramref name="values"/>, each trial's in index order, with the ids, specs and feature groups
    /// Propose gave them.
    /// </summary>
    public static IReadOnlyList<SweepTrial> Rebuild(JobSpec spec, IReadOnlyList<SweepTrial> planned, int count,
        IReadOnlyList<IReadOnlyDictionary<string, JsonElement>>? values)
    {
        var sweep = spec.Sweep ?? throw new ArgumentException("the job has no sweep", nameof(spec));
        if (sweep.Method != SweepMethod.Bayesian) return [.. planned.Take(count)];
        if ((values?.Count ?? 0) != count) throw new ArgumentException($"a bayesian sweep's {count} trials need their values", nameof(values));
        var groups = new List<string>();
        return [.. (values ?? []).Select((v, i) =>
        {
            var trialSpec = Apply(spec, v, planned[i].JobId);
            return new SweepTrial(i + 1, planned[i].JobId, v, trialSpec, Group(groups, trialSpec));
        })];
    }

    /// <summary>The feature group of <paramref name="trial"/>: its key's place among <paramref name="groups"/>, which it joins when new.</summary>
    private static int Group(List<string> groups, JobSpec trial)
    {
        string key = FeatureKey(trial);
        int group = groups.IndexOf(key);
        if (group >= 0) return group;
        groups.Add(key);
        return groups.Count - 1;
    }

    private static List<SweepTrial> Bayesian(JobSpec spec, IReadOnlyList<ObservedTrial> observed, int count)
    {
        var sweep = spec.Sweep!;
        string sweepId = spec.JobId ?? JobSpecReader.DeriveJobId(spec);
        var space = sweep.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => (p.Key, Dimension: TreeParzenSearch.Dimension.Of(p.Value))).ToArray();
        var keys = space.Select(p => p.Key).ToArray();
        long size = space.Aggregate(1L, (n, p) => n > long.MaxValue / p.Dimension.Size ? long.MaxValue : n * p.Dimension.Size);
        int budget = (int)Math.Min(sweep.MaxTrials, size);

        var history = new List<ObservedTrial>(observed);
        var groups = new List<string>();
        // Where no swept field decides the features, every trial is in the first trial's group: one key is enough.
        foreach (var trial in keys.Any(ChangesFeatures) ? observed : observed.Take(1)) Group(groups, Apply(spec, trial.Parameters, sweepId));
        var seen = observed.Select(t => Identity(keys, t.Parameters)).ToHashSet(StringComparer.Ordinal);
        bool Fits(IReadOnlyDictionary<string, JsonElement> values) =>
            !seen.Contains(Identity(keys, values)) && Problem(spec, values, localPaths: true) is null;

        var trials = new List<SweepTrial>();
        while (trials.Count < count && history.Count < budget)
        {
            int index = history.Count + 1;
            var random = TrialRandom(sweep.Seed, index);
            var scored = history.Where(t => t.Score is { } score && double.IsFinite(score)).ToList();
            IReadOnlyDictionary<string, JsonElement>? values = null;
            // A repeat or a clash is replaced by prior draws, then by the first free combination of a finite space.
            for (int attempt = 0; attempt <= 50 && values is null; attempt++)
            {
                var candidate = attempt > 0 || scored.Count < TreeParzenSearch.StartupTrials(sweep.MaxTrials)
                    ? TreeParzenSearch.Prior(space, random)
                    : TreeParzenSearch.Suggest(space, scored, random);
                if (Fits(candidate)) values = candidate;
            }
            values ??= FirstFree(space, size, Fits);
            if (values is null) break;

            string id = TrialId(sweepId, index, budget);
            var trialSpec = Apply(spec, values, id);
            trials.Add(new SweepTrial(index, id, values, trialSpec, Group(groups, trialSpec)));
            history.Add(new ObservedTrial(index, values, null));
            seen.Add(Identity(keys, values));
        }
        return trials;
    }

    /// <summary>A trial's draws come from a stream of their own (splitmix64 of the seed and index), so they do not depend on how many draws earlier trials took.</summary>
    private static Random TrialRandom(long seed, int index)
    {
        ulong z = unchecked((ulong)seed + 0x9E3779B97F4A7C15UL * (ulong)index);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return new Random((int)((z ^ (z >> 31)) & int.MaxValue));
    }

    /// <summary>The trial's values in key order; numbers by value, so 1 and 1.0 are one trial.</summary>
    private static string Identity(string[] keys, IReadOnlyDictionary<string, JsonElement> values) => string.Join('\n', keys.Select(key =>
        !values.TryGetValue(key, out var v) ? ""
        : v.ValueKind == JsonValueKind.Number ? v.GetDouble().ToString("R", CultureInfo.InvariantCulture)
        : v.GetRawText()));

    /// <summary>The first combination in grid order (last key fastest) that <paramref name="fits"/>, looking at up to 10,000; none for continuous ranges.</summary>
    private static Dictionary<string, JsonElement>? FirstFree((string Key, TreeParzenSearch.Dimension Dimension)[] space, long size,
        Func<IReadOnlyDictionary<string, JsonElement>, bool> fits)
    {
        if (size == long.MaxValue) return null;
        for (long i = 0; i < Math.Min(size, 10_000); i++)
        {
            var picked = new JsonElement[space.Length];
            long rest = i;
            for (int d = space.Length - 1; d >= 0; d--)
            {
                picked[d] = space[d].Dimension.At(rest % space[d].Dimension.Size);
                rest /= space[d].Dimension.Size;
            }
            var values = space.Select((p, d) => (p.Key, Value: picked[d])).ToDictionary(p => p.Key, p => p.Value);
            if (fits(values)) return values;
        }
        return null;
    }

    /// <summary>Problems with the sweep section, each naming its field; empty when it can run.</summary>
    public static IReadOnlyList<FieldError> Validate(JobSpec spec, bool localPaths)
    {
        var errors = new List<FieldError>();
        if (spec.Sweep is not { } sweep) return errors;
        void Check(bool ok, string field, string reason) { if (!ok) errors.Add(new FieldError(field, reason)); }

        Check(spec.JobId is null || spec.JobId.Length <= MaxSweepIdLength, "jobId", $"a sweep's id must be at most {MaxSweepIdLength} characters: its trials add -tNN");
        Check(sweep.Parameters.Count > 0, "sweep.parameters", "must name at least one job-spec field, e.g. \"training.learningRate\": [0.001, 0.01]");
        Check(sweep.MaxTrials is >= 1 and <= MaxTrialsLimit, "sweep.maxTrials", $"must be 1-{MaxTrialsLimit}");
        Check(sweep.Parallelism is >= 1 and <= MaxParallelism, "sweep.parallelism", $"must be 1-{MaxParallelism}");
        var picks = spec.Training.EarlyStopping?.Metric ?? spec.Training.BestEpochMetric;
        Check(picks is null || picks == sweep.Metric, "sweep.metric",
            "must be the job's training.earlyStopping.metric / bestEpochMetric when given: one metric picks the best epoch and the best trial");
        if (sweep.EarlyTermination is { } termination)
            Check(termination.GraceEpochs >= 1, "sweep.earlyTermination.graceEpochs", "must be >= 1");

        // Each value on its own against the job, so a bad value is named once rather than in every trial that has it.
        foreach (var (path, parameter) in sweep.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            string field = $"sweep.parameters.{path}";
            if (Reserved.Any(r => path == r || path.StartsWith(r + ".", StringComparison.Ordinal)) || path.Split('.').Any(p => p.Length == 0))
            {
                errors.Add(new FieldError(field, $"a sweep sets job-spec fields other than {string.Join(", ", Reserved)}"));
                continue;
            }
            if (parameter.IsRange && sweep.Method == SweepMethod.Grid)
            {
                errors.Add(new FieldError(field, "a grid takes a list of values; ranges are for \"method\": \"random\" or \"bayesian\""));
                continue;
            }
            var candidates = parameter.Values ?? [Number(parameter.Min, parameter.WholeNumbers), Number(parameter.Max, parameter.WholeNumbers)];
            foreach (var value in candidates)
            {
                if (Problem(spec, new Dictionary<string, JsonElement> { [path] = value }, localPaths) is { } problem)
                {
                    errors.Add(new FieldError(field, problem == NotAField ? problem : $"{value.GetRawText()}: {problem}"));
                    break;
                }
            }
        }
        if (errors.Count > 0 || sweep.MaxTrials is < 1 or > MaxTrialsLimit) return errors;

        // Bayesian proposals skip values that clash together: one combination must not.
        if (sweep.Method == SweepMethod.Bayesian)
            return Bayesian(spec, [], 1).Count > 0 ? errors : [new FieldError("sweep.parameters", "no combination of the values is a valid job")];
        if (sweep.Method == SweepMethod.Grid)
        {
            long size = sweep.Parameters.Values.Aggregate(1L, (n, p) => n * p.Values!.Count);
            if (size > sweep.MaxTrials)
                return [new FieldError("sweep.maxTrials", $"the grid has {size} combinations, more than maxTrials ({sweep.MaxTrials}): raise it or list fewer values")];
        }
        // Values valid alone can clash together (nesterov with adam): every trial is checked.
        foreach (var combination in Combinations(sweep))
        {
            if (Problem(spec, combination, localPaths) is { } problem)
                return [new FieldError("sweep.parameters", $"the trial {Describe(combination)} is not a valid job: {problem}")];
        }
        return errors;
    }

    /// <summary>"training.learningRate=0.01, training.optimizer=adam"</summary>
    public static string Describe(IReadOnlyDictionary<string, JsonElement> parameters) =>
        string.Join(", ", parameters.Select(p => $"{p.Key}={Show(p.Value)}"));

    /// <summary>A swept value as people write it: strings without quotes.</summary>
    public static string Show(JsonElement value) => value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();

    private const string NotAField = "not a job-spec field";

    private static string? Problem(JobSpec spec, IReadOnlyDictionary<string, JsonElement> values, bool localPaths)
    {
        JobSpec trial;
        try
        {
            trial = Apply(spec, values, spec.JobId ?? "sweep");
        }
        catch (JsonException e)
        {
            return e.Message.Contains("could not be mapped", StringComparison.Ordinal)
                ? NotAField
                : e.Message.Split(" Path:", 2)[0];
        }
        var errors = JobSpecReader.Validate(trial, localPaths);
        return errors.Count == 0 ? null : string.Join("; ", errors);
    }

    /// <summary>
    /// The job with the trial's values set at their paths, its own id, no sweep, and the sweep's metric picking its best
    /// epoch. Trials compare the recipes they train: none solves its head to the convex optimum (which would be the same
    /// for many) unless the job or the trial's values ask for it (<see cref="TrainingSpec.ConvexHead"/>).
    /// </summary>
    internal static JobSpec Apply(JobSpec spec, IReadOnlyDictionary<string, JsonElement> values, string jobId)
    {
        var metric = spec.Sweep!.Metric;
        var root = JsonSerializer.SerializeToNode(spec with { Sweep = null, JobId = jobId }, WireJson.Options)!.AsObject();
        foreach (var (path, value) in values)
        {
            string[] names = path.Split('.');
            var node = root;
            foreach (var name in names[..^1])
                node = node[name] as JsonObject ?? (JsonObject)(node[name] = new JsonObject());
            node[names[^1]] = JsonNode.Parse(value.GetRawText());
        }
        var trial = root.Deserialize<JobSpec>(WireJson.Options) ?? throw new JsonException("empty trial spec");
        var training = trial.Training with { ConvexHead = trial.Training.ConvexHead ?? false };
        return trial with { Training = training.EarlyStopping is null ? training with { BestEpochMetric = metric } : training };
    }

    /// <summary>
    /// Grid: every combination, the last key (in ordinal order) varying fastest. Random: MaxTrials draws seeded by the
    /// sweep's seed; repeated draws from lists only are skipped, so a small space yields fewer, distinct trials.
    /// </summary>
    private static List<IReadOnlyDictionary<string, JsonElement>> Combinations(SweepSpec sweep)
    {
        var keys = sweep.Parameters.Keys.Order(StringComparer.Ordinal).ToArray();
        var result = new List<IReadOnlyDictionary<string, JsonElement>>();
        if (sweep.Method == SweepMethod.Grid)
        {
            IEnumerable<Dictionary<string, JsonElement>> grid = [new()];
            foreach (var key in keys)
                grid = grid.SelectMany(partial => sweep.Parameters[key].Values!.Select(v => new Dictionary<string, JsonElement>(partial) { [key] = v }));
            result.AddRange(grid);
            return result;
        }
        var random = new Random(unchecked((int)sweep.Seed ^ (int)(sweep.Seed >> 32)));
        var seen = new HashSet<string>();
        for (int draw = 0; result.Count < sweep.MaxTrials && draw < sweep.MaxTrials * 20; draw++)
        {
            var trial = keys.ToDictionary(key => key, key => Draw(sweep.Parameters[key], random));
            if (seen.Add(Describe(trial))) result.Add(trial);
        }
        return result;
    }

    private static JsonElement Draw(SweepParameter parameter, Random random)
    {
        if (parameter.Values is { } values) return values[random.Next(values.Count)];
        if (parameter.WholeNumbers) return Number(random.NextInt64((long)parameter.Min, (long)parameter.Max + 1), integer: true);
        double u = random.NextDouble();
        double value = parameter.Log
            ? Math.Exp(Math.Log(parameter.Min) + u * (Math.Log(parameter.Max) - Math.Log(parameter.Min)))
            : parameter.Min + u * (parameter.Max - parameter.Min);
        return Number(FourDigits(value), integer: false);
    }

    /// <summary>A drawn value to four significant digits: what a person would write, and what the report shows.</summary>
    internal static double FourDigits(double value) =>
        double.Parse(value.ToString("G4", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    internal static JsonElement Number(double value, bool integer) =>
        JsonSerializer.SerializeToElement(integer ? (object)(long)value : value);

    /// <summary>The job-spec fields that decide the images a trial sees and the features the frozen backbone gives them.</summary>
    private static readonly string[] FeaturePaths = ["model", "weights", "dataset", "freeze", "seed", "device", "training.augmentation", "training.featureCache"];

    private static string FeatureKey(JobSpec spec)
    {
        var root = JsonSerializer.SerializeToNode(spec, WireJson.Options);
        return string.Join('\n', FeaturePaths.Select(path => path.Split('.').Aggregate(root, (node, name) => node?[name])?.ToJsonString() ?? "null"));
    }

    /// <summary>Whether setting the field at <paramref name="path"/> can change a trial's <see cref="FeatureKey"/>.</summary>
    private static bool ChangesFeatures(string path) => FeaturePaths.Any(feature =>
        path == feature || path.StartsWith(feature + ".", StringComparison.Ordinal) || feature.StartsWith(path + ".", StringComparison.Ordinal));
}
