using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace FineTune.Workflow;

/// <summary>
/// The JSON the service reads and writes: job specs and every document it keeps for a run (bound spec, model card,
/// reports, checkpoint metadata). One set of options, so that what one part writes another reads back as it was.
/// </summary>
public static class WireJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        // A number is a JSON number, as the job schema says ("5" is not 5).
        NumberHandling = JsonNumberHandling.Strict,
        // Set before the options are first used, as the schema exporter requires.
        TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}
