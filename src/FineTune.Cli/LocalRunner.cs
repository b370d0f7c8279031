using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli;

/// <summary>
/// Runs a job through the very orchestration and activities the Functions app runs, in this process, on the
/// in-memory Durable Task backend, with artifacts in a local folder (or the blob store given by --storage).
/// Killing the process loses only the in-memory orchestration: run the same command again and the activities
/// pick up from the last checkpoint in the artifact store, ending with the same weights.
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
        builder.Services.AddInMemoryDurableTask(registry => registry.AddFineTuneTasks());
        using var host = builder.Build();
        await host.StartAsync(cancellationToken);
        try
        {
            var client = host.Services.GetRequiredService<DurableTaskClient>();
            string id = spec.JobId!;
            await client.ScheduleNewOrchestrationInstanceAsync(FineTuneOrchestrator.Name, new FineTuneJob(id, spec), new StartOrchestrationOptions(id), CancellationToken.None);
            output.WriteLine($"run {id}: {spec.Model}, {spec.Training.Epochs} epochs, artifacts in {(storage is null ? ArtifactRoot : "the blob store")}");
            var final = await FollowAsync(client, id, cancellationToken);
            return Report(final);
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

    private async Task<OrchestrationMetadata> FollowAsync(DurableTaskClient client, string id, CancellationToken cancellationToken)
    {
        string? last = null;
        while (true)
        {
            var state = await client.GetInstanceAsync(id, getInputsAndOutputs: true, cancellationToken)
                ?? throw new InvalidOperationException($"run {id} disappeared");
            if (state.SerializedCustomStatus is not null)
            {
                string line = Describe(state.ReadCustomStatusAs<RunStatus>()!);
                if (line != last) output.WriteLine(line);
                last = line;
            }
            if (state.IsCompleted) return state;
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

    private int Report(OrchestrationMetadata final)
    {
        if (final.RuntimeStatus != OrchestrationRuntimeStatus.Completed)
        {
            error.WriteLine($"run {final.InstanceId} {final.RuntimeStatus.ToString().ToLowerInvariant()}: {UserMessage(final.FailureDetails)}");
            return RunFailed;
        }
        var result = final.ReadOutputAs<FineTuneResult>()!;
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
        return Succeeded;
    }

    /// <summary>The innermost failure's message: what the user got wrong, without a stack trace.</summary>
    private static string UserMessage(Microsoft.DurableTask.TaskFailureDetails? failure)
    {
        while (failure?.InnerFailure is not null) failure = failure.InnerFailure;
        string message = failure?.ErrorMessage ?? "unknown failure";
        const string prefix = "failed with an unhandled exception: ";
        int at = message.IndexOf(prefix, StringComparison.Ordinal);
        return at < 0 ? message : message[(at + prefix.Length)..];
    }
}
