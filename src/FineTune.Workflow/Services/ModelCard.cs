using System.Text.Json;
using FineTune.Core;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>
/// What a published model is: written by the publish step, read by <c>finetune predict</c>, the run catalog
/// and anyone holding the published folder. Versioned: a reader refuses a card it does not know.
/// </summary>
public sealed record ModelCard
{
    public const int CurrentVersion = 1;

    public int Version { get; init; } = CurrentVersion;
    public string JobId { get; init; } = "";
    public string Model { get; init; } = "";
    public IReadOnlyList<string> Classes { get; init; } = [];
    /// <summary>The classifier's path in the state dict (torchvision's name).</summary>
    public string Head { get; init; } = "";
    /// <summary>The input the model was trained on: its weights' preprocessing with the job's resize mode.</summary>
    public Preprocessing Preprocessing { get; init; } = Preprocessing.ImageNet();
    public EvaluationSummary? Metrics { get; init; }
    /// <summary>Counted from 1, as the command line shows it (the history's <see cref="EpochMetrics.Epoch"/> counts from 0).</summary>
    public int BestEpoch { get; init; }
    public IReadOnlyList<EpochMetrics> History { get; init; } = [];
    public JobSpec? HyperParameters { get; init; }
    public DatasetCard? Dataset { get; init; }
    public WeightsCard? Weights { get; init; }
    public LineageCard? Lineage { get; init; }

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, Written);

    /// <summary>Throws <see cref="InvalidModelCardException"/> naming the field for anything this reader cannot use.</summary>
    public static ModelCard Read(ReadOnlySpan<byte> json, string source)
    {
        ModelCard? card;
        try
        {
            card = JsonSerializer.Deserialize<ModelCard>(json, WireJson.Options);
        }
        catch (JsonException e)
        {
            throw new InvalidModelCardException(source, $"{(e.Path ?? "$").TrimStart('$', '.')}: {e.Message.Split(" Path:")[0]}");
        }
        if (card is null) throw new InvalidModelCardException(source, "empty");
        if (card.Version != CurrentVersion) throw new InvalidModelCardException(source, $"version {card.Version} is not {CurrentVersion}");
        if (card.Classes.Count < 2) throw new InvalidModelCardException(source, "classes: at least two are needed");
        var family = ModelRegistry.Families.FirstOrDefault(f => f.Name == card.Model)
            ?? throw new InvalidModelCardException(source, $"model: unknown family '{card.Model}'");
        return card with { Preprocessing = family.Restore(card.Preprocessing) };
    }

    private static readonly JsonSerializerOptions Written = new(WireJson.Options) { WriteIndented = true };
}

public sealed record DatasetCard(string Location, string Sha256, int TrainImages, int ValidationImages, int TestImages, int SkippedFiles);

public sealed record WeightsCard(WeightsRef Pretrained, string SafetensorsSha256, string TorchSharpSha256);

public sealed record LineageCard(string InstanceId, long CheckpointSequence, DateTimeOffset PublishedAt);

/// <summary>A model card that cannot be used: not JSON, another version, or a field out of place.</summary>
public sealed class InvalidModelCardException(string source, string reason) : BadInputException($"{source}: {reason}");
