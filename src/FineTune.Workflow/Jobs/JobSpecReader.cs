using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using FineTune.Core;
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
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Parses and validates; throws <see cref="InvalidJobSpecException"/> listing every problem.</summary>
    /// <param name="localPaths">whether datasets and weights may be local paths (the command line) or must be in the artifact store (the service)</param>
    public static JobSpec Read(string json, bool localPaths)
    {
        var errors = new List<FieldError>();
        JobSpec? spec;
        try
        {
            spec = JsonSerializer.Deserialize<JobSpec>(json, Json);
        }
        catch (JsonException e)
        {
            errors.Add(Error(e));
            spec = ReadOtherFields(json, e.Path, errors) ?? throw new InvalidJobSpecException(errors);
        }
        if (spec is null) throw new InvalidJobSpecException([new FieldError("$", "the job spec is empty")]);
        errors.AddRange(Validate(spec, localPaths));
        if (errors.Count > 0) throw new InvalidJobSpecException(errors);
        return spec with { JobId = spec.JobId ?? DeriveJobId(spec) };
    }

    public static IReadOnlyList<FieldError> Validate(JobSpec spec, bool localPaths)
    {
        var errors = new List<FieldError>();
        void Check(bool ok, string field, string reason) { if (!ok) errors.Add(new FieldError(field, reason)); }

        Check(spec.Version == JobSpec.CurrentVersion, "version", $"must be {JobSpec.CurrentVersion}");
        Check(spec.JobId is null || ArtifactNames.IsValidJobId(spec.JobId), "jobId", "must be 1-63 lower-case letters, digits or inner hyphens");
        var family = ModelRegistry.Families.FirstOrDefault(f => f.Name == spec.Model);
        Check(family is not null, "model", $"unknown model family '{spec.Model}'; known: {string.Join(", ", ModelRegistry.Families.Select(f => f.Name))}");

        string source = spec.Weights?.Source ?? "";
        if (source == WeightsFetcher.Bundled)
            Check(family is null || family.HasBundledWeights, "weights.source", $"{spec.Model} has no bundled weights; give blob:NAME or an https URL");
        else if (source.StartsWith(WeightsFetcher.BlobPrefix, StringComparison.Ordinal))
            Check(IsArtifactName(source[WeightsFetcher.BlobPrefix.Length..]), "weights.source", "blob:NAME needs a valid artifact name");
        else if (Uri.TryCreate(source, UriKind.Absolute, out var uri) && uri.Scheme is "https" or "http")
            Check(uri.Scheme == "https", "weights.source", "downloads must use https");
        else
            Check(localPaths && source.Length > 0, "weights.source", localPaths ? "is required" : "must be 'bundled', blob:NAME or an https URL");
        Check(spec.Weights?.Sha256 is null || IsSha256(spec.Weights.Sha256), "weights.sha256", "must be 64 hex digits");

        var dataset = spec.Dataset ?? new DatasetSpec();
        if (dataset.Location.StartsWith(WeightsFetcher.BlobPrefix, StringComparison.Ordinal))
            Check(IsArtifactName(dataset.Location[WeightsFetcher.BlobPrefix.Length..].TrimEnd('/')), "dataset.location", "blob:NAME needs a valid artifact name");
        else
            Check(localPaths && dataset.Location.Length > 0, "dataset.location", localPaths ? "is required: a folder of class folders, a .zip or a .csv" : "must be blob:PREFIX/, blob:NAME.zip or blob:NAME.csv");
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
        Check(t.BatchSize is >= 1 and <= 4096, "training.batchSize", "must be 1-4096");
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
            Check(augmentation.ColorJitter is >= 0 and < 1, "training.augmentation.colorJitter", "must be in [0, 1)");
        return errors;
    }

    /// <summary>"ft-" and 12 hex digits of the spec's hash: the same spec posted twice names the same run.</summary>
    public static string DeriveJobId(JobSpec spec) => "ft-" + Hash(spec)[..12];

    /// <summary>SHA-256 of the spec's JSON without its job id: what a job id is bound to.</summary>
    public static string Hash(JobSpec spec) =>
        Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(spec with { JobId = null }, Json)));

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
        string reason = e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "unknown field" : e.Message.Split(" Path:", 2)[0];
        return new FieldError(field, reason);
    }

    /// <summary>
    /// The serializer stops at the first field it rejects (an unknown choice or field, a wrong type): each such field
    /// is reported and dropped, and the rest read again, so every bad field is reported at once. Null when the rest
    /// cannot be read that way.
    /// </summary>
    private static JobSpec? ReadOtherFields(string json, string? badPath, List<FieldError> errors)
    {
        try
        {
            var node = JsonNode.Parse(json);
            while (Remove(node, badPath))
            {
                try
                {
                    return node.Deserialize<JobSpec>(Json);
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
            return null;
        }
    }

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
