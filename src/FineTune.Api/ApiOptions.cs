using FineTune.Core.Data;
using FineTune.Workflow.Jobs;

namespace FineTune.Api;

/// <summary>How the API behaves in its host (section "Api").</summary>
public sealed class ApiOptions
{
    public const string SectionName = "Api";

    /// <summary>Whether job specs may name local dataset and weight paths: on a user's own machine (serve), never on Azure.</summary>
    public bool AllowLocalPaths { get; set; }

    /// <summary>With <see cref="AllowLocalPaths"/>: the folder a spec's local dataset must resolve under (links followed); null: anywhere.</summary>
    public string? DatasetsRoot { get; set; }

    /// <summary>With <see cref="AllowLocalPaths"/>: the folder a spec's local weights file must resolve under (links followed); null: anywhere.</summary>
    public string? WeightsRoot { get; set; }

    /// <summary>The roots as a policy: checked when a spec is submitted, and by the activities when they read the paths.</summary>
    public LocalPathPolicy LocalPathPolicy() => new(DatasetsRoot, WeightsRoot);

    /// <summary>Largest dataset .zip a request may upload.</summary>
    public long MaxUploadBytes { get; set; } = 1L << 30;

    /// <summary>
    /// The absolute URL clients reach the API at (<c>finetune serve</c>: the address it listens on); links and
    /// <c>Location</c> headers are built from it, never from a request's Host. Unset: the request's own URL, for the
    /// Functions app, whose platform routes to it only the host names configured for it.
    /// </summary>
    public string? BaseUrl { get; set; }

    /// <summary>Images one predict request may send.</summary>
    public int MaxPredictImages { get; set; } = 1024;

    /// <summary>Largest image predict accepts, as in training.</summary>
    public long MaxImageBytes { get; set; } = new DatasetOptions().MaxFileBytes;

    /// <summary>Batches of images classified at the same time, over all requests; more wait their turn.</summary>
    public int PredictConcurrency { get; set; } = 2;

    /// <summary>Published models kept loaded for predict; the least recently used one is unloaded past this.</summary>
    public int LoadedModels { get; set; } = 2;

    /// <summary>Where loaded models' files are cached on this machine.</summary>
    public string ModelCacheDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "finetune-models");
}
