using FineTune.Api;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.Functions.Worker;
using Microsoft.DurableTask.Client;

namespace FineTune.Functions;

/// <summary>
/// The HTTP API bound to HTTP triggers: routes from <see cref="ApiRoutes"/> (host.json's route prefix is empty, so the
/// URLs are <c>finetune serve</c>'s), handlers from <see cref="FineTuneApi"/>. Function-key authorised; the
/// dashboard's static files are anonymous (its page passes the key it was opened with on to the API).
/// </summary>
public sealed class FineTuneHttp(FineTuneApi api)
{
    [Function("StartFineTune")]
    public async Task<IActionResult> Start(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = ApiRoutes.Runs)] HttpRequest request,
        [DurableClient] DurableTaskClient client) =>
        new Handled(await api.StartAsync(request, client));

    [Function("ListFineTunes")]
    public async Task<IActionResult> List(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.Runs)] HttpRequest request,
        [DurableClient] DurableTaskClient client) =>
        new Handled(await api.ListAsync(request, client));

    [Function("GetFineTune")]
    public async Task<IActionResult> Get(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.Run)] HttpRequest request, string id,
        [DurableClient] DurableTaskClient client) =>
        new Handled(await api.GetAsync(request, id, client));

    [Function("CancelFineTune")]
    public async Task<IActionResult> Cancel(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = ApiRoutes.Cancel)] HttpRequest request, string id,
        [DurableClient] DurableTaskClient client) =>
        new Handled(await api.CancelAsync(request, id, client));

    [Function("RestartFineTune")]
    public async Task<IActionResult> Restart(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = ApiRoutes.Restart)] HttpRequest request, string id,
        [DurableClient] DurableTaskClient client) =>
        new Handled(await api.RestartAsync(request, id, client));

    [Function("PurgeFineTune")]
    public async Task<IActionResult> Purge(
        [HttpTrigger(AuthorizationLevel.Function, "delete", Route = ApiRoutes.Run)] HttpRequest request, string id,
        [DurableClient] DurableTaskClient client) =>
        new Handled(await api.PurgeAsync(request, id, client));

    [Function("ListFineTuneArtifacts")]
    public async Task<IActionResult> Artifacts(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.Artifacts)] HttpRequest request, string id) =>
        new Handled(await api.ListArtifactsAsync(request, id));

    [Function("GetFineTuneArtifact")]
    public async Task<IActionResult> Artifact(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.Artifact)] HttpRequest request, string id, string name) =>
        new Handled(await api.DownloadAsync(request, id, name));

    [Function("PredictFineTune")]
    public async Task<IActionResult> Predict(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = ApiRoutes.Predict)] HttpRequest request, string id) =>
        new Handled(await api.PredictAsync(request, id));

    [Function("ListMisclassified")]
    public async Task<IActionResult> Misclassified(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.Misclassified)] HttpRequest request, string id) =>
        new Handled(await api.MisclassifiedAsync(request, id));

    [Function("GetMisclassifiedImage")]
    public async Task<IActionResult> MisclassifiedImage(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.MisclassifiedImage)] HttpRequest request, string id, string index) =>
        new Handled(await api.MisclassifiedImageAsync(request, id, index));

    [Function("ListModels")]
    public static IActionResult Models(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = ApiRoutes.Models)] HttpRequest request) =>
        new Handled(FineTuneApi.Models());

    /// <summary>The OpenAPI document, as <c>finetune serve</c> has it (generated once, from the same endpoint descriptions).</summary>
    [Function("OpenApiDocument")]
    public static async Task<IActionResult> OpenApi(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = ApiRoutes.OpenApiDocument)] HttpRequest request) =>
        new Handled(Results.Text(await ApiDocument.JsonAsync(), "application/json"));

    /// <summary>The dashboard at <c>/</c>: a catch-all route, which routing tries after every literal one.</summary>
    [Function("Dashboard")]
    public static IActionResult Dashboard(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = ApiRoutes.DashboardAsset)] HttpRequest request, string? asset) =>
        new Handled(Api.Dashboard.Serve(asset));

    /// <summary>The Functions worker runs action results; the shared handlers answer with minimal-API results.</summary>
    internal sealed class Handled(IResult result) : IActionResult
    {
        public IResult Result { get; } = result;

        public Task ExecuteResultAsync(ActionContext context) => Result.ExecuteAsync(context.HttpContext);
    }
}
