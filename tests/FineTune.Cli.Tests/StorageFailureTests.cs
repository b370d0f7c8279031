using System.Net.Sockets;
using FineTune.Core.Data;
using FineTune.Storage;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli.Tests;

/// <summary>How a <c>--storage</c> run that failed is reported, read back from a task hub in Azurite.</summary>
public sealed class StorageFailureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-storage-failure-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, int, string> Failures => new()
    {
        // A type the runtime's facades forward: a classifier scanning every loaded assembly for it finds it more than once.
        { nameof(SocketException), ExitCodes.Failed, new SocketException((int)SocketError.ConnectionReset).Message },
        // The Azure Storage provider keeps no failure details: an orchestration that does not record its failure's kind
        // (ErrorKinds.Failed, as the app's orchestrators do) reads back as a system failure.
        { nameof(InvalidDatasetException), ExitCodes.Failed, "only one class (food)" },
    };

    /// <summary>
    /// Bad input found during a <c>--storage</c> run (a dataset of one class, found by the scan) exits 2 with the reason, as
    /// it does on the in-memory backend: the orchestrator records the failure's kind in its custom status, which the provider keeps.
    /// </summary>
    [Fact]
    public void BadInputFoundDuringAStorageRunExitsWithBadInput()
    {
        Azurite.RequireRunning();
        TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 2, ["food"]);
        string hub = "hub" + Guid.NewGuid().ToString("N")[..12];
        var (exit, _, error) = FinetuneProcess.Run(_dir, "train", "--dataset", "photos", "--epochs", "1", "--job-id", hub,
            "--work", "work", "--storage", Azurite.ConnectionString, "--task-hub", hub);
        Assert.True(exit == ExitCodes.BadInput, error);
        Assert.Contains("only one class (food)", error);
    }

    /// <summary>
    /// The activity's failure, wrapped in the orchestration's, read through the commands' one client (the SDK's, over the
    /// Azure Storage sidecar) and reported with its message and the exit code of its kind (<see cref="FineTune.Workflow.Orchestration.ErrorKinds"/>).
    /// </summary>
    [Theory]
    [MemberData(nameof(Failures))]
    public async Task AFailedRunIsReportedWithTheExitCodeOfItsKind(string failure, int exitCode, string message)
    {
        Azurite.RequireRunning();
        // Unique per run: the task hub outlives the test in Azurite.
        string hub = "hub" + Guid.NewGuid().ToString("N")[..12];
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        AzureStorageSidecar.AddAzureStorageDurableTask(builder.Services, Azurite.ConnectionString, hub, registry =>
        {
            registry.AddOrchestratorFunc("Fails", context => context.CallActivityAsync("Throws"));
            registry.AddActivityFunc("Throws", (TaskActivityContext _) => throw (failure == nameof(SocketException)
                ? new SocketException((int)SocketError.ConnectionReset)
                : new InvalidDatasetException(message)));
        });
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<DurableTaskClient>();
        string id = await client.ScheduleNewOrchestrationInstanceAsync("Fails");
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)))
            Assert.Equal(OrchestrationRuntimeStatus.Failed, (await client.WaitForInstanceCompletionAsync(id, timeout.Token)).RuntimeStatus);

        var error = new StringWriter();
        var renderer = new RunRenderer(TextWriter.Null, error, "", 0, new ArtifactStoreOptions { LocalRoot = _dir }.Create());
        Assert.Equal(exitCode, renderer.Report((await client.GetInstanceAsync(id, getInputsAndOutputs: true))!));
        Assert.Equal($"run failed: {message}", error.ToString().Trim());
        await host.StopAsync();
    }
}
