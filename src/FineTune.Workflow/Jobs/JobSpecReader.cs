using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using FineTune.Storage;

namespace FineTune.Workflow.Jobs;

/// <summary>A problem with one field of a job spec: the JSON path and what is wrong.</summary>
public sealed record FieldError(string Field, string Reason)
{
    public override string ToString() => $"{Field}: {Reason}";
}

/// <summary>A job spec that cannot run, with every field error.</summary>
public sealed class InvalidJobSpecException(IReadOnlyList<FieldError> errors)
    : BadInputException("invalid job spec: " + string.Join("; ", errors))
{
    public IReadOnlyList<FieldError> Errors { get; } = errors;
}

/// <summary>Reads and validates job specs, reporting every bad field at once, before any work starts.</summary>
public static class JobSpecReader
{
    /// <summary>A job spec is a few hundred bytes; a request body past this is refused unread.</summary>
    public const int MaxBytes = 1024 * 1024;

    /// <summary>Parses and validates; throws <see cref="InvalidJobSpecException"/> listing every problem.</summary>
    /// <param name="localPaths">whether datasets and weights may be local paths (the command line) or must be in the artifact store (the service)</param>
    public static JobSpec Read(string json, bool localPaths)
    {
        var errors = new List<FieldError>();
        JobSpec? spec;
        try
        {
            spec = JsonSerializer.Deserialize<JobSpec>(json, WireJson.Options);
        }
        catch (JsonException e)
        {
            spec = ReadOtherFields(json, e, errors) ?? throw new InvalidJobSpecException(Listed(errors));
        }
        if (spec is null) throw new InvalidJobSpecException([new FieldError("$", "the job spec is empty")]);
        errors.AddRange(Validate(spec, localPaths));
        if (errors.Count > 0) throw new InvalidJobSpecException(Listed(errors));
        return spec with { JobId = spec.JobId ?? DeriveJobId(spec) };
    }

