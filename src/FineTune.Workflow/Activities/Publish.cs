using System.Security.Cryptography;
using FineTune.Core.Engine;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The recipe's "publish" step: the fine-tuned model as PyTorch-loadable safetensors and in TorchSharp's format (and as
/// ONNX when the job asks), with a model card (classes, preprocessing, metrics, hyper-parameters, dataset and weight
/// hashes, lineage), and the config.json and README.md a PyTorch or model-hub user reads (<see cref="HubFiles"/>).
/// A published model is never overwritten: a repeated call finds the card and returns it.
/// </summary>
[DurableTask(ActivityNames.Publish)]
public sealed class Publish(WorkerFiles worker, FineTuneEngine engine, IArtifactStore store, WorkerStopping stopping, RunControl runs)
    : TaskActivity<PublishRequest, PublishedModel>
{
    public override Task<PublishedModel> RunAsync(TaskActivityContext context, PublishRequest request) =>
        runs.UntilCancelledAsync(request.Job, token => PublishAsync(context, request, token), stopping.Token);

    private async Task<PublishedModel> PublishAsync(TaskActivityContext context, PublishRequest request, CancellationToken token)
    {
        var files = worker.For(request.Job);
        var layout = files.Layout;
        var published = new PublishedModel(layout.Published, layout.Safetensors, layout.TorchSharp, layout.ModelCard, []);
        if (await store.ExistsAsync(published.ModelCardName, token)) return published;

        var clock = new StageClock();
        var history = request.History ?? await RunMetrics.HistoryAsync(store, request.Job.JobId, token);
        await clock.TimeAsync(Stages.Plots, async () =>
        {
            await files.WriteAsync(layout.LossPlot, ReportPlots.Loss(history), WriteMode.Overwrite, token);
            await files.WriteAsync(layout.AccuracyPlot, ReportPlots.Accuracy(history), WriteMode.Overwrite, token);
        });
        await clock.TimeAsync(Stages.Publish, () => ExportAsync(context, request, history, files, published, token));
        WorkflowMetrics.StagesTimed(clock.Times);
        return published with { Times = clock.Times };
    }

    private async Task ExportAsync(TaskActivityContext context, PublishRequest request, IReadOnlyList<EpochMetrics> history, RunFiles files, PublishedModel published,
        CancellationToken token)
    {
        var job = request.Job;
        var (dataset, recipe, _) = await files.LoadAsync(request.Weights, prepared: null, token);
        var state = await files.StateAtAsync(request.Sequence, token);
        // What evaluation scored: the best epoch's head, or the convex optimum it stored in its place.
        if (request.Evaluation.ConvexHead is { Chosen: true })
            state = state with { Parts = new Dictionary<string, byte[]>(state.Parts) { [TrainingSnapshot.ModelPart] = await files.ReadAsync(files.Layout.ConvexHead, token) } };
        (string Safetensors, string TorchSharp, string Dataset) sha256;
        // Written to files, not memory: the largest builders' weights (2.5 GB) fit no array, and would be a second copy.
        string folder = files.NewPublishFolder();
        bool onnx = job.Spec.Publish?.Onnx == true;
        try
        {
            string safetensors = Path.Combine(folder, RunLayout.SafetensorsFile), torchSharp = Path.Combine(folder, RunLayout.TorchSharpFile);
            await using (var safetensorsFile = File.Create(safetensors))
            await using (var torchSharpFile = File.Create(torchSharp))
                engine.Export(recipe, dataset, state, new Dictionary<StateDictFormat, Stream>
                {
                    [StateDictFormat.Safetensors] = safetensorsFile,
                    [StateDictFormat.TorchSharp] = torchSharpFile,
                });
            // The hashes are computed while both files are stored: together they were most of this step.
            var hashes = Task.Run(async () => (Safetensors: await Sha256Async(() => File.OpenRead(safetensors), token), TorchSharp: await Sha256Async(() => File.OpenRead(torchSharp), token), Dataset: DatasetHash(dataset)), token);
            await Task.WhenAll(WriteOnceAsync(files, published.SafetensorsName, safetensors, token), WriteOnceAsync(files, published.TorchSharpName, torchSharp, token));
            sha256 = await hashes;
            if (onnx)
            {
                // The graph last: a reader that finds it finds its weights file too.
                foreach (string file in engine.ExportOnnx(recipe, dataset, state, Path.Combine(folder, RunLayout.OnnxFile)))
                    await WriteOnceAsync(files, files.Layout.Published + Path.GetFileName(file), file, token);
            }
        }
        finally
        {
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (IOException)
            {
                // Left to the run's release (RunScratch.Release): a failure to tidy up must not hide the step's own.
            }
        }

        var prepared = request.Prepared;
        var card = new ModelCard
        {
            JobId = job.JobId,
            Model = job.Spec.Model,
            Classes = prepared.Classes,
            Head = recipe.ModelFamily.HeadPath,
            Preprocessing = recipe.Preprocessing,
            Metrics = request.Evaluation with { Times = [] },
            BestEpoch = request.BestEpoch + 1,
            History = history,
            HyperParameters = job.Spec,
            Dataset = new DatasetCard(job.Spec.Dataset.Location, sha256.Dataset, prepared.TrainImages, prepared.ValidationImages, prepared.TestImages, prepared.SkippedFiles),
            Weights = new WeightsCard(request.Weights, sha256.Safetensors, sha256.TorchSharp),
            Lineage = new LineageCard(context.InstanceId, request.Sequence, DateTimeOffset.UtcNow),
        };
        var layout = files.Layout;
        await WriteOnceAsync(files, layout.HubConfig, HubFiles.Config(card), token);
        await WriteOnceAsync(files, layout.Readme, HubFiles.Readme(card, onnx), token);
        if (recipe.Preprocessing.MeanImage is { } meanImage)
        {
            int size = recipe.Preprocessing.CropSize;
            await WriteOnceAsync(files, layout.MeanImage, StateDictFile.SafetensorsOf(HubFiles.MeanImageTensor, meanImage.Value, [3, size, size]), token);
        }
        // The card last: its presence says the folder is complete.
        await WriteOnceAsync(files, published.ModelCardName, card.ToJson(), token);
    }

    private static Task WriteOnceAsync(RunFiles files, string name, byte[] data, CancellationToken token) =>
        WriteOnceAsync(files, name, () => new MemoryStream(data, writable: false), token);

    private static Task WriteOnceAsync(RunFiles files, string name, string path, CancellationToken token) =>
        WriteOnceAsync(files, name, () => File.OpenRead(path), token);

    /// <summary>Stores the bytes <paramref name="open"/> reads as <paramref name="name"/>, unless that artifact already holds them.</summary>
    private static async Task WriteOnceAsync(RunFiles files, string name, Func<Stream> open, CancellationToken token)
    {
        try
        {
            await using var data = open();
            await files.WriteAsync(name, data, WriteMode.CreateNew, token);
        }
        catch (ArtifactExistsException)
        {
            // Left by an earlier attempt that stopped before the card: fine when it holds the same bytes.
            if (await files.Sha256Async(name, token) != await Sha256Async(open, token)) throw;
        }
    }

    private static async Task<string> Sha256Async(Func<Stream> open, CancellationToken token)
    {
        await using var data = open();
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(data, token));
    }

    /// <summary>SHA-256 over every image's class, name and bytes, in dataset order.</summary>
    private static string DatasetHash(Core.Data.ImageDataset dataset)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var sample in dataset.Train.Concat(dataset.Validation).Concat(dataset.Test))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{dataset.Classes[sample.Label]}/{Path.GetFileName(sample.Path)}\n"));
            hash.AppendData(File.ReadAllBytes(sample.Path));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
