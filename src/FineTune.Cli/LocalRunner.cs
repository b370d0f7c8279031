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

namespace FineTune.Cli;

/// <summary>
/// Runs a job through the very orchestration and activities the Functions app runs, in this process. Default:
/// the in-memory Durable Task backend and artifacts in a local folder; killing the process loses only the
/// in-memory orchestration, and the same command resumes from the last checkpoint in the artifact store.
/// With a storage connection string: blob artifacts and the persistent Azure Storage backend.
/// </summary>
internal sealed class LocalRunner(string workDirectory, string? storage, TextWriter output, TextWriter error)
{
    public const int Succeeded = 0, RunFailed = 1, Cancelled = 130;

    public string ArtifactRoot => Path.Combine(workDirectory, "artifacts");

    public async Task<int> RunAsync(JobSpec spec, CancellationToken cancellationToken)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddFineTuneWorkflow();
        builder.Services.Configure<ArtifactStoreOptions>(o =>
        {
            o.LocalRoot = ArtifactRoot;
            o.ConnectionString = storage;
        });
        builder.Services.Configure<WorkflowOptions>(o =>
        {
            o.WorkDirectory = Path.Combine(workDirectory, "cache");
            o.AllowLocalPaths = true;
        });
        builder.Services.Configure<WeightsFetchOptions>(o => o.CacheDirectory = Path.Combine(workDirectory, "cache", "weights"));
        if (storage is null) builder.Services.AddInMemoryDurableTask(registry => registry.AddFineTuneTasks());
        using var host = builder.Build();
        await host.StartAsync(cancellationToken);
        try
        {
            await using IRunBackend backend = storage is null
                ? new InMemoryBackend(host.Services.GetRequiredService<DurableTaskClient>())
                : await AzureStorageBackend.StartAsync(storage, host.Services, host.Services.GetRequiredService<ILoggerFactory>());
            string id = spec.JobId!;
            await backend.StartAsync(new FineTuneJob(id, spec), CancellationToken.None);
            output.WriteLine($"run {id}: {spec.Model}, {spec.Training.Epochs} epochs, artifacts in {(storage is null ? ArtifactRoot : "the blob store")}");
            return Report(await FollowAsync(backend, id, cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            output.WriteLine("stopped; every finished step is checkpointed: run the same command again to resume");
            return Cancelled;
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    private async Task<RunSnapshot> FollowAsync(IRunBackend backend, string id, CancellationToken cancellationToken)
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
        "training" => (s.Step == 0 && s.Epoch > 0 ? $"  epoch {s.Epoch}/{s.Epochs} done" : $"  epoch {s.Epoch + 1}/{s.Epochs}  step {s.Step}/{s.StepsPerEpoch}")
            + (s.LastLoss is { } loss ? $"  loss {loss:F4}" : "")
            + (s.ValidationAccuracy is { } accuracy ? $"  val_loss {s.ValidationLoss:F4}  val_acc {accuracy:P1}" : "")
            + (s.EtaSeconds is { } eta ? $"  eta {TimeSpan.FromSeconds(Math.Round(eta)):g}" : ""),
        var stage => $"  {stage}",
    };

    private int Report(RunSnapshot final)
    {
        if (!final.Succeeded)
        {
            error.WriteLine($"run {final.Status.ToLowerInvariant()}: {UserMessage(final.Failure)}");
            return RunFailed;
        }
        var result = JsonDataConverter.Default.Deserialize<FineTuneResult>(final.Output)!;
        var e = result.Evaluation;
        output.WriteLine();
        output.WriteLine($"  validation images   {e.Images}");
        output.WriteLine($"  validation loss     {e.Loss:F4}");
        output.WriteLine($"  top-1 accuracy      {e.Top1Accuracy:P1}");
        if (e.Top5Accuracy is { } top5) output.WriteLine($"  top-5 accuracy      {top5:P1}");
        output.WriteLine($"  best epoch          {result.BestEpoch + 1} of {result.EpochsRun}{(result.StoppedEarly ? " (stopped early)" : "")}");
        output.WriteLine();
        string where = storage is null ? ArtifactRoot + "/" : "";
        output.WriteLine($"published: {where}{result.Published.SafetensorsName} (PyTorch-loadable safetensors)");
        output.WriteLine($"           {where}{result.Published.ModelCardName}");
        output.WriteLine($"report:    {where}{e.ReportName}");
        output.WriteLine($"           {where}{e.PredictionsName}");
        string reports = e.ReportName[..(e.ReportName.LastIndexOf('/') + 1)];
        output.WriteLine($"plots:     {where}{reports}{{{ReportPlots.LossPart},{ReportPlots.AccuracyPart},{ReportPlots.ConfusionPart}}}");
        return Succeeded;
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
