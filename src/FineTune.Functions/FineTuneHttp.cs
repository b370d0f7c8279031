using System.Text.Json;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.Functions.Worker;
using Microsoft.DurableTask.Client;

namespace FineTune.Functions;

/// <summary>The HTTP API: start, inspect, list and cancel fine-tune runs. Function-key authorised.</summary>
public sealed class FineTuneHttp
{
    private const string Route = "finetune";

    /// <summary>POST /api/finetune: 202 with the run's URLs; 400 with field errors; 409 when a run of the job id is live or completed.</summary>
    [Function("StartFineTune")]
    public static async Task<IActionResult> Start(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = Route)] HttpRequest request,
        [DurableClient] DurableTaskClient client)
    {
        JobSpec spec;
        try
        {
            spec = JobSpecReader.Read(await new StreamReader(request.Body).ReadToEndAsync(request.HttpContext.RequestAborted), localPaths: false);
        }
        catch (InvalidJobSpecException e)
        {
            return new BadRequestObjectResult(new { error = "invalid job spec", fields = e.Errors });
        }
        var outcome = await new DurableClientScheduler(client).StartAsync(spec, request.HttpContext.RequestAborted);
        string id = outcome.JobId;
        if (!outcome.Started)
            return new ConflictObjectResult(new { error = $"job '{id}' already exists ({outcome.ExistingStatus})", links = Links(request, id) });
        var links = Links(request, id);
        return new AcceptedResult(links.Status, new { id, links });
    }

    /// <summary>GET /api/finetune/{id}: status, progress, and links to the reports and published model.</summary>
    [Function("GetFineTune")]
    public static async Task<IActionResult> Get(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = Route + "/{id}")] HttpRequest request,
        string id,
        [DurableClient] DurableTaskClient client)
    {
        if (!ArtifactNames.IsValidJobId(id)) return new BadRequestObjectResult(new { error = "invalid job id", fields = new[] { new FieldError("id", "must be 1-63 lower-case letters, digits or inner hyphens") } });
        var instance = await client.GetInstanceAsync(id, getInputsAndOutputs: true, request.HttpContext.RequestAborted);
        return instance is null ? new NotFoundObjectResult(new { error = $"job '{id}' does not exist" }) : new OkObjectResult(Describe(request, instance, detailed: true));
    }

    /// <summary>GET /api/finetune?status=Running,Completed: the runs, newest first.</summary>
    [Function("ListFineTunes")]
    public static async Task<IActionResult> List(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = Route)] HttpRequest request,
        [DurableClient] DurableTaskClient client)
    {
        var statuses = new List<OrchestrationRuntimeStatus>();
        foreach (var value in request.Query["status"].SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (!Enum.TryParse<OrchestrationRuntimeStatus>(value, ignoreCase: true, out var status))
                return new BadRequestObjectResult(new { error = "invalid filter", fields = new[] { new FieldError("status", $"'{value}' is not one of {string.Join(", ", Enum.GetNames<OrchestrationRuntimeStatus>())}") } });
            statuses.Add(status);
        }
        var query = new OrchestrationQuery { Statuses = statuses.Count > 0 ? statuses : null, FetchInputsAndOutputs = true, PageSize = 100 };
        var runs = new List<object>();
        await foreach (var instance in client.GetAllInstancesAsync(query).WithCancellation(request.HttpContext.RequestAborted))
            if (instance.Name is FineTuneOrchestrator.Name or SweepOrchestrator.Name) runs.Add(Describe(request, instance, detailed: false));
        return new OkObjectResult(new { runs });
    }

    /// <summary>POST /api/finetune/{id}/cancel: stops the run at its next step boundary; its checkpoints stay.</summary>
    [Function("CancelFineTune")]
    public static async Task<IActionResult> Cancel(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = Route + "/{id}/cancel")] HttpRequest request,
        string id,
        [DurableClient] DurableTaskClient client)
    {
        if (!ArtifactNames.IsValidJobId(id)) return new BadRequestObjectResult(new { error = "invalid job id" });
        var instance = await client.GetInstanceAsync(id, getInputsAndOutputs: false, request.HttpContext.RequestAborted);
        if (instance is null) return new NotFoundObjectResult(new { error = $"job '{id}' does not exist" });
        if (instance.IsCompleted) return new ConflictObjectResult(new { error = $"job '{id}' has already ended ({instance.RuntimeStatus})" });
        await client.TerminateInstanceAsync(id, "cancelled through the API", request.HttpContext.RequestAborted);
        return new AcceptedResult(Links(request, id).Status, new { id, status = "cancelling" });
    }

    private static object Describe(HttpRequest request, OrchestrationMetadata instance, bool detailed)
    {
        RunStatus? progress = instance.SerializedCustomStatus is null ? null : instance.ReadCustomStatusAs<RunStatus>();
        FineTuneResult? result = instance.RuntimeStatus == OrchestrationRuntimeStatus.Completed && instance.SerializedOutput is not null
            ? instance.ReadOutputAs<FineTuneResult>() : null;
        return new
        {
            id = instance.InstanceId,
            status = instance.RuntimeStatus.ToString(),
            createdAt = instance.CreatedAt,
            lastUpdatedAt = instance.LastUpdatedAt,
            progress,
            result = detailed ? result : null,
            artifacts = result is null ? null : new
            {
                model = result.Published.SafetensorsName,
                torchSharpModel = result.Published.TorchSharpName,
                modelCard = result.Published.ModelCardName,
                report = result.Evaluation.ReportName,
                predictions = result.Evaluation.PredictionsName,
            },
            error = instance.FailureDetails?.ErrorMessage,
            links = Links(request, instance.InstanceId),
        };
    }

    private static RunLinks Links(HttpRequest request, string id)
    {
        string root = $"{request.Scheme}://{request.Host}{request.PathBase}/api/{Route}/{Uri.EscapeDataString(id)}";
        return new RunLinks(root, root + "/cancel");
    }

    public sealed record RunLinks(string Status, string Cancel);
}
