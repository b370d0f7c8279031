using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.AspNetCore.Http;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.Options;

namespace FineTune.Api;

public sealed record StartedRun(string Id, RunLinks Links);

/// <summary>A cancel accepted: the run stops at its next step.</summary>
public sealed record CancellingRun(string Id, string Status, RunLinks Links);

/// <summary>The run's downloadable files so far.</summary>
public sealed record ArtifactList(string Id, IReadOnlyList<ArtifactListing> Artifacts);

/// <summary>Each image sent, in order, with its top classes.</summary>
public sealed record PredictionList(string Id, IReadOnlyList<ImagePrediction> Predictions);

public sealed record RunPage(IReadOnlyList<RunView> Runs, string? ContinuationToken);

/// <summary>The images the run's evaluation got wrong (of its <see cref="Split"/>), the most confident mistakes first.</summary>
public sealed record MisclassifiedList(string Id, string Split, IReadOnlyList<MisclassifiedExample> Images);

/// <summary>A misclassified image: its name in the dataset, its true class, the model's top classes, and where its thumbnail (PNG) is.</summary>
public sealed record MisclassifiedExample(string Path, string Label, IReadOnlyList<ClassProbability> Top, string Image);

public sealed record ArtifactListing(string Name, long Length, DateTimeOffset LastModified, string Url);

/// <summary>Predict's JSON body: the images in base64, and optionally how many classes to list (else ?top=K, else 5).</summary>
public sealed record PredictRequest(IReadOnlyList<EncodedImage> Images, int? Top);

/// <summary>An image of a JSON predict request: its name (echoed in the answer) and its file's bytes in base64.</summary>
public sealed record EncodedImage(string? Name, string Data);

/// <summary>One image's top classes, most probable first.</summary>
public sealed record ImagePrediction(string Image, IReadOnlyList<ClassProbability> Predictions);

/// <summary>
/// The HTTP API's handlers, written once over a <see cref="DurableTaskClient"/>, the artifact store and <see cref="RunControl"/>. The Functions
/// app calls them from its triggers (its client comes from the durable binding); <c>finetune serve</c> maps them
/// as ASP.NET Core endpoints (its client from DI). Each handler returns an <see cref="IResult"/>.
/// </summary>
public sealed class FineTuneApi(IArtifactStore store, UserUploads uploads, RunControl runs, RunCatalog catalog, ModelPool models, IOptions<ApiOptions> options)
{
    private const int MaxPageSize = 200;
    private const int DefaultPageSize = 50;
    private const int DefaultTop = 5;
    /// <summary>Parts a start request may have: the spec and the dataset, and a few a client adds that are ignored.</summary>
    private const int StartParts = 8;
    private readonly LocalPathPolicy _paths = options.Value.LocalPathPolicy();
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
        // Messages quote names ('x'): readable in curl, still valid JSON.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// POST /api/finetune: a JSON job spec, or multipart with a dataset .zip (<see cref="ApiRoutes.DatasetField"/>) and
    /// optionally the spec (<see cref="ApiRoutes.SpecField"/>). 202 with the run's URLs; 400 naming every bad field;
    /// 409 when a run of that id is live or completed.
    /// </summary>
    public async Task<IResult> StartAsync(HttpRequest request, DurableTaskClient client)
    {
        var cancellationToken = request.HttpContext.RequestAborted;
        if (request.HasFormContentType) return await StartWithUploadAsync(request, client, cancellationToken);
        // A JSON body only as JSON: a page on another site may send text/plain without asking first.
        if (!IsJson(request.ContentType))
            return Problem(415, "send the job spec as application/json, or a dataset .zip and the spec as multipart/form-data");
        JobSpec spec;
        try
        {
            string? json = await ReadCappedAsync(request, cancellationToken);
            if (json is null) return Problem(413, $"the job spec is over {JobSpecReader.MaxBytes} bytes");
            spec = JobSpecReader.Read(json, localPaths: options.Value.AllowLocalPaths);
        }
        catch (InvalidJobSpecException e)
        {
            return Problem(400, "invalid job spec", e.Errors);
        }
        if (options.Value.AllowLocalPaths)
        {
            // The roots first: outside them, a path that exists and one that does not get the same answer.
            if (_paths.Check(spec) is { Count: > 0 } outside) return Problem(400, "invalid job spec", outside);
            if (!BlobReference.IsBlob(spec.Dataset.Location)
                && !Directory.Exists(spec.Dataset.Location) && !File.Exists(spec.Dataset.Location))
                return Problem(400, "invalid job spec", [new FieldError("dataset.location", $"'{spec.Dataset.Location}' does not exist on the server")]);
        }
        return await ScheduleAsync(request, client, spec, cancellationToken);
    }

