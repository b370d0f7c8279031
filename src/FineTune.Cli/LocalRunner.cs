using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Converters;
using Microsoft.DurableTask.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using System.Globalization;

namespace FineTune.Cli;

/// <summary>
/// Runs a job through the very orchestration and activities the Functions app runs, in this process. Default:
/// the in-memory Durable Task backend and artifacts in a local folder; killing the process loses only the
/// in-memory orchestration, and the same command resumes from the last checkpoint in the artifact store.
/// With a storage connection string: blob artifacts and the persistent Azure Storage backend.
/// </summary>
internal sealed class LocalRunner(string workDirectory, string? storage, TextWriter output, TextWriter error)
{
    public string ArtifactRoot => Path.Combine(workDirectory, "artifacts");

    /// <summary>
    /// Verified weights are named by their hash, so every run of this user shares them, as PyTorch's hub cache
    /// does: <c>$XDG_CACHE_HOME/finetune/weights</c> (<c>~/.cache/finetune/weights</c>).
    /// </summary>
    public static string UserWeightsCache => Path.Combine(
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "finetune", "weights");

    /// <summary>From the process's start to the run's start: runtime, host and backend.</summary>
    private double _startUpSeconds;

    public async Task<int> RunAsync(JobSpec spec, CancellationToken cancellationToken)
    {
        if (storage is not null && await UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddFineTuneWorkflow();
        builder.Services.Configure<ArtifactStoreOptions>(o =>
        {
            o.LocalRoot = ArtifactRoot;
            o.ConnectionString = storage;
        });
        builder.Services.Configure<WorkflowOptions>(o => o.WorkDirectory = Path.Combine(workDirectory, "cache"));
        builder.Services.Configure<WeightsFetchOptions>(o => o.CacheDirectory = UserWeightsCache);
        if (storage is null) builder.Services.AddInMemoryDurableTask(registry => registry.AddFineTuneTasks());
        using var host = builder.Build();
        await host.StartAsync(cancellationToken);
        try
        {
            await using IRunBackend backend = storage is null
                ? new InMemoryBackend(host.Services.GetRequiredService<DurableTaskClient>())
                : await AzureStorageBackend.StartAsync(storage, host.Services, host.Services.GetRequiredService<ILoggerFactory>());
            string id = (await backend.StartAsync(spec, cancellationToken)).JobId;
            _startUpSeconds = ProcessSeconds();
            output.WriteLine($"run {id}: {spec.Model}, {spec.Training.Epochs} epochs, artifacts in {(storage is null ? ArtifactRoot : "the blob store")}");
            return Report(await FollowAsync(backend, id, cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            output.WriteLine("stopped; every finished step is checkpointed: run the same command again to resume");
            return ExitCodes.Cancelled;
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>Progress bars on a terminal; one line per change where output goes to a file, a pipe or a test.</summary>
    private Task<RunSnapshot> FollowAsync(IRunBackend backend, string id, CancellationToken cancellationToken) =>
        ReferenceEquals(output, Console.Out) && AnsiConsole.Profile.Capabilities.Interactive
            ? FollowWithBarsAsync(backend, id, cancellationToken)
            : FollowWithLinesAsync(backend, id, cancellationToken);

    private static async Task<RunSnapshot> FollowWithBarsAsync(IRunBackend backend, string id, CancellationToken cancellationToken)
    {
        RunSnapshot? final = null;
        await AnsiConsole.Progress().AutoClear(false).HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
            .StartAsync(async progress =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                ProgressTask Task(string key, string description)
                {
                    if (!tasks.TryGetValue(key, out var task))
                    {
                        foreach (var open in tasks.Values.Where(t => !t.IsFinished)) open.Value = open.MaxValue;
                        tasks[key] = task = progress.AddTask(description);
                    }
                    return task;
                }
                while (true)
                {
                    var state = await backend.GetAsync(id, cancellationToken);
                    if (state?.CustomStatus is { } json && JsonDataConverter.Default.Deserialize<RunStatus>(json) is { } s)
                    {
                        if (s.Stage == RunStage.Training)
                        {
                            bool boundary = s.Step == 0 && s.Epoch > 0;
                            int epoch = boundary ? s.Epoch - 1 : s.Epoch;
                            var task = Task($"epoch {epoch}", $"epoch {epoch + 1}/{s.Epochs}");
                            task.Value = boundary ? 100 : 100.0 * s.Step / Math.Max(1, s.StepsPerEpoch);
                            task.Description = Markup.Escape(Describe(s).Trim());
                        }
                        else if (s.Stage != RunStage.Completed)
                        {
                            // Epochs that finished between two polls still get their bar.
                            for (int epoch = 0; epoch < s.Epoch; epoch++)
                                Task($"epoch {epoch}", $"epoch {epoch + 1}/{s.Epochs} done").Value = 100;
                            Task(s.Stage.Display(), s.Stage.Display()).IsIndeterminate = true;
                        }
                    }
                    if (state is { Ended: true })
                    {
                        foreach (var task in tasks.Values) { task.IsIndeterminate = false; task.Value = task.MaxValue; }
                        final = state;
                        return;
                    }
                    await System.Threading.Tasks.Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
                }
            });
        return final!;
    }

    private async Task<RunSnapshot> FollowWithLinesAsync(IRunBackend backend, string id, CancellationToken cancellationToken)
    {
        string? last = null;
        while (true)
        {
            var state = await backend.GetAsync(id, cancellationToken);
            if (state?.CustomStatus is { } status)
            {
                string line = Describe(JsonDataConverter.Default.Deserialize<RunStatus>(status)!);
                if (line != last) output.WriteLine(line);
                last = line;
            }
            if (state is { Ended: true }) return state;
            await Task.Delay(TimeSpan.FromMilliseconds(300), cancellationToken);
        }
    }

    private static string Describe(RunStatus s) => s.Stage switch
    {
        RunStage.Training => (s.Step == 0 && s.Epoch > 0 ? $"  epoch {s.Epoch}/{s.Epochs} done" : $"  epoch {s.Epoch + 1}/{s.Epochs}  step {s.Step}/{s.StepsPerEpoch}")
            + (s.LastLoss is { } loss ? $"  loss {loss:F4}" : "")
            + (s.ValidationAccuracy is { } accuracy ? $"  val_loss {s.ValidationLoss:F4}  val_acc {accuracy:P1}" : "")
            + (s.EtaSeconds is { } eta ? $"  eta {TimeSpan.FromSeconds(Math.Round(eta)):g}" : ""),
        var stage => $"  {stage.Display()}",
    };

    private int Report(RunSnapshot final)
    {
        if (!final.Succeeded)
        {
            error.WriteLine($"run {final.Status.ToLowerInvariant()}: {UserMessage(final.Failure)}");
            return ExitCodes.Failed;
        }
        var result = JsonDataConverter.Default.Deserialize<FineTuneResult>(final.Output)!;
        var e = result.Evaluation;
        var table = new Table().Border(TableBorder.Rounded).AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
        table.AddRow($"{e.Split} images", e.Images.ToString(CultureInfo.InvariantCulture));
        table.AddRow($"{e.Split} loss", e.Loss.ToString("F4", CultureInfo.InvariantCulture));
        table.AddRow("top-1 accuracy", e.Top1Accuracy.ToString("P1", CultureInfo.InvariantCulture));
        if (e.Top5Accuracy is { } top5) table.AddRow("top-5 accuracy", top5.ToString("P1", CultureInfo.InvariantCulture));
        table.AddRow("best epoch", $"{result.BestEpoch + 1} of {result.EpochsRun}{(result.StoppedEarly ? " (stopped early)" : "")}");
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) }).Write(table);
        string where = storage is null ? ArtifactRoot + "/" : "";
        output.WriteLine($"published: {where}{result.Published.SafetensorsName} (PyTorch-loadable safetensors)");
        output.WriteLine($"           {where}{result.Published.ModelCardName}");
        output.WriteLine($"report:    {where}{e.ReportName}");
        output.WriteLine($"           {where}{e.PredictionsName}");
        var layout = new RunLayout(result.JobId);
        output.WriteLine($"plots:     {where}{layout.Reports}{{{RunLayout.LossPlotFile},{RunLayout.AccuracyPlotFile},{RunLayout.ConfusionPlotFile}}}");
        var stages = result.Times.Select(t => $"{t.Stage} {t.Seconds:F1} s");
        output.WriteLine($"time:      {string.Join(" · ", ["start-up " + _startUpSeconds.ToString("F1", CultureInfo.InvariantCulture) + " s", .. stages])} · total {ProcessSeconds():F1} s");
        return ExitCodes.Succeeded;
    }

    private static double ProcessSeconds() => (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime).TotalSeconds;

    /// <summary>Why the storage account cannot be used, found in seconds rather than after the SDKs' long retries; null when it answers.</summary>
    private static async Task<string?> UnreachableAsync(string connectionString, CancellationToken cancellationToken)
    {
        try
        {
            var options = new Azure.Storage.Blobs.BlobClientOptions { Retry = { MaxRetries = 1, NetworkTimeout = TimeSpan.FromSeconds(5) } };
            var client = new Azure.Storage.Blobs.BlobServiceClient(connectionString, options);
            try
            {
                await client.GetPropertiesAsync(cancellationToken);
                return null;
            }
            catch (Exception e) when (e is Azure.RequestFailedException or HttpRequestException or TaskCanceledException or AggregateException)
            {
                return $"cannot reach {client.Uri}: {(e.InnerException ?? e).Message.Split('\n')[0].Trim()}";
            }
        }
        catch (FormatException e)
        {
            return $"not a storage connection string: {e.Message}";
        }
    }

    /// <summary>What the user got wrong, without a stack trace or the framework's wrapping.</summary>
    private static string UserMessage(string? failure)
    {
        string message = failure ?? "unknown failure";
        const string prefix = "failed with an unhandled exception: ";
        int at = message.LastIndexOf(prefix, StringComparison.Ordinal);
        return at < 0 ? message : message[(at + prefix.Length)..];
    }
}
