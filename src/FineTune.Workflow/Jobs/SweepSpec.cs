using System.Text.Json;
using System.Text.Json.Serialization;
using FineTune.Core;
using FineTune.Core.Training;

namespace FineTune.Workflow.Jobs;

/// <summary>
/// A hyper-parameter sweep: trials that differ from the job spec in the <see cref="Parameters"/> they set (keys are
/// job-spec paths such as <c>training.learningRate</c>), run as one durable fan-out. The trial best on
/// <see cref="Metric"/> (its best epoch on validation) is evaluated on the test split and published.
/// </summary>
public sealed record SweepSpec
{
    /// <summary><see cref="SweepMethods.Choices"/></summary>
    public SweepMethod Method { get; init; } = SweepMethod.Grid;
    public IReadOnlyDictionary<string, SweepParameter> Parameters { get; init; } = new Dictionary<string, SweepParameter>();
    /// <summary>Random and bayesian search run this many trials (fewer where the lists allow fewer distinct ones); a grid may not have more combinations.</summary>
    public int MaxTrials { get; init; } = 20;
    /// <summary>Stacks of trials (or trials that cannot stack) training at once, and a bayesian sweep's trials per round; more workers run more of them.</summary>
    public int Parallelism { get; init; } = 4;
    /// <summary><see cref="StoppingMetrics.Choices"/></summary>
    public StoppingMetric Metric { get; init; } = StoppingMetric.ValidationAccuracy;
    /// <summary>Seeds the random and bayesian searches' draws (the trials' own seed is the job's <c>seed</c>).</summary>
    public long Seed { get; init; }
    public EarlyTerminationSpec? EarlyTermination { get; init; }
}

/// <summary>
/// Poor trials stop at rungs: after <see cref="GraceEpochs"/> epochs, then at twice as many, and so on. At each rung
/// the trials still running are compared by their metric at that epoch.
/// </summary>
public sealed record EarlyTerminationSpec
{
    /// <summary><see cref="TerminationPolicies.Choices"/></summary>
    public TerminationPolicy Policy { get; init; } = TerminationPolicy.Median;
    public int GraceEpochs { get; init; } = 1;
}

/// <summary>
/// One swept field: a list of values to choose from (<c>[0.001, 0.01]</c>, <c>["sgd", "adam"]</c>), or a numeric range
/// (<c>{"min": 0, "max": 0.01}</c>, log-uniform with <c>"log": true</c>; whole numbers when both ends are) for random and bayesian search.
/// </summary>
[JsonConverter(typeof(SweepParameterJson))]
public sealed record SweepParameter(IReadOnlyList<JsonElement>? Values, double Min = 0, double Max = 0, bool Log = false, bool WholeNumbers = false)
{
    public bool IsRange => Values is null;
}

[JsonConverter(typeof(SweepMethodJson))]
public enum SweepMethod { Grid, Random, Bayesian }

public static class SweepMethods
{
    public static readonly ChoiceTable<SweepMethod, Choice<SweepMethod>> Choices = new(
        new(SweepMethod.Grid, "grid", "every combination of the listed values"),
        new(SweepMethod.Random, "random", "maxTrials draws from the lists and ranges"),
        new(SweepMethod.Bayesian, "bayesian", "maxTrials trials, a few drawn at random and the rest where the recorded results promise most, by TPE"));
}

public sealed class SweepMethodJson() : ChoiceJsonConverter<SweepMethod, Choice<SweepMethod>>(SweepMethods.Choices);

[JsonConverter(typeof(TerminationPolicyJson))]
public enum TerminationPolicy { Median, Halving }

public static class TerminationPolicies
{
    public static readonly ChoiceTable<TerminationPolicy, Choice<TerminationPolicy>> Choices = new(
        new(TerminationPolicy.Median, "median", "stop trials below the median of the running ones at each rung"),
        new(TerminationPolicy.Halving, "halving", "keep the better half of the running trials at each rung (successive halving)"));
}

public sealed class TerminationPolicyJson() : ChoiceJsonConverter<TerminationPolicy, Choice<TerminationPolicy>>(TerminationPolicies.Choices);

/// <summary>A list is read as values, an object as a range; anything else fails naming what is allowed.</summary>
public sealed class SweepParameterJson : JsonConverter<SweepParameter>
{
    public override SweepParameter Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var document = JsonDocument.ParseValue(ref reader);
        var root = document.RootElement;
        if (root.ValueKind == JsonValueKind.Array)
        {
            var values = root.EnumerateArray().Select(v => v.Clone()).ToArray();
            if (values.Length == 0) throw new JsonException("must list at least one value");
            if (values.Any(v => v.ValueKind is JsonValueKind.Object or JsonValueKind.Array))
                throw new JsonException("values must be numbers, strings, booleans or null");
            return new SweepParameter(values);
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new JsonException("must be a list of values or a range {\"min\": a, \"max\": b}");
        double? min = null, max = null;
        bool log = false, integer = true;
        foreach (var property in root.EnumerateObject())
        {
            switch (property.Name)
            {
                case "min" when property.Value.ValueKind == JsonValueKind.Number:
                    min = property.Value.GetDouble();
                    integer &= property.Value.TryGetInt64(out _);
                    break;
                case "max" when property.Value.ValueKind == JsonValueKind.Number:
                    max = property.Value.GetDouble();
                    integer &= property.Value.TryGetInt64(out _);
                    break;
                case "log" when property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                    log = property.Value.GetBoolean();
                    break;
                default:
                    throw new JsonException($"a range has numbers min and max and an optional boolean log, not '{property.Name}'");
            }
        }
        if (min is null || max is null) throw new JsonException("a range needs min and max");
        if (!(min <= max)) throw new JsonException("a range needs min <= max");
        if (log && min <= 0) throw new JsonException("a log range needs min > 0");
        return new SweepParameter(null, min.Value, max.Value, log, integer);
    }

    public override void Write(Utf8JsonWriter writer, SweepParameter value, JsonSerializerOptions options)
    {
        if (value.Values is { } values)
        {
            writer.WriteStartArray();
            foreach (var v in values) v.WriteTo(writer);
            writer.WriteEndArray();
            return;
        }
        writer.WriteStartObject();
        if (value.WholeNumbers)
        {
            writer.WriteNumber("min", (long)value.Min);
            writer.WriteNumber("max", (long)value.Max);
        }
        else
        {
            writer.WriteNumber("min", value.Min);
            writer.WriteNumber("max", value.Max);
        }
        if (value.Log) writer.WriteBoolean("log", true);
        writer.WriteEndObject();
    }
}