    public static IReadOnlyList<FieldError> Validate(JobSpec spec, bool localPaths)
    {
        var errors = new List<FieldError>();
        void Check(bool ok, string field, string reason) { if (!ok) errors.Add(new FieldError(field, reason)); }

        Check(spec.Version == JobSpec.CurrentVersion, "version", $"must be {JobSpec.CurrentVersion}");
        Check(spec.JobId is null || ArtifactNames.IsValidJobId(spec.JobId), "jobId", ArtifactNames.JobIdRule);
        var family = ModelRegistry.Families.FirstOrDefault(f => f.Name == spec.Model);
        Check(family is not null, "model", $"unknown model family '{spec.Model}'; known: {string.Join(", ", ModelRegistry.Families.Select(f => f.Name))}");

        string source = spec.Weights?.Source ?? "";
        if (source == WeightsFetcher.Bundled)
            Check(family is null || family.HasBundledWeights, "weights.source", $"{spec.Model} has no bundled weights; give {Named(spec.Model)}{BlobReference.Syntax} or an https URL");
        else if (TorchvisionWeights.IsName(source))
            Check(family is null || TorchvisionWeights.Resolve(family.Name, source) is not null, "weights.source",
                family?.HasBundledWeights == true ? $"{spec.Model} has no torchvision weights; its own are 'bundled'" : $"{spec.Model} has no torchvision weights named '{source}'; it has {TorchvisionWeights.NamesFor(spec.Model)}");
        else if (BlobReference.IsBlob(source))
            Check(IsArtifactName(BlobReference.Name(source)), "weights.source", $"{BlobReference.Syntax} needs a valid artifact name");
        else if (Uri.TryCreate(source, UriKind.Absolute, out var uri) && uri.Scheme is "https" or "http")
            Check(uri.Scheme == "https", "weights.source", "downloads must use https");
        else
            Check(localPaths && source.Length > 0, "weights.source", localPaths ? "is required" : $"must be 'bundled', '{TorchvisionWeights.Default}' (or a torchvision tag), {BlobReference.Syntax} or an https URL");
        Check(spec.Weights?.Sha256 is null || IsSha256(spec.Weights.Sha256), "weights.sha256", "must be 64 hex digits");

        var dataset = spec.Dataset ?? new DatasetSpec();
        if (BlobReference.IsBlob(dataset.Location))
            Check(IsArtifactName(BlobReference.Name(dataset.Location).TrimEnd('/')), "dataset.location", $"{BlobReference.Syntax} needs a valid artifact name");
        else
            Check(localPaths && dataset.Location.Length > 0, "dataset.location", localPaths ? "is required: a folder of class folders, a .zip, a .csv or a .jsonl" : $"must be {BlobReference.Prefix}PREFIX/, {BlobReference.Syntax}.zip, {BlobReference.Syntax}.csv or {BlobReference.Syntax}.jsonl");
        bool validationFraction = dataset.ValidationFraction is >= 0 and < 1, testFraction = dataset.TestFraction is >= 0 and < 1;
        Check(validationFraction, "dataset.validationFraction", "must be in [0, 1)");
        Check(testFraction, "dataset.testFraction", "must be in [0, 1)");
        // Checked only when both are in range, so one mistake is reported once.
        Check(!validationFraction || !testFraction || dataset.ValidationFraction + dataset.TestFraction < 1,
            "dataset.testFraction", "validationFraction + testFraction must be below 1: training needs the rest");
        Check(dataset.MaxBadFraction is >= 0 and <= 1, "dataset.maxBadFraction", "must be in [0, 1]");
        Check(dataset.Classes is null || (dataset.Classes.Count >= 2 && dataset.Classes.Distinct().Count() == dataset.Classes.Count),
            "dataset.classes", "must list at least two distinct classes");

        Check(spec.HeadDropout is >= 0 and < 1, "headDropout", "must be in [0, 1)");

        var t = spec.Training ?? new TrainingSpec();
        Check(t.Epochs is >= 1 and <= 10_000, "training.epochs", "must be 1-10000");
        // Training backbone stages keeps every image's activations for the backward pass (tens of MB each at 224 px):
        // a batch past this takes more memory than a worker has. The head alone trains on features, a few KB each.
        bool trainsBackbone = spec.Freeze.TrainableStages > 0;
        int maxBatch = trainsBackbone ? JobSpec.MaxBackboneBatchSize : JobSpec.MaxHeadBatchSize;
        Check(t.BatchSize >= 1 && t.BatchSize <= maxBatch, "training.batchSize",
            $"must be 1-{maxBatch}{(trainsBackbone ? $" when backbone stages train (freeze: {spec.Freeze})" : "")}");
        Check(t.LearningRate is > 0 and <= 10, "training.learningRate", "must be in (0, 10]");
        Check(t.Momentum is >= 0 and < 1, "training.momentum", "must be in [0, 1)");
        Check(t.WeightDecay >= 0, "training.weightDecay", "must be >= 0");
        Check(t.StepEpochs >= 1, "training.stepEpochs", "must be >= 1");
        Check(t.Gamma is > 0 and <= 1, "training.gamma", "must be in (0, 1]");
        Check(t.WarmupSteps >= 0, "training.warmupSteps", "must be >= 0");
        Check(t.LabelSmoothing is >= 0 and < 1, "training.labelSmoothing", "must be in [0, 1)");
        Check(t.GradientClipNorm is null or > 0, "training.gradientClipNorm", "must be > 0");
        // Bounded so a chunk (one activity call, one retry unit) stays minutes long, not hours.
        Check(t.MaxStepsPerChunk is >= 1 and <= TrainingSpec.MaxStepsPerChunkLimit, "training.maxStepsPerChunk", $"must be 1-{TrainingSpec.MaxStepsPerChunkLimit}");
        Check(!t.Nesterov || t.Optimizer == OptimizerKind.Sgd && t.Momentum > 0, "training.nesterov", "needs sgd with momentum > 0");
        if (t.EarlyStopping is { } stopping)
            Check(stopping.Patience >= 1, "training.earlyStopping.patience", "must be >= 1");
        if (t.Augmentation is { } augmentation)
        {
            const string prefix = "training.augmentation.";
            Check(augmentation.ColorJitter is >= 0 and < 1, prefix + "colorJitter", "must be in [0, 1)");
            Check(augmentation.Hflip is >= 0 and <= 1, prefix + "hflip", "must be in [0, 1]");
            if (augmentation.AutoAugment is { } policy)
            {
                try { AutoAugment.Parse(policy); }
                catch (FormatException e) { Check(false, prefix + "autoAugment", e.Message); }
            }
            Check(IsRange(augmentation.Scale, 1), prefix + "scale", "must be [min, max] with 0 < min <= max <= 1");
            Check(IsRange(augmentation.Ratio, double.MaxValue), prefix + "ratio", "must be [min, max] with 0 < min <= max");
            Check(augmentation.Reprob is >= 0 and <= 1, prefix + "reprob", "must be in [0, 1]");
            Check(augmentation.Mixup is >= 0 and <= 100, prefix + "mixup", "must be in [0, 100] (Beta's alpha; 0 is off)");
            Check(augmentation.Cutmix is >= 0 and <= 100, prefix + "cutmix", "must be in [0, 100] (Beta's alpha; 0 is off)");
            Check(augmentation.MixupProb is >= 0 and <= 1, prefix + "mixupProb", "must be in [0, 1]");
            Check(augmentation.MixupSwitchProb is >= 0 and <= 1, prefix + "mixupSwitchProb", "must be in [0, 1]");
        }
        // Asked for by name where it cannot apply, it would be silently left out.
        Check(t.ConvexHead != true || spec.Freeze == FreezeMode.Head && t.FeatureCache && t.Augmentation is null, "training.convexHead",
            "applies only where the head alone trains on cached features: freeze head, featureCache on, no augmentation");
        Check(t.EarlyStopping is null || t.BestEpochMetric is null || t.EarlyStopping.Metric == t.BestEpochMetric,
            "training.bestEpochMetric", "must be training.earlyStopping.metric when both are given: one metric picks the best epoch");
        errors.AddRange(SweepPlanner.Validate(spec, localPaths));
        return errors;
    }

