using FineTune.Workflow.Jobs;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FineTune.Api;

/// <summary>The API in an ASP.NET Core host (<c>finetune serve</c>): services, endpoints with their OpenAPI descriptions, the dashboard.</summary>
public static class ApiEndpoints
{
    /// <summary>The handlers' services; options come from the host's configuration.</summary>
    public static IServiceCollection AddFineTuneApi(this IServiceCollection services)
    {
        services.AddOptions<ApiOptions>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<ApiOptions>>().Value.LocalPathPolicy());
        services.AddSingleton<ModelPool>();
        services.AddSingleton<FineTuneApi>();
        return services;
    }

    /// <summary>Every route of <see cref="ApiRoutes"/>, each a handler on <see cref="FineTuneApi"/>.</summary>
    public static IEndpointRouteBuilder MapFineTuneApi(this IEndpointRouteBuilder endpoints)
    {
        var api = endpoints.MapGroup("").WithTags("finetune");
        api.MapPost(ApiRoutes.Runs, (HttpRequest request, DurableTaskClient client, FineTuneApi handlers) => handlers.StartAsync(request, client))
            .WithName("StartFineTune").WithSummary("Start a run from a JSON job spec, or from an uploaded dataset .zip (multipart: dataset, spec).")
            .Accepts<JobSpec>("application/json", "multipart/form-data")
            .Produces<StartedRun>(202).Problem(400, 409, 413, 415);
        api.MapGet(ApiRoutes.Runs, (HttpRequest request, DurableTaskClient client, FineTuneApi handlers) => handlers.ListAsync(request, client))
            .WithName("ListFineTunes").WithSummary("One page of runs: ?status=Running,Completed&top=50&createdFrom=&createdTo=&prefix=&continuationToken=")
            .Produces<RunPage>().Problem(400);
        api.MapGet(ApiRoutes.Run, (HttpRequest request, string id, DurableTaskClient client, FineTuneApi handlers) => handlers.GetAsync(request, id, client))
            .WithName("GetFineTune").WithSummary("A run's status: 202 with Location and Retry-After while it runs, 200 with the result when it has ended.")
            .Produces<RunView>().Produces<RunView>(202).Problem(400, 404);
        api.MapPost(ApiRoutes.Cancel, (HttpRequest request, string id, DurableTaskClient client, FineTuneApi handlers) => handlers.CancelAsync(request, id, client))
            .WithName("CancelFineTune").WithSummary("Stop a run at its next step; its checkpoints stay.")
            .Produces<CancellingRun>(202).Problem(400, 404, 409);
        api.MapPost(ApiRoutes.Restart, (HttpRequest request, string id, DurableTaskClient client, FineTuneApi handlers) => handlers.RestartAsync(request, id, client))
            .WithName("RestartFineTune").WithSummary("Start a failed or cancelled run again from its last checkpoint (same id, same spec).")
            .Produces<StartedRun>(202).Problem(400, 404, 409);
        api.MapDelete(ApiRoutes.Run, (HttpRequest request, string id, DurableTaskClient client, FineTuneApi handlers) => handlers.PurgeAsync(request, id, client))
            .WithName("PurgeFineTune").WithSummary("Remove a run's history and artifacts; its published model stays unless ?includePublished=true.")
            .Produces<FineTune.Workflow.Orchestration.PurgeOutcome>().Problem(400, 404, 409);
        api.MapGet(ApiRoutes.Artifacts, (HttpRequest request, string id, FineTuneApi handlers) => handlers.ListArtifactsAsync(request, id))
            .WithName("ListFineTuneArtifacts").WithSummary("The run's downloadable files so far.")
            .Produces<ArtifactList>().Problem(400);
        api.MapGet(ApiRoutes.Artifact, (HttpRequest request, string id, string name, FineTuneApi handlers) => handlers.DownloadAsync(request, id, name))
            .WithName("GetFineTuneArtifact").WithSummary("Download a run's file (model.safetensors, model-card.json, evaluation.json, predictions.csv, metrics.jsonl, loss.png, …), streamed.")
            .Produces<Stream>(200, "application/octet-stream", "application/json", "application/jsonl", "text/csv", "image/png").Problem(400, 404);
        api.MapPost(ApiRoutes.Predict, (HttpRequest request, string id, FineTuneApi handlers) => handlers.PredictAsync(request, id))
            .WithName("PredictFineTune").WithSummary("Classify images (multipart field 'image', repeatable; or JSON {\"images\": [{\"name\", \"data\": base64}], \"top\": K}) with the run's published model: ?top=K.")
            .Accepts<IFormFile>("multipart/form-data", "application/json").Produces<PredictionList>().Problem(400, 404, 413, 415)
            // One accepts list (routing answers 415 to any other type), two bodies: the JSON one is described as itself.
            .AddOpenApiOperationTransformer(async (operation, context, cancellationToken) =>
            {
                if (operation.RequestBody?.Content?.TryGetValue("application/json", out var json) == true)
                    json.Schema = await context.GetOrCreateSchemaAsync(typeof(PredictRequest), null, cancellationToken);
            });
        api.MapGet(ApiRoutes.Misclassified, (HttpRequest request, string id, FineTuneApi handlers) => handlers.MisclassifiedAsync(request, id))
            .WithName("ListMisclassified").WithSummary("The images the run's evaluation got wrong, the most confident mistakes first, each with its top 3 classes and its thumbnail's URL.")
            .Produces<MisclassifiedList>().Problem(400, 404);
        api.MapGet(ApiRoutes.MisclassifiedImage, (HttpRequest request, string id, string index, FineTuneApi handlers) => handlers.MisclassifiedImageAsync(request, id, index))
            .WithName("GetMisclassifiedImage").WithSummary("The thumbnail (PNG) of a misclassified image, by its place in the list.")
            .Produces<Stream>(200, "image/png").Problem(400, 404);
        api.MapGet(ApiRoutes.Models, FineTuneApi.Models)
            .WithName("ListModels").WithSummary("The model families, their builders (a job's model) and each builder's weights tags (a job's weights.source) with their preprocessing.")
            .Produces<ModelCatalog>();
        endpoints.MapGet("/", () => Dashboard.Serve(null)).ExcludeFromDescription();
        endpoints.MapGet("/{asset}", (string asset) => Dashboard.Serve(asset)).ExcludeFromDescription();
        return endpoints;
    }

    /// <summary>Declares <see cref="ApiProblem"/> bodies for these statuses.</summary>
    private static RouteHandlerBuilder Problem(this RouteHandlerBuilder route, params int[] statuses)
    {
        foreach (int status in statuses) route.Produces<ApiProblem>(status, ApiProblem.ContentType);
        return route;
    }
}