    private async Task<IResult> ScheduleAsync(HttpRequest request, DurableTaskClient client, JobSpec spec, CancellationToken cancellationToken)
    {
        StartOutcome outcome;
        try
        {
            outcome = await new DurableClientScheduler(client).StartAsync(spec, runs, cancellationToken);
        }
        catch (SpecConflictException e)
        {
            return Problem(409, e.Message, [new FieldError("jobId", "is bound to another spec")]);
        }
        // Estimated past this worker's memory budget.
        catch (InvalidJobSpecException e)
        {
            return Problem(400, "invalid job spec", e.Errors);
        }
        var links = LinksOf(request, outcome.JobId);
        if (!outcome.Started)
            return ApiProblem.Of(409, $"job '{outcome.JobId}' already exists ({outcome.ExistingStatus})", links: links).ToResult(Json);
        request.HttpContext.Response.Headers.RetryAfter = ApiRoutes.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        return new WithLocation(Results.Json(new StartedRun(outcome.JobId, links), Json, statusCode: 202), links.Status);
    }

    /// <summary>
    /// GET /api/finetune/{id}, the Durable async pattern: 202 with Location and Retry-After while the run is pending or
    /// running; 200 with the result (or the failure) once it has ended.
    /// </summary>
    public async Task<IResult> GetAsync(HttpRequest request, string id, DurableTaskClient client)
    {
        if (BadId(id) is { } bad) return bad;
        var cancellationToken = request.HttpContext.RequestAborted;
        var instance = await client.GetInstanceAsync(id, getInputsAndOutputs: true, cancellationToken);
        RunView view;
        if (instance is null)
        {
            if (await FromCatalogAsync(request, id, cancellationToken) is not { } stored) return NotFound(id);
            view = stored;
        }
        else
        {
            if (!RunStarter.IsRun(instance.Name)) return NotFound(id);
            view = RunView.Of(BaseUrl(request), instance, withResult: true);
            if (instance.Name == SweepOrchestrator.Name && instance.ReadInputAs<FineTuneJob>() is { } job)
                view = view with { Trials = await catalog.TrialsAsync(id, job.Spec, view.Progress?.Sweep?.Terminated, cancellationToken) };
        }
        if (view.Done) return Results.Json(view, Json);
        request.HttpContext.Response.Headers.RetryAfter = ApiRoutes.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        return new WithLocation(Results.Json(view, Json, statusCode: 202), view.Links.Status);
    }

