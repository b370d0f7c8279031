using System.Reflection;
using System.Text.Json;
using FineTune.Workflow;

namespace FineTune.Functions.Tests;

/// <summary>What the Functions host will see: the functions.metadata and host.json the build puts in the app's output.</summary>
public class FunctionsMetadataTests
{
    private static string Output => Metadata("FunctionsOutput");

    [Fact]
    public void EveryFunctionHasItsTriggerRouteMethodAndAuthLevel()
    {
        var functions = JsonDocument.Parse(File.ReadAllText(Path.Combine(Output, "functions.metadata"))).RootElement.EnumerateArray()
            .ToDictionary(f => f.GetProperty("name").GetString()!, f => f.GetProperty("bindings").EnumerateArray().ToList());

        Assert.Equal(["AdmitRun", "CancelFineTune", "ComputeFeatureShard", "Dashboard", "Evaluate", "FetchPretrainedWeights", "FineTune", "FineTuneSweep", "FineTuneTrial", "GetFineTune", "GetFineTuneArtifact", "GetMisclassifiedImage", "LeaveRun",
            "ListFineTuneArtifacts", "ListFineTunes", "ListMisclassified", "ListModels", "OpenApiDocument", "PredictFineTune", "PrepareModel", "Publish", "PurgeExpiredRuns", "PurgeFineTune", "ReleaseRunFiles", "RestartFineTune", "SaveTrialCheckpoint", "StartFineTune", "StartFineTuneFromBlob", "TrainEpoch", "TrainStackedTrials", "WriteSweepReport"],
            functions.Keys.Order(StringComparer.Ordinal));
        var retention = Trigger(functions["PurgeExpiredRuns"]);
        Assert.Equal(("timerTrigger", "0 0 3 * * *"), (retention.GetProperty("type").GetString(), retention.GetProperty("schedule").GetString()));
        AssertHttp(functions["StartFineTune"], "api/finetune", "post");
        AssertHttp(functions["ListFineTunes"], "api/finetune", "get");
        AssertHttp(functions["GetFineTune"], "api/finetune/{id}", "get");
        AssertHttp(functions["CancelFineTune"], "api/finetune/{id}/cancel", "post");
        AssertHttp(functions["RestartFineTune"], "api/finetune/{id}/restart", "post");
        AssertHttp(functions["PurgeFineTune"], "api/finetune/{id}", "delete");
        AssertHttp(functions["ListFineTuneArtifacts"], "api/finetune/{id}/artifacts", "get", durableClient: false);
        AssertHttp(functions["GetFineTuneArtifact"], "api/finetune/{id}/artifacts/{name}", "get", durableClient: false);
        AssertHttp(functions["PredictFineTune"], "api/finetune/{id}/predict", "post", durableClient: false);
        AssertHttp(functions["ListMisclassified"], "api/finetune/{id}/misclassified", "get", durableClient: false);
        AssertHttp(functions["GetMisclassifiedImage"], "api/finetune/{id}/misclassified/{index}", "get", durableClient: false);
        AssertHttp(functions["ListModels"], "api/models", "get", durableClient: false);
        AssertHttp(functions["Dashboard"], "{*asset}", "get", durableClient: false, authLevel: "Anonymous");
        AssertHttp(functions["OpenApiDocument"], "openapi/v1.json", "get", durableClient: false, authLevel: "Anonymous");
        foreach (var (orchestrator, _) in WorkflowServices.Orchestrators)
            Assert.Equal("orchestrationTrigger", Trigger(functions[orchestrator]).GetProperty("type").GetString());
        foreach (var (activity, _) in WorkflowServices.Activities)
            Assert.Equal("activityTrigger", Trigger(functions[activity]).GetProperty("type").GetString());
        var blob = Trigger(functions["StartFineTuneFromBlob"]);
        Assert.Equal(("blobTrigger", "finetune-jobs/{name}"), (blob.GetProperty("type").GetString(), blob.GetProperty("path").GetString()));
        Assert.Contains(functions["StartFineTuneFromBlob"], b => b.GetProperty("type").GetString() == "durableClient");
    }

