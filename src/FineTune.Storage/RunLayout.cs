namespace FineTune.Storage;

/// <summary>
/// Every artifact name of one run, in one place: <c>runs/{job}/checkpoints|features|reports|published/</c>.
/// Writers and readers (activities, the catalog, the command line, the HTTP API) take names from here only.
/// </summary>
public sealed record RunLayout
{
    public const string DatasetReportFile = "dataset.json";
    public const string EvaluationReportFile = "evaluation.json";
    public const string PredictionsFile = "predictions.csv";
    public const string LossPlotFile = "loss.png";
    public const string AccuracyPlotFile = "accuracy.png";
    public const string ConfusionPlotFile = "confusion-matrix.png";
    public const string SafetensorsFile = "model.safetensors";
    public const string TorchSharpFile = "model.dat";
    public const string ModelCardFile = "model-card.json";
    /// <summary>The published folder as a PyTorch or model-hub user reads it: the model's configuration and its README.</summary>
    public const string HubConfigFile = "config.json";
    public const string ReadmeFile = "README.md";
    /// <summary>Beside the weights of families whose input has a per-pixel mean image subtracted (resnet18-cntk).</summary>
    public const string MeanImageFile = "mean_image.safetensors";
    public const string SweepReportFile = "sweep.json";
    public const string SweepPlotFile = "sweep.png";
    /// <summary>The model as an ONNX graph: published when the job asks for it, or written by <c>finetune export</c>.</summary>
    public const string OnnxFile = "model.onnx";
    /// <summary>
    /// Beside <see cref="OnnxFile"/> when the graph's weights pass 1.75 GiB (protobuf's limit is 2 GiB) (ONNX external data, which ONNX
    /// Runtime and <c>onnx.load</c> read from the graph's folder).
    /// </summary>
    public const string OnnxDataFile = OnnxFile + ".data";
    /// <summary>One JSON line per finished epoch, rewritten as training goes (the dashboard's curves).</summary>
    public const string MetricsFile = "metrics.jsonl";

    /// <summary>Where every run's folder lies: list it to find the runs.</summary>
    public const string RunsPrefix = "runs/";

    /// <summary>The files of a run that users may download, by file name (the HTTP API's artifact route).</summary>
    public static readonly IReadOnlyList<string> DownloadableFiles =
    [
        SafetensorsFile, TorchSharpFile, ModelCardFile, EvaluationReportFile, PredictionsFile, DatasetReportFile,
        MetricsFile, LossPlotFile, AccuracyPlotFile, ConfusionPlotFile,
    ];

    /// <summary>The files a published model's folder must hold to be loaded (<c>finetune predict</c>).</summary>
    public static readonly IReadOnlyList<string> LoadableModelFiles = [ModelCardFile, SafetensorsFile];

    public RunLayout(string jobId)
    {
        JobId = ArtifactNames.RequireJobId(jobId);
    }

    public string JobId { get; }

    public string Root => $"{RunsPrefix}{JobId}/";
    /// <summary>The spec the job id is bound to, with its hash: written once, when the id is first used.</summary>
    public string Spec => Root + "spec.json";
    /// <summary>Present while a cancel is requested: a running chunk watches for it and stops at a step boundary.</summary>
    public string CancelRequest => Root + "cancel-requested";
    /// <summary>
    /// One marker per activity running for the run (and its trials and feature runs), renewed while it runs: a restart
    /// waits until they are gone, so no call of the earlier attempt runs beside the new one.
    /// </summary>
    public string Running => Root + "running/";
    public string RunningOf(string call) => ArtifactNames.Require(Running + call);
    /// <summary>
    /// Rewritten each time one of the run's calls ends: a run between two calls (a sweep between rungs, a run between chunks)
    /// has no running marker for a moment, and is still running.
    /// </summary>
    public string LastCallEnded => Root + "last-call-ended";
    /// <summary>How often each chunk has been started, by its first step: a worker killed mid-chunk leaves no other trace.</summary>
    public string Attempts => Root + "attempts/";
    public string AttemptsOf(long fromStep) => Attempts + fromStep.ToString("D12", System.Globalization.CultureInfo.InvariantCulture);
    public string Checkpoints => Root + "checkpoints/";
    /// <summary>The head's convex optimum when it replaced the best epoch's head: evaluation writes it, publishing reads it.</summary>
    public string ConvexHead => Root + "convex-head/trainable.safetensors";
    public string Features => Root + "features/";
    public string Reports => Root + "reports/";
    public string Published => Root + "published/";

    /// <summary>One shard of the cached backbone features (a split's features are one or more shards).</summary>
    public string FeaturesOf(string shard) => ArtifactNames.Require($"{Features}{shard}.safetensors");

    public string DatasetReport => Reports + DatasetReportFile;
    public string EvaluationReport => Reports + EvaluationReportFile;
    public string Predictions => Reports + PredictionsFile;
    public string LossPlot => Reports + LossPlotFile;
    public string AccuracyPlot => Reports + AccuracyPlotFile;
    public string ConfusionPlot => Reports + ConfusionPlotFile;
    /// <summary>A sweep's table of trials and its plot of the metric against each swept parameter.</summary>
    public string SweepReport => Reports + SweepReportFile;
    public string SweepPlot => Reports + SweepPlotFile;
    public string Metrics => Reports + MetricsFile;
    /// <summary>A thumbnail of the evaluation report's misclassified image at <paramref name="index"/> (its place in the report's list).</summary>
    public string MisclassifiedImage(int index) => $"{Reports}misclassified/{index.ToString(System.Globalization.CultureInfo.InvariantCulture)}.png";

    public string Safetensors => Published + SafetensorsFile;
    public string TorchSharp => Published + TorchSharpFile;
    public string ModelCard => Published + ModelCardFile;
    public string HubConfig => Published + HubConfigFile;
    public string Readme => Published + ReadmeFile;
    public string MeanImage => Published + MeanImageFile;
    public string Onnx => Published + OnnxFile;

    /// <summary>The artifact name of a downloadable file (<see cref="DownloadableFiles"/>); null for any other file name.</summary>
    public string? Downloadable(string file) => file switch
    {
        SafetensorsFile or TorchSharpFile or ModelCardFile => Published + file,
        _ when DownloadableFiles.Contains(file) => Reports + file,
        _ => null,
    };

    /// <summary>The run an artifact name belongs to; null for names outside <see cref="RunsPrefix"/>.</summary>
    public static string? JobIdOf(string artifactName) =>
        artifactName.StartsWith(RunsPrefix, StringComparison.Ordinal) && artifactName.Split('/') is { Length: > 2 } parts ? parts[1] : null;
}