    /// <summary>
    /// GET /api/finetune?status=Running,Completed&amp;top=50&amp;createdFrom=…&amp;createdTo=…&amp;prefix=…&amp;continuationToken=…:
    /// one page of runs; the next page is asked for with the continuation token the answer carries.
    /// </summary>
    public async Task<IResult> ListAsync(HttpRequest request, DurableTaskClient client)
    {
        var query = request.Query;
        var errors = new List<FieldError>();
        var statuses = new List<OrchestrationRuntimeStatus>();
        foreach (var value in query["status"].SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (Enum.TryParse<OrchestrationRuntimeStatus>(value, ignoreCase: true, out var status) && !int.TryParse(value, out _)) statuses.Add(status);
            else errors.Add(new FieldError("status", $"'{value}' is not one of {string.Join(", ", Enum.GetNames<OrchestrationRuntimeStatus>())}"));
        }
        int top = DefaultPageSize;
        if (query.TryGetValue("top", out var topText) && (!int.TryParse(topText, NumberStyles.None, CultureInfo.InvariantCulture, out top) || top is < 1 or > MaxPageSize))
            errors.Add(new FieldError("top", $"must be a whole number from 1 to {MaxPageSize}"));
        DateTimeOffset? Time(string field)
        {
            if (!query.TryGetValue(field, out var text)) return null;
            if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time)) return time;
            errors.Add(new FieldError(field, "must be an ISO 8601 date and time"));
            return null;
        }
        var from = Time("createdFrom");
        var to = Time("createdTo");
        string? prefix = query["prefix"];
        if (errors.Count > 0) return Problem(400, "invalid filter", errors);

        var filter = new OrchestrationQuery
        {
            Statuses = statuses.Count > 0 ? statuses : null,
            // The backend dates an instance by its latest generation (continuing as new resets it), never before the run's
            // creation: it can narrow from below only; both bounds are checked on the runs' own dates below.
            CreatedFrom = from,
            InstanceIdPrefix = string.IsNullOrEmpty(prefix) ? null : prefix,
            FetchInputsAndOutputs = true,
            PageSize = top,
        };
        string? token = query["continuationToken"];
        if (string.IsNullOrEmpty(token)) token = null;
        try
        {
            var page = await FirstPageAsync(client, filter, token, request.HttpContext.RequestAborted);
            var runs = page?.Values.Where(i => RunStarter.IsRun(i.Name)).Select(i => RunView.Of(BaseUrl(request), i, withResult: false))
                .Where(r => r.CreatedAt >= (from ?? DateTimeOffset.MinValue) && r.CreatedAt <= (to ?? DateTimeOffset.MaxValue))
                .OrderByDescending(r => r.CreatedAt).ToList() ?? [];
            if (token is null) runs.AddRange(await StoredOnlyAsync(request, client, filter, to, runs, request.HttpContext.RequestAborted));
            return Results.Json(new RunPage(runs, string.IsNullOrEmpty(page?.ContinuationToken) ? null : page.ContinuationToken), Json);
        }
        catch (Exception e) when (token is not null && e is not OperationCanceledException)
        {
            // The token's format is the backend's own: a query it fails while the same query without it succeeds
            // is a bad token, not a failing store.
            await FirstPageAsync(client, filter with { PageSize = 1 }, null, request.HttpContext.RequestAborted);
            return Problem(400, "invalid filter", [new FieldError("continuationToken", "is not a token a previous page gave")]);
        }
    }

    /// <summary>
    /// The runs on the store that the durable backend does not hold (trained by another process: <c>finetune train</c>,
    /// another <c>serve</c>), filtered like the backend's page and listed after it on the first page only, up to its size.
    /// </summary>
    private async Task<List<RunView>> StoredOnlyAsync(HttpRequest request, DurableTaskClient client, OrchestrationQuery filter, DateTimeOffset? createdTo,
        List<RunView> listed, CancellationToken cancellationToken)
    {
        var found = new List<RunView>();
        var shown = listed.Select(r => r.Id).ToHashSet(StringComparer.Ordinal);
        foreach (string id in await catalog.JobIdsAsync(cancellationToken))
        {
            if (listed.Count + found.Count >= filter.PageSize) break;
            if (shown.Contains(id) || (filter.InstanceIdPrefix is { } prefix && !id.StartsWith(prefix, StringComparison.Ordinal))) continue;
            if (await client.GetInstanceAsync(id, getInputsAndOutputs: false, cancellationToken) is not null) continue;
            if (await FromCatalogAsync(request, id, cancellationToken) is not { } view) continue;
            // Trials only on a run's own view: a list reads no trial's metrics.
            view = view with { Trials = null };
            bool statusMatches = filter.Statuses is null || filter.Statuses.Any(s => s.ToString() == view.Status);
            if (statusMatches && view.CreatedAt >= (filter.CreatedFrom ?? DateTimeOffset.MinValue) && view.CreatedAt <= (createdTo ?? DateTimeOffset.MaxValue))
                found.Add(view);
        }
        return [.. found.OrderByDescending(r => r.CreatedAt)];
    }

    // A run whose reports are gone was purged (its published model may stay, as purge keeps it): it is no run to show; nor is a
    // sweep's internal run (its sweep is shown). A sweep has no dataset report of its own: purged, its spec is gone too.
    private async Task<RunView?> FromCatalogAsync(HttpRequest request, string id, CancellationToken cancellationToken) =>
        await catalog.DescribeAsync(id, cancellationToken) is { PartOf: null } run
        && (run.Trials is not null || await store.ExistsAsync(new RunLayout(id).DatasetReport, cancellationToken))
            ? RunView.Of(BaseUrl(request), run, await runs.IsRunningAsync(id, cancellationToken))
            : null;

    private static async Task<Microsoft.DurableTask.Page<OrchestrationMetadata>?> FirstPageAsync(DurableTaskClient client, OrchestrationQuery filter, string? token,
        CancellationToken cancellationToken)
    {
        await foreach (var page in client.GetAllInstancesAsync(filter).AsPages(token, filter.PageSize).WithCancellation(cancellationToken)) return page;
        return null;
    }

    /// <summary>POST /api/finetune/{id}/cancel: stops the run at its next step boundary, with a checkpoint there, from which restart continues.</summary>
    public async Task<IResult> CancelAsync(HttpRequest request, string id, DurableTaskClient client)
    {
        if (BadId(id) is { } bad) return bad;
        var cancellationToken = request.HttpContext.RequestAborted;
        var instance = await client.GetInstanceAsync(id, getInputsAndOutputs: false, cancellationToken);
        if (instance is null)
        {
            // Another process's run: its running chunk sees the request in the store and stops at its next step.
            if (await FromCatalogAsync(request, id, cancellationToken) is not { } stored) return NotFound(id);
            if (stored.Done) return Problem(409, $"job '{id}' is not running ({stored.Status})");
            await runs.RequestCancelAsync(id, cancellationToken);
        }
        else
        {
            if (!RunStarter.IsRun(instance.Name)) return NotFound(id);
            if (instance.IsCompleted) return Problem(409, $"job '{id}' has already ended ({instance.RuntimeStatus})");
            if (await runs.CancelAsync(new DurableClientScheduler(client), id, cancellationToken) is { } refusal) return Problem(409, refusal);
        }
        var links = LinksOf(request, id);
        return new WithLocation(Results.Json(new CancellingRun(id, "cancelling", links), Json, statusCode: 202), links.Status);
    }

    /// <summary>POST /api/finetune/{id}/restart: a failed or cancelled run again, under its id and spec, from its last checkpoint.</summary>
    public async Task<IResult> RestartAsync(HttpRequest request, string id, DurableTaskClient client)
    {
        if (BadId(id) is { } bad) return bad;
        var outcome = await runs.RestartAsync(new DurableClientScheduler(client), id, request.HttpContext.RequestAborted);
        if (!outcome.Started) return Problem(409, outcome.ExistingStatus ?? $"run '{id}' cannot restart");
        var links = LinksOf(request, id);
        request.HttpContext.Response.Headers.RetryAfter = ApiRoutes.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        return new WithLocation(Results.Json(new StartedRun(id, links), Json, statusCode: 202), links.Status);
    }

    /// <summary>DELETE /api/finetune/{id}[?includePublished=true]: a run's history and artifacts; its published model stays unless asked.</summary>
    public async Task<IResult> PurgeAsync(HttpRequest request, string id, DurableTaskClient client)
    {
        if (BadId(id) is { } bad) return bad;
        bool includePublished = request.Query.TryGetValue("includePublished", out var value) && bool.TryParse(value, out bool flag) && flag;
        var outcome = await runs.PurgeAsync(new DurableClientScheduler(client), id, includePublished, request.HttpContext.RequestAborted);
        return outcome.Purged ? Results.Json(outcome, Json) : Problem(409, outcome.Refusal ?? $"run '{id}' cannot be purged");
    }

    /// <summary>GET /api/models: the model families, their builders and each builder's weights tags with the preprocessing of each.</summary>
    public static IResult Models() => Results.Json(ModelCatalog.Current, Json);

    /// <summary>GET /api/finetune/{id}/misclassified: the evaluation report's misclassified images with their top classes; 404 before the run has one.</summary>
    public async Task<IResult> MisclassifiedAsync(HttpRequest request, string id)
    {
        if (BadId(id) is { } bad) return bad;
        var cancellationToken = request.HttpContext.RequestAborted;
        JsonDocument document;
        try
        {
            await using var stream = await store.OpenReadAsync(new RunLayout(id).EvaluationReport, cancellationToken);
            document = await JsonDocument.ParseAsync(stream, cancellationToken: cancellationToken);
        }
        catch (ArtifactNotFoundException)
        {
            return Problem(404, $"run '{id}' has no evaluation report (yet)");
        }
        using (document)
        {
            var report = document.RootElement;
            string root = $"{LinksOf(request, id).Status}/misclassified/";
            // Reports written before the report listed them have none.
            var images = report.TryGetProperty("misclassified", out var list) ? list.Deserialize<List<MisclassifiedImage>>(EvaluationReport.Json)! : [];
            // A restart evaluates again: never cached, as the reports are not.
            request.HttpContext.Response.Headers.CacheControl = "no-store";
            return Results.Json(new MisclassifiedList(id, report.GetProperty("split").GetString()!,
                [.. images.Select((m, i) => new MisclassifiedExample(m.Path, m.Label, m.Top, root + i.ToString(CultureInfo.InvariantCulture)))]), Json);
        }
    }

    /// <summary>GET /api/finetune/{id}/misclassified/{index}: the thumbnail (PNG) of the misclassified image at that place in the list.</summary>
    public async Task<IResult> MisclassifiedImageAsync(HttpRequest request, string id, string index)
    {
        if (BadId(id) is { } bad) return bad;
        if (!int.TryParse(index, NumberStyles.None, CultureInfo.InvariantCulture, out int place) || place >= EvaluationReport.MaxMisclassified)
            return Problem(400, "invalid request", [new FieldError("index", $"must be a whole number from 0 to {EvaluationReport.MaxMisclassified - 1}")]);
        try
        {
            var image = await store.OpenReadAsync(new RunLayout(id).MisclassifiedImage(place), request.HttpContext.RequestAborted);
            request.HttpContext.Response.Headers.CacheControl = "no-store";
            return Results.Stream(image, "image/png");
        }
        catch (ArtifactNotFoundException)
        {
            return Problem(404, $"run '{id}' has no misclassified image {place}");
        }
    }

    /// <summary>GET /api/finetune/{id}/artifacts: the run's downloadable files that exist so far.</summary>
    public async Task<IResult> ListArtifactsAsync(HttpRequest request, string id)
    {
        if (BadId(id) is { } bad) return bad;
        var layout = new RunLayout(id);
        var links = LinksOf(request, id);
        var files = new List<ArtifactListing>();
        await foreach (var item in store.ListAsync(layout.Root, request.HttpContext.RequestAborted))
        {
            string file = item.Name[(item.Name.LastIndexOf('/') + 1)..];
            if (layout.Downloadable(file) == item.Name) files.Add(new ArtifactListing(file, item.Length, item.LastModified, $"{links.Artifacts}/{file}"));
        }
        return Results.Json(new ArtifactList(id, files), Json);
    }

    /// <summary>GET /api/finetune/{id}/artifacts/{name}: the file, streamed from storage (models as attachments).</summary>
    public async Task<IResult> DownloadAsync(HttpRequest request, string id, string name)
    {
        if (BadId(id) is { } bad) return bad;
        if (new RunLayout(id).Downloadable(name) is not { } artifact)
            return Problem(404, $"'{name}' is not a run artifact: one of {string.Join(", ", RunLayout.DownloadableFiles)}");
        Stream content;
        try
        {
            content = await store.OpenReadAsync(artifact, request.HttpContext.RequestAborted);
        }
        catch (ArtifactNotFoundException)
        {
            return Problem(404, $"run '{id}' has no {name} (yet)");
        }
        // Reports change while a run trains: never cached.
        request.HttpContext.Response.Headers.CacheControl = "no-store";
        bool attachment = name is RunLayout.SafetensorsFile or RunLayout.TorchSharpFile;
        return Results.Stream(content, ContentType(name), attachment ? $"{id}-{name}" : null);
    }

    /// <summary>
    /// POST /api/finetune/{id}/predict?top=K: multipart images (field <see cref="ApiRoutes.ImageField"/>, repeatable), or JSON
    /// (<see cref="PredictJsonBody"/>, base64 images) → each image's top-K classes. 404 when the run has published no model; 400 naming any image that is too large
    /// or not an image.
    /// </summary>
    public async Task<IResult> PredictAsync(HttpRequest request, string id)
    {
        if (BadId(id) is { } bad) return bad;
        var cancellationToken = request.HttpContext.RequestAborted;
        int top = DefaultTop;
        if (request.Query.TryGetValue("top", out var topText) && (!int.TryParse(topText, NumberStyles.None, CultureInfo.InvariantCulture, out top) || top < 1))
            return Problem(400, "invalid request", [new FieldError("top", "must be a whole number, at least 1")]);
        bool json = IsJson(request.ContentType);
        if (!request.HasFormContentType && !json)
            return Problem(415, "send the images as multipart/form-data (field 'image') or as application/json ({\"images\": [{\"name\", \"data\": base64}]})",
                [new FieldError(ApiRoutes.ImageField, "send the images as multipart/form-data or application/json")]);

        string folder = Directory.CreateTempSubdirectory("finetune-predict-").FullName;
        try
        {
            // Each image is written where the model reads it as it arrives; too large ones are skipped and all named.
            var names = new List<string>();
            var paths = new List<string>();
            var tooLarge = new List<FieldError>();
            long maxBytes = options.Value.MaxImageBytes;
            int maxImages = options.Value.MaxPredictImages;
            string imageField = json ? PredictJsonBody.ImagesField : ApiRoutes.ImageField;
            try
            {
                if (json)
                {
                    var body = await PredictJsonBody.ReadAsync(request, maxImages, maxBytes, options.Value.MaxUploadBytes, async (index, name, bytes) =>
                    {
                        string path = Path.Combine(folder, index.ToString(CultureInfo.InvariantCulture));
                        await File.WriteAllBytesAsync(path, bytes, cancellationToken);
                        names.Add(name);
                        paths.Add(path);
                    }, cancellationToken);
                    top = body.Top ?? top;
                }
                else await MultipartForm.ReadAsync(request, maxImages + StartParts, async part =>
                {
                    if (part.Name != ApiRoutes.ImageField) return;
                    int index = names.Count;
                    if (index == maxImages) throw part.Bad($"at most {maxImages} images per request");
                    string path = Path.Combine(folder, index.ToString(CultureInfo.InvariantCulture));
                    names.Add(part.FileName ?? "");
                    long? length;
                    await using (var file = File.Create(path)) length = await part.CopyToAsync(file, maxBytes);
                    if (length is null) tooLarge.Add(new FieldError($"{ApiRoutes.ImageField}[{index}]", $"{part.FileName}: over the {maxBytes}-byte limit"));
                    paths.Add(path);
                }, cancellationToken);
            }
            catch (BadBodyException e)
            {
                return Problem(e.Status, e.Status == 413 ? "request too large" : "invalid request", [e.Field]);
            }
            if (names.Count == 0) return Problem(400, "invalid request", [new FieldError(ApiRoutes.ImageField, "at least one image is required")]);
            if (tooLarge.Count > 0) return Problem(400, "invalid request", tooLarge);
            IReadOnlyList<IReadOnlyList<ClassProbability>>? answers;
            try
            {
                answers = await models.PredictAsync(id, paths, top, cancellationToken);
            }
            catch (InvalidImageException e)
            {
                int index = paths.IndexOf(e.Path);
                return Problem(400, "invalid request", [new FieldError($"{imageField}[{index}]", $"{names[index]}: {e.Reason}")]);
            }
            if (answers is null) return Problem(404, $"run '{id}' has no published model (yet)");
            return Results.Json(new PredictionList(id, [.. names.Select((name, i) => new ImagePrediction(name, answers[i]))]), Json);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// Multipart start: the dataset .zip goes to a temp file as it arrives (hashed on the way), the spec is checked
    /// against the upload's name, and only a valid spec's upload is stored, under its content hash.
    /// </summary>
    private async Task<IResult> StartWithUploadAsync(HttpRequest request, DurableTaskClient client, CancellationToken cancellationToken)
    {
        string temp = Path.GetTempFileName();
        try
        {
            string? specText = null;
            string? sha256 = null;
            await MultipartForm.ReadAsync(request, StartParts, async part =>
            {
                switch (part.Name)
                {
                    case ApiRoutes.SpecField:
                        if (specText is not null) throw part.Bad("is sent twice");
                        specText = await part.ReadTextAsync(JobSpecReader.MaxBytes);
                        break;
                    case ApiRoutes.DatasetField:
                        if (sha256 is not null) throw part.Bad("is sent twice: one dataset .zip per run");
                        if (part.FileName is null || !part.FileName.EndsWith(".zip", StringComparison.OrdinalIgnoreCase))
                            throw part.Bad($"'{part.FileName}' is not a .zip");
                        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
                        await using (var file = File.Create(temp))
                        {
                            if (await part.CopyToAsync(file, options.Value.MaxUploadBytes, hash) is null)
                                throw new BadBodyException(413, part.Name, $"is over the {options.Value.MaxUploadBytes}-byte limit");
                            sha256 = Convert.ToHexStringLower(hash.GetHashAndReset());
                        }
                        break;
                }
            }, cancellationToken);
            if (sha256 is null) return Problem(400, "invalid job spec", [new FieldError(ApiRoutes.DatasetField, "a dataset .zip file is required")]);

            string name = ArtifactNames.UploadedDataset(sha256);
            JobSpec spec;
            try
            {
                spec = JobSpecReader.Read(WithDataset(specText, BlobReference.To(name)), localPaths: options.Value.AllowLocalPaths);
            }
            catch (InvalidJobSpecException e)
            {
                return Problem(400, "invalid job spec", e.Errors);
            }
            // With the users' other uploads, where runs read blob: datasets; never among the app's artifacts.
            if (!await uploads.Store.ExistsAsync(name, cancellationToken))
            {
                await using var file = File.OpenRead(temp);
                try
                {
                    await uploads.Store.WriteAsync(name, file, WriteMode.CreateNew, cancellationToken);
                }
                catch (ArtifactExistsException)
                {
                    // The same bytes, uploaded by a request at the same moment.
                }
            }
            return await ScheduleAsync(request, client, spec, cancellationToken);
        }
        catch (BadBodyException e)
        {
            return Problem(e.Status, e.Status == 413 ? "request too large" : "invalid request", [e.Field]);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>The multipart spec (none: <c>{}</c>) with <c>dataset.location</c> set to the upload.</summary>
    private static string WithDataset(string? text, string location)
    {
        JsonObject spec;
        try
        {
            spec = !string.IsNullOrWhiteSpace(text)
                ? JsonNode.Parse(text) as JsonObject ?? throw new JsonException("not a JSON object")
                : [];
        }
        catch (JsonException e)
        {
            throw new InvalidJobSpecException([new FieldError(ApiRoutes.SpecField, $"is not a JSON object: {e.Message}")]);
        }
        var dataset = spec["dataset"] as JsonObject ?? (JsonObject)(spec["dataset"] = new JsonObject());
        dataset["location"] = location;
        return spec.ToJsonString();
    }

    private static string ContentType(string name) => Path.GetExtension(name) switch
    {
        ".png" => "image/png",
        ".json" => "application/json",
        ".jsonl" => "application/jsonl",
        ".csv" => "text/csv",
        _ => "application/octet-stream",
    };

    /// <summary>Where this API is reached: the configured address, or (unset) the request's own.</summary>
    private string BaseUrl(HttpRequest request) =>
        options.Value.BaseUrl?.TrimEnd('/') ?? $"{request.Scheme}://{request.Host}{request.PathBase}";

    private RunLinks LinksOf(HttpRequest request, string id) => RunView.LinksOf(BaseUrl(request), id);

    private static bool IsJson(string? contentType) =>
        Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var type)
        && (type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || type.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase));

    private static IResult? BadId(string id) => ArtifactNames.IsValidJobId(id)
        ? null
        : Problem(400, "invalid job id", [new FieldError("id", ArtifactNames.JobIdRule)]);

    private static IResult NotFound(string id) => Problem(404, $"job '{id}' does not exist");

    /// <summary>The body as text, or null when it is longer than <see cref="JobSpecReader.MaxBytes"/> (read no further).</summary>
    private static async Task<string?> ReadCappedAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.ContentLength > JobSpecReader.MaxBytes) return null;
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        for (int read; (read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0;)
        {
            if (buffer.Length + read > JobSpecReader.MaxBytes) return null;
            buffer.Write(chunk, 0, read);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    internal static IResult Problem(int status, string detail, IReadOnlyList<FieldError>? fields = null) =>
        ApiProblem.Of(status, detail, fields).ToResult(Json);

    /// <summary>A result with a Location header: where the run's status is polled.</summary>
    private sealed class WithLocation(IResult inner, string location) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.Location = location;
            return inner.ExecuteAsync(httpContext);
        }
    }
}
