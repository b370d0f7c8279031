using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Tests;

public sealed class FineTuneOrchestrationTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    private static JobSpec Spec(string jobId, string dataset, int epochs = 3, double testFraction = 0) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId,
        dataset = new { location = dataset, resize = "pad", testFraction },
        training = new { epochs, batchSize = 4, maxStepsPerChunk = 2 },
        seed = 7,
    }, WireJson.Options), localPaths: false);

    [Fact]
    public async Task FullRunPublishesAModelWithCardReportsAndProgress()
    {
        await using var host = await WorkflowHost.StartAsync();
        var spec = Spec("full-run", await host.UploadDatasetAsync("tux", perClass: 6));

        var (status, result) = await RunAsync(host, spec);

        Assert.Equal(OrchestrationRuntimeStatus.Completed, status.RuntimeStatus);
        Assert.Equal("full-run", result.JobId);
        Assert.Equal(3, result.EpochsRun);
        Assert.False(result.StoppedEarly);
        var card = JsonDocument.Parse(await ReadAsync(host.Store, result.Published.ModelCardName)).RootElement;
        Assert.Equal(WorkflowHost.Categories, card.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal("resnet18-cntk", card.GetProperty("model").GetString());
        Assert.Equal(64, card.GetProperty("weights").GetProperty("pretrained").GetProperty("sha256").GetString()!.Length);
        Assert.True(await host.Store.ExistsAsync(result.Published.SafetensorsName, default));
        Assert.True(await host.Store.ExistsAsync(result.Published.TorchSharpName, default));
        Assert.True(await host.Store.ExistsAsync(result.Evaluation.PredictionsName, default));
        Assert.InRange(result.Evaluation.Top1Accuracy, 0, 1);
        Assert.Equal("validation", result.Evaluation.Split);
        var progress = status.ReadCustomStatusAs<RunStatus>()!;
        Assert.Equal(RunStage.Completed, progress.Stage);
        Assert.True(status.SerializedCustomStatus!.Length < 1024);
    }

    [Fact]
    public async Task WithATestSetTheFinalReportIsOnTestAndSaysSo()
    {
        await using var host = await WorkflowHost.StartAsync();
        // Six photos a class: one for validation, two held out for test, three to train on.
        var spec = Spec("tested", await host.UploadDatasetAsync("tux", perClass: 6), epochs: 2, testFraction: 0.34);

        var (_, result) = await RunAsync(host, spec);

        Assert.Equal("test", result.Evaluation.Split);
        Assert.Equal(6, result.Evaluation.Images);
        var report = JsonDocument.Parse(await ReadAsync(host.Store, result.Evaluation.ReportName)).RootElement;
        Assert.Equal("test", report.GetProperty("split").GetString());
        Assert.Equal(6, report.GetProperty("count").GetInt32());
        var card = JsonDocument.Parse(await ReadAsync(host.Store, result.Published.ModelCardName)).RootElement;
        Assert.Equal("test", card.GetProperty("metrics").GetProperty("split").GetString());
        Assert.Equal((9, 3, 6), (card.GetProperty("dataset").GetProperty("trainImages").GetInt32(),
            card.GetProperty("dataset").GetProperty("validationImages").GetInt32(), card.GetProperty("dataset").GetProperty("testImages").GetInt32()));
        // The feature cache holds the test features too: evaluation needed no backbone pass.
        Assert.True(await host.Store.ExistsAsync(new RunLayout("tested").FeaturesOf(FeatureCache.ShardName(Core.Data.DatasetSplits.Test, 0)), default));
        var predicted = (await ReadAsync(host.Store, result.Evaluation.PredictionsName)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(7, predicted.Length);
    }

    [Fact]
    public async Task ActivityFailingMidEpochIsRetriedAndEndsWithTheSameWeights()
    {
        string expected;
        await using (var reference = await WorkflowHost.StartAsync())
        {
            var (_, result) = await RunAsync(reference, Spec("steady", await reference.UploadDatasetAsync("tux", 6)));
            expected = await SafetensorsShaAsync(reference.Store, result);
        }

        // The real chunk, made to crash once in the middle of an epoch, as a worker dying would.
        int failures = 0;
        await using var host = await WorkflowHost.StartAsync(services: services => services.AddSingleton<IStepObserver>(new StepHook(report =>
        {
            if (failures == 0 && StepHook.GlobalStep(report) == 5)
            {
                failures++;
                throw new IOException("worker lost mid-epoch");
            }
        })));
        var (status, flaky) = await RunAsync(host, Spec("flaky", await host.UploadDatasetAsync("tux", 6)));

        Assert.Equal(OrchestrationRuntimeStatus.Completed, status.RuntimeStatus);
        Assert.Equal(1, failures);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, flaky));
    }

    [Fact]
    public async Task ContinuingAsNewEveryFewChunksChangesNothing()
    {
        await using var host = await WorkflowHost.StartAsync();
        var (status, result) = await RunAsync(host, Spec("generations", await host.UploadDatasetAsync("tux", 6)), chunksPerGeneration: 2);
        Assert.Equal(OrchestrationRuntimeStatus.Completed, status.RuntimeStatus);
        Assert.Equal(3, result.EpochsRun);
    }

    [Fact]
    public async Task BadDatasetFailsBeforeTrainingWithoutRetries()
    {
        await using var host = await WorkflowHost.StartAsync();
        var spec = Spec("one-class", await host.UploadDatasetAsync("single", 4, ["food"]));

        var (status, _) = await RunAsync(host, spec, expectResult: false);

        Assert.Equal(OrchestrationRuntimeStatus.Failed, status.RuntimeStatus);
        Assert.Contains("only one class (food)", status.FailureDetails!.ToString());
        Assert.Equal(ErrorKinds.BadInput, ErrorKinds.Of(status.FailureDetails));
        var checkpoints = host.Host.Services.GetRequiredService<CheckpointStore>();
        Assert.Empty(await checkpoints.ListAsync("one-class", default));
    }

    /// <summary>
    /// Three epochs of SGD at the seed's learning rate stop far short of the head's optimum: the convex optimum validates
    /// better, is evaluated and published in the best epoch's place, and the card says so. Without it (convexHead false),
    /// the best epoch's head is published.
    /// </summary>
    [Fact]
    public async Task TheHeadsConvexOptimumIsPublishedWhenItValidatesBetterThanTheBestEpoch()
    {
        await using var host = await WorkflowHost.StartAsync();
        string dataset = await host.UploadDatasetAsync("tux", perClass: 6);
        var (_, solved) = await RunAsync(host, Spec("convex", dataset));
        var epochOnlySpec = Spec("epoch-only", dataset);
        var (_, epochOnly) = await RunAsync(host, epochOnlySpec with { Training = epochOnlySpec.Training with { ConvexHead = false } });

        var convex = solved.Evaluation.ConvexHead!;
        Assert.True(convex.Chosen, convex.Describe());
        Assert.True(convex.ValidationLoss < convex.EpochValidationLoss);
        Assert.Contains(convex.WeightDecay, Core.Training.HeadSolver.WeightDecays);
        Assert.Null(epochOnly.Evaluation.ConvexHead);
        Assert.Equal(epochOnly.BestEpoch, solved.BestEpoch);

        var stored = Head(await BytesAsync(host.Store, new RunLayout("convex").ConvexHead));
        var published = Head(await BytesAsync(host.Store, solved.Published.SafetensorsName));
        var fromEpoch = Head(await BytesAsync(host.Store, epochOnly.Published.SafetensorsName));
        Assert.Equal(stored, published);
        Assert.NotEqual(fromEpoch, published);
        var card = JsonDocument.Parse(await ReadAsync(host.Store, solved.Published.ModelCardName)).RootElement;
        Assert.True(card.GetProperty("metrics").GetProperty("convexHead").GetProperty("chosen").GetBoolean());
        Assert.Contains("Head: the convex optimum", await ReadAsync(host.Store, new RunLayout("convex").Readme));
    }

    /// <summary>The head's weight and bias of a safetensors file (a checkpoint's part or a published model), as floats.</summary>
    private static float[] Head(byte[] safetensors)
    {
        var state = Core.Weights.StateDictFile.Read(new MemoryStream(safetensors));
        try
        {
            return [.. state["fc.weight"].data<float>().ToArray(), .. state["fc.bias"].data<float>().ToArray()];
        }
        finally
        {
            foreach (var tensor in state.Values) tensor.Dispose();
        }
    }

    private static async Task<byte[]> BytesAsync(IArtifactStore store, string name)
    {
        await using var stream = await store.OpenReadAsync(name, default);
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        return copy.ToArray();
    }

    private static async Task<(OrchestrationMetadata Status, FineTuneResult Result)> RunAsync(WorkflowHost host, JobSpec spec,
        bool expectResult = true, int chunksPerGeneration = 50)
    {
        var client = host.Host.Client;
        await client.ScheduleNewOrchestrationInstanceAsync(FineTuneOrchestrator.Name, new FineTuneJob(spec.JobId!, spec, chunksPerGeneration),
            new StartOrchestrationOptions(spec.JobId));
        var status = await host.WaitForEndAsync(spec.JobId!, Timeout);
        if (expectResult && status.RuntimeStatus != OrchestrationRuntimeStatus.Completed)
            Assert.Fail($"run ended {status.RuntimeStatus}: {status.FailureDetails} {status.FailureDetails?.StackTrace} {status.FailureDetails?.InnerFailure?.StackTrace}");
        return (status, expectResult ? status.ReadOutputAs<FineTuneResult>()! : null!);
    }

    private static async Task<string> SafetensorsShaAsync(IArtifactStore store, FineTuneResult result) =>
        JsonDocument.Parse(await ReadAsync(store, result.Published.ModelCardName)).RootElement
            .GetProperty("weights").GetProperty("safetensorsSha256").GetString()!;

    private static async Task<string> ReadAsync(IArtifactStore store, string name)
    {
        await using var stream = await store.OpenReadAsync(name, default);
        return await new StreamReader(stream).ReadToEndAsync();
    }
}
