using System.Reflection;
using System.Text.Json.Serialization;

namespace FineTune.Workflow.Orchestration;

/// <summary>Where a run is, as its custom status says; written as the words users see ("fetching weights").</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RunStage>))]
public enum RunStage
{
    /// <summary>Waiting for a slot on its worker (<see cref="Services.RunSlots"/>).</summary>
    [JsonStringEnumMemberName("queued")] Queued,
    [JsonStringEnumMemberName("fetching weights")] FetchingWeights,
    [JsonStringEnumMemberName("preparing model")] PreparingModel,
    [JsonStringEnumMemberName("training")] Training,
    [JsonStringEnumMemberName("evaluating")] Evaluating,
    [JsonStringEnumMemberName("publishing")] Publishing,
    [JsonStringEnumMemberName("completed")] Completed,
    /// <summary>Failed: <see cref="RunStatus.ErrorKind"/> says whether for its input (<see cref="ErrorKinds"/>).</summary>
    [JsonStringEnumMemberName("failed")] Failed,
}

public static class RunStageNames
{
    private static readonly Dictionary<RunStage, string> Names = Enum.GetValues<RunStage>().ToDictionary(stage => stage,
        stage => typeof(RunStage).GetField(stage.ToString())!.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()!.Name);

    /// <summary>The stage as users read it: its JSON name.</summary>
    public static string Display(this RunStage stage) => Names[stage];
}
