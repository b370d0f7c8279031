namespace FineTune.Api;

/// <summary>
/// The API's routes, the contract clients rely on; both hosts bind exactly these (the Functions app with an empty
/// route prefix, so its URLs are the same as <c>finetune serve</c>'s).
/// </summary>
public static class ApiRoutes
{
    public const string Runs = "api/finetune";
    public const string Run = Runs + "/{id}";
    public const string Cancel = Run + "/cancel";
    public const string Restart = Run + "/restart";
    public const string Artifacts = Run + "/artifacts";
    public const string Artifact = Artifacts + "/{name}";
    public const string Predict = Run + "/predict";
    /// <summary>The run's evaluation's misclassified images, each with its top classes, and each image's thumbnail.</summary>
    public const string Misclassified = Run + "/misclassified";
    public const string MisclassifiedImage = Misclassified + "/{index}";
    /// <summary>The model families, builders and weights a run can start from.</summary>
    public const string Models = "api/models";
    /// <summary>The dashboard's files: <c>/</c> is its page.</summary>
    public const string DashboardAsset = "{*asset}";
    public const string OpenApiDocument = "openapi/" + ApiDocument.Name + ".json";
    /// <summary>The API reference page (Scalar, its script served from the app: no CDN), and its assets under it.</summary>
    public const string Docs = "docs";
    /// <summary><c>finetune serve</c>'s metrics in Prometheus' text format (<see cref="Workflow.Services.WorkflowMetrics"/>), behind the token as the API is.</summary>
    public const string Metrics = "metrics";

    /// <summary>The multipart field of an uploaded dataset (.zip) when starting a run, and of the job spec beside it.</summary>
    public const string DatasetField = "dataset";
    public const string SpecField = "spec";
    /// <summary>The multipart field of the images to classify (repeatable).</summary>
    public const string ImageField = "image";

    /// <summary>Seconds a poller waits before asking again while a run is going (Retry-After).</summary>
    public const int RetryAfterSeconds = 2;
}
