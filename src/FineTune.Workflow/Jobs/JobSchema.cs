using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Core.Models;

namespace FineTune.Workflow.Jobs;

/// <summary>
/// The JSON Schema of job files, generated from <see cref="JobSpec"/> as <see cref="JobSpecReader"/> reads it, so
/// editors complete and check job files (<c>"$schema"</c> in a job file names it). Shipped as
/// schemas/job.schema.json and printed by <c>finetune schema</c>.
/// </summary>
public static class JobSchema
{
    public const string FileName = "job.schema.json";
    public const string Dialect = "https://json-schema.org/draft/2020-12/schema";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The schema as shipped: indented, with a final newline.</summary>
    public static string Text() => Generate().ToJsonString(Indented) + "\n";

    public static JsonNode Generate() => WireJson.Options.GetJsonSchemaAsNode(typeof(JobSpec), new JsonSchemaExporterOptions
    {
        TreatNullObliviousAsNonNullable = true,
        TransformSchemaNode = (context, schema) =>
        {
            // Choices and freeze modes are read by their own converters, which the exporter cannot see into.
            if (context.TypeInfo.Converter is IChoiceNames choices)
                schema = new JsonObject { ["type"] = "string", ["enum"] = new JsonArray([.. choices.Names.Select(n => JsonValue.Create(n))]), ["description"] = choices.Described };
            else if (context.TypeInfo.Type == typeof(FreezeMode))
                schema = new JsonObject { ["type"] = "string", ["pattern"] = FreezeMode.Pattern, ["description"] = FreezeMode.Described };
            // The exporter does not look into a dictionary of values read by a custom converter.
            else if (context.TypeInfo.Type == typeof(IReadOnlyDictionary<string, SweepParameter>))
                schema = new JsonObject { ["type"] = "object", ["minProperties"] = 1, ["additionalProperties"] = SweepParameterSchema() };
            // A policy name is a small grammar the exporter sees as a plain string.
            else if (context.PropertyInfo is { Name: "autoAugment" } policy && policy.DeclaringType == typeof(AugmentationSpec))
                schema = new JsonObject { ["type"] = new JsonArray("string", "null"), ["pattern"] = AutoAugment.Pattern, ["description"] = AutoAugment.Grammar };
            // RandomResizedCrop's ranges are pairs.
            if (context.TypeInfo.Type == typeof(double[]) && context.PropertyInfo?.DeclaringType == typeof(AugmentationSpec) && schema is JsonObject pair)
            {
                pair["minItems"] = 2;
                pair["maxItems"] = 2;
            }
            if (schema is JsonObject field && context.PropertyInfo is { } property && Default(property) is { } value)
                field["default"] = value;
            if (context.Path.IsEmpty && schema is JsonObject root)
            {
                var top = new JsonObject { ["$schema"] = Dialect, ["title"] = "FineTune Functions job" };
                foreach (var (key, node) in root.ToList())
                {
                    root.Remove(key);
                    top[key] = node;
                }
                schema = top;
            }
            return schema;
        },
    });

    /// <summary>A field's default as a fresh spec object has it; none for objects, nulls and empty strings (required ones).</summary>
    /// <summary>A swept field: a list of scalar values, or a numeric range (<see cref="SweepParameterJson"/>).</summary>
    private static JsonObject SweepParameterSchema() => new()
    {
        ["description"] = "a list of values to choose from, or a range {min, max[, log]} for random and bayesian search",
        ["oneOf"] = new JsonArray(
            new JsonObject
            {
                ["type"] = "array",
                ["minItems"] = 1,
                ["items"] = new JsonObject { ["type"] = new JsonArray("number", "string", "boolean", "null") },
            },
            new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["min"] = new JsonObject { ["type"] = "number" },
                    ["max"] = new JsonObject { ["type"] = "number" },
                    ["log"] = new JsonObject { ["type"] = "boolean" },
                },
                ["required"] = new JsonArray("min", "max"),
                ["additionalProperties"] = false,
            }),
    };

    private static JsonValue? Default(System.Text.Json.Serialization.Metadata.JsonPropertyInfo property)
    {
        if (property.Get is null || property.DeclaringType.GetConstructor(Type.EmptyTypes) is null) return null;
        object? value = property.Get(Activator.CreateInstance(property.DeclaringType)!);
        if (value is null or "" || JsonSerializer.SerializeToNode(value, property.PropertyType, WireJson.Options) is not JsonValue node) return null;
        return node;
    }
}