    /// <summary>Each workflow activity is bound under its durable name, taking and returning the activity's own types.</summary>
    [Fact]
    public void EveryActivityIsBoundToItsClass()
    {
        var bound = typeof(DurableFunctions).GetMethods()
            .Select(m => (Method: m, Name: m.GetCustomAttribute<Microsoft.Azure.Functions.Worker.FunctionAttribute>()?.Name))
            .Where(f => f.Name is not null && WorkflowServices.Orchestrators.All(o => o.Name != f.Name))
            .ToDictionary(f => f.Name!, f => f.Method);
        Assert.Equal(WorkflowServices.Activities.Select(a => a.Name).Order(), bound.Keys.Order());
        foreach (var (name, type) in WorkflowServices.Activities)
        {
            var activity = type.BaseType!;
            Assert.Equal(typeof(Microsoft.DurableTask.TaskActivity<,>), activity.GetGenericTypeDefinition());
            var method = bound[name];
            var trigger = method.GetParameters().Single(p => p.GetCustomAttribute<Microsoft.Azure.Functions.Worker.ActivityTriggerAttribute>() is not null);
            Assert.Equal(activity.GenericTypeArguments[0], trigger.ParameterType);
            Assert.Equal(typeof(Task<>).MakeGenericType(activity.GenericTypeArguments[1]), method.ReturnType);
        }
    }

    [Fact]
    public void HostJsonIsTheRepositorysWithTheDurableSettings()
    {
        string built = File.ReadAllText(Path.Combine(Output, "host.json"));
        Assert.Equal(File.ReadAllText(Path.Combine(Metadata("RepositoryRoot"), "host.json")), built);
        var host = JsonDocument.Parse(built).RootElement;
        Assert.Equal("-1", host.GetProperty("functionTimeout").GetString());
        var durable = host.GetProperty("extensions").GetProperty("durableTask");
        // Each deployment names its own task hub (infra/main.bicep: the Premium app's and the GPU app's differ).
        Assert.Equal("%TaskHubName%", durable.GetProperty("hubName").GetString());
        Assert.Equal(1, durable.GetProperty("maxConcurrentActivityFunctions").GetInt32());
        // The API's routes carry their own "api/" (ApiRoutes), and the dashboard is at the root.
        Assert.Equal("", host.GetProperty("extensions").GetProperty("http").GetProperty("routePrefix").GetString());
        Assert.Equal("OpenTelemetry", host.GetProperty("telemetryMode").GetString());
    }

    [Fact]
    public void LocalSettingsSampleRunsAgainstAzurite()
    {
        var values = JsonDocument.Parse(File.ReadAllText(Path.Combine(Metadata("RepositoryRoot"), "local.settings.sample.json"))).RootElement.GetProperty("Values");
        Assert.Equal("UseDevelopmentStorage=true", values.GetProperty("AzureWebJobsStorage").GetString());
        Assert.Equal("UseDevelopmentStorage=true", values.GetProperty("Artifacts__ConnectionString").GetString());
        Assert.Equal("dotnet-isolated", values.GetProperty("FUNCTIONS_WORKER_RUNTIME").GetString());
        Assert.False(string.IsNullOrEmpty(values.GetProperty("TaskHubName").GetString()));
    }

    private static void AssertHttp(List<JsonElement> bindings, string route, string method, bool durableClient = true, string authLevel = "Function")
    {
        var trigger = Trigger(bindings);
        Assert.Equal("httpTrigger", trigger.GetProperty("type").GetString());
        Assert.Equal(route, trigger.GetProperty("route").GetString());
        Assert.Equal([method], trigger.GetProperty("methods").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(authLevel, trigger.GetProperty("authLevel").GetString());
        Assert.Equal(durableClient, bindings.Any(b => b.GetProperty("type").GetString() == "durableClient"));
    }

    private static JsonElement Trigger(List<JsonElement> bindings) =>
        bindings.Single(b => b.GetProperty("type").GetString()!.EndsWith("Trigger", StringComparison.Ordinal));

    private static string Metadata(string key) => typeof(FunctionsMetadataTests).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;
}
