using System.Security.Cryptography;
using FineTune.Core.Engine;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The recipe's "publish" step: the fine-tuned model as PyTorch-loadable safetensors and in TorchSharp's format, with
/// a model card (classes, preprocessing, metrics, hyper-parameters, dataset and weight hashes, lineage).
/// A published model is never overwritten: a repeated call finds the card and returns it.
/// </summary>
[DurableTask(ActivityNames.Publish)]
public sealed class Publish(RunFiles files, FineTuneEngine engine, IArtifactStore store) : TaskActivity<PublishRequest, PublishedModel>
{
    public override async Task<PublishedModel> RunAsync(TaskActivityContext context, PublishRequest request)
    {
        var job = request.Job;
        var layout = new RunLayout(job.JobId);
        var published = new PublishedModel(layout.Published, layout.Safetensors, layout.TorchSharp, layout.ModelCard, []);
        if (await store.ExistsAsync(published.ModelCardName, CancellationToken.None)) return published;

        var clock = new StageClock();

        await clock.TimeAsync(Stages.Plots, async () =>
        {
            await files.WriteAsync(layout.LossPlot, ReportPlots.Loss(request.History), WriteMode.Overwrite, CancellationToken.None);
            await files.WriteAsync(layout.AccuracyPlot, ReportPlots.Accuracy(request.History), WriteMode.Overwrite, CancellationToken.None);
        });
        await clock.TimeAsync(Stages.Publish, () => ExportAsync(context, request, published));
        return published with { Times = clock.Times };
    }

    private async Task ExportAsync(TaskActivityContext context, PublishRequest request, PublishedModel published)
    {
        var job = request.Job;

        var dataset = await files.DatasetAsync(job, CancellationToken.None);
        var recipe = job.Spec.ToRecipe(await files.WeightsPathAsync(request.Weights, CancellationToken.None));
        var state = await files.StateAtAsync(job, request.Sequence, CancellationToken.None);
        var exported = engine.Export(recipe, dataset, state, [StateDictFormat.Safetensors, StateDictFormat.TorchSharp]);
        var (safetensors, torchSharp) = (exported[StateDictFormat.Safetensors], exported[StateDictFormat.TorchSharp]);
        await WriteOnceAsync(published.SafetensorsName, safetensors);
        await WriteOnceAsync(published.TorchSharpName, torchSharp);

        var prepared = request.Prepared;
        var card = new ModelCard
        {
            JobId = job.JobId,
            Model = job.Spec.Model,
            Classes = prepared.Classes,
            Head = recipe.ModelFamily.HeadPath,
            Preprocessing = PreprocessingCard.Of(recipe.Preprocessing),
            Metrics = request.Evaluation with { Times = [] },
            BestEpoch = request.BestEpoch,
            History = request.History,
            HyperParameters = job.Spec,
            Dataset = new DatasetCard(job.Spec.Dataset.Location, DatasetHash(dataset), prepared.TrainImages, prepared.ValidationImages, prepared.TestImages, prepared.SkippedFiles),
            Weights = new WeightsCard(request.Weights, Sha256(safetensors), Sha256(torchSharp)),
            Lineage = new LineageCard(context.InstanceId, request.Sequence, DateTimeOffset.UtcNow),
        };
        await WriteOnceAsync(published.ModelCardName, card.ToJson());
    }

    private async Task WriteOnceAsync(string name, byte[] data)
    {
        try
        {
            await files.WriteAsync(name, data, WriteMode.CreateNew, CancellationToken.None);
        }
        catch (ArtifactExistsException)
        {
            // Left by an earlier attempt that stopped before the card: fine when it holds the same bytes.
            if (Sha256(await files.ReadAllAsync(name, CancellationToken.None)) != Sha256(data)) throw;
        }
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

    private static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));
}