    /// <summary>Absent, or [min, max] with 0 &lt; min &lt;= max &lt;= <paramref name="limit"/>.</summary>
    private static bool IsRange(double[]? range, double limit) => range is null || range is [var low, var high] && low > 0 && low <= high && high <= limit;

    /// <summary>"ft-" and 12 hex digits of the spec's hash: the same spec posted twice names the same run.</summary>
    public static string DeriveJobId(JobSpec spec) => "ft-" + Hash(spec)[..12];

    /// <summary>SHA-256 of the spec's JSON without its job id (nor its schema link): what a job id is bound to.</summary>
    public static string Hash(JobSpec spec) =>
        Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(spec with { JobId = null, Schema = null }, WireJson.Options)));

    /// <summary>"'torchvision', " where the family has torchvision weights: the names to suggest first.</summary>
    private static string Named(string family) => TorchvisionWeights.Resolve(family, TorchvisionWeights.Default) is null ? "" : $"'{TorchvisionWeights.Default}', ";

    private static bool IsArtifactName(string name)
    {
        try { ArtifactNames.Require(name); return true; }
        catch (ArgumentException) { return false; }
    }

    private static bool IsSha256(string value)
    {
        string hex = value.StartsWith("sha256:", StringComparison.OrdinalIgnoreCase) ? value[7..] : value;
        return hex.Length == 64 && hex.All(Uri.IsHexDigit);
    }

    private static FieldError Error(JsonException e)
    {
        string field = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "$" : e.Path.TrimStart('$', '.');
        if (e.Message.Contains("could not be mapped", StringComparison.Ordinal)) return new FieldError(field, "unknown field");
        // The serializer's own message names a CLR type (System.Int32); the field's type says it in the user's terms.
        return new FieldError(field, Expected(FieldType(field)) ?? e.Message.Split(" Path:", 2)[0]);
    }

    /// <summary>The type of the field at a path (a.b), as the serializer matches names; null for array items or no such field.</summary>
    private static Type? FieldType(string field)
    {
        Type? type = typeof(JobSpec);
        foreach (string name in field.Split('.'))
            type = type is null ? null : WireJson.Options.GetTypeInfo(type).Properties.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))?.PropertyType;
        return type;
    }

    private static string? Expected(Type? type) => (type is null ? null : Nullable.GetUnderlyingType(type) ?? type) switch
    {
        null => null,
        var t when t == typeof(int) || t == typeof(long) => "must be a whole number",
        var t when t == typeof(double) || t == typeof(float) => "must be a number",
        var t when t == typeof(bool) => "must be true or false",
        var t when t == typeof(string) => "must be a string",
        var t when t == typeof(IReadOnlyList<string>) => "must be a list of strings",
        var t when t == typeof(double[]) => "must be a list of numbers",
        var t when t.IsClass && WireJson.Options.GetTypeInfo(t).Kind == JsonTypeInfoKind.Object => "must be an object",
        _ => null,
    };

    /// <summary>Errors listed in one refusal: enough to fix a spec by hand; a spec of thousands of bad fields is not one to fix field by field.</summary>
    public const int MaxListedErrors = 100;

    /// <summary>The first <see cref="MaxListedErrors"/> errors, and how many more there are.</summary>
    private static List<FieldError> Listed(List<FieldError> errors) => errors.Count <= MaxListedErrors
        ? errors
        : [.. errors.Take(MaxListedErrors), new FieldError("$", $"and {errors.Count - MaxListedErrors} more errors")];

    /// <summary>
    /// The serializer stops at the first field it rejects. Unknown fields are found in one walk of the document against
    /// the spec's types and dropped, so a spec of 64k of them costs one parse, not one per field (which took 93 s for
    /// 693 KB). Each remaining rejected field (a wrong type, an unknown choice) is reported and dropped and the rest
    /// read again: at most once per known field, so every bad field is reported at once. Null when the rest cannot be
    /// read that way.
    /// </summary>
    private static JobSpec? ReadOtherFields(string json, JsonException first, List<FieldError> errors)
    {
        try
        {
            var node = JsonNode.Parse(json);
            int before = errors.Count;
            DropUnknown(node, typeof(JobSpec), "", errors);
            string? badPath = null;
            if (errors.Count == before)
            {
                errors.Add(Error(first));
                badPath = first.Path;
            }
            while (badPath is null || Remove(node, badPath))
            {
                try
                {
                    return node.Deserialize<JobSpec>(WireJson.Options);
                }
                catch (JsonException e)
                {
                    errors.Add(Error(e));
                    badPath = e.Path;
                }
            }
            return null;
        }
        // Not JSON at all, or a property named twice, which the serializer reads (the last wins) but the DOM refuses.
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            if (errors.Count == 0) errors.Add(Error(first));
            return null;
        }
    }

    /// <summary>
    /// Drops every property of <paramref name="node"/> (and of its nested objects and their lists) that
    /// <paramref name="type"/> does not have, as the serializer matches names, reporting each at its path (a.b, a.list[2].c).
    /// </summary>
    private static void DropUnknown(JsonNode? node, Type type, string path, List<FieldError> errors)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        var info = WireJson.Options.GetTypeInfo(type);
        if (info.Kind == JsonTypeInfoKind.Enumerable && node is JsonArray items && info.ElementType is { } element)
        {
            for (int i = 0; i < items.Count; i++) DropUnknown(items[i], element, $"{path}[{i}]", errors);
            return;
        }
        if (info.Kind == JsonTypeInfoKind.Dictionary && node is JsonObject entries && info.ElementType is { } value)
        {
            foreach (var (key, child) in entries) DropUnknown(child, value, Join(path, key), errors);
            return;
        }
        if (info.Kind != JsonTypeInfoKind.Object || node is not JsonObject obj) return;
        var comparison = WireJson.Options.PropertyNameCaseInsensitive ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;
        var known = new Dictionary<string, Type>(comparison);
        foreach (var property in info.Properties) known.TryAdd(property.Name, property.PropertyType);
        var kept = new List<KeyValuePair<string, JsonNode?>>();
        foreach (var (name, child) in obj)
        {
            if (known.TryGetValue(name, out var childType))
            {
                DropUnknown(child, childType, Join(path, name), errors);
                kept.Add(new(name, child));
            }
            else errors.Add(new FieldError(Join(path, name), "unknown field"));
        }
        if (kept.Count == obj.Count) return;
        // Cleared and refilled: removing fields one by one shifts the rest each time, quadratic again.
        obj.Clear();
        foreach (var field in kept) obj.Add(field);
    }

    private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    /// <summary>Drops the property at a serializer path ($.a.b); false when there is none to drop (the root, an array item).</summary>
    private static bool Remove(JsonNode? node, string? path)
    {
        if (path is null || !path.StartsWith("$.", StringComparison.Ordinal)) return false;
        string[] names = path[2..].Split('.');
        if (names.Any(name => name.Length == 0 || name.Contains('[') || name.Contains('\''))) return false;
        foreach (var name in names[..^1]) node = (node as JsonObject)?[name];
        return node is JsonObject parent && parent.Remove(names[^1]);
    }
}
