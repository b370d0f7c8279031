using FineTune.Core.Models;
using static TorchSharp.torch;

namespace FineTune.Core.Weights;

/// <summary>Copies a checkpoint's tensors into a model after checking that every name and shape fits.</summary>
public static class PretrainedWeights
{
    private const int MismatchesNamed = 5;

    /// <summary>
    /// Loads everything but the classifier head (and auxiliary heads), which the fine-tune replaces: a
    /// checkpoint's heads (any number of classes, or none) are ignored. Fails, naming the first of the model's keys that mismatch, when the rest does
    /// not fit the family exactly.
    /// </summary>
    public static void LoadBackbone(FineTuneModel model, IReadOnlyDictionary<string, Tensor> checkpoint) =>
        Load(model, InMemory(checkpoint), includeHead: false);

    /// <summary>Loads a whole fine-tuned model, head included (a published or checkpointed run).</summary>
    public static void LoadAll(FineTuneModel model, IReadOnlyDictionary<string, Tensor> checkpoint) =>
        Load(model, InMemory(checkpoint), includeHead: true);

    /// <summary>
    /// <see cref="LoadBackbone(FineTuneModel, IReadOnlyDictionary{string, Tensor})"/> from a file, each tensor read straight
    /// into the model's own: the weights are never in memory twice.
    /// </summary>
    public static void LoadBackbone(FineTuneModel model, string path)
    {
        using var reader = StateDictReader.Open(path);
        Load(model, FromFile(reader), includeHead: false);
    }

    /// <summary><see cref="LoadAll(FineTuneModel, IReadOnlyDictionary{string, Tensor})"/> from a file, tensor by tensor.</summary>
    public static void LoadAll(FineTuneModel model, string path)
    {
        using var reader = StateDictReader.Open(path);
        Load(model, FromFile(reader), includeHead: true);
    }

    /// <summary>A checkpoint's tensor: its name, its shape, and how to copy it into the model's.</summary>
    private sealed record Source(string Key, long[] Shape, Action<Tensor> CopyInto);

    private static IEnumerable<Source> InMemory(IReadOnlyDictionary<string, Tensor> checkpoint) =>
        checkpoint.Select(kv => new Source(kv.Key, kv.Value.shape, target => target.copy_(kv.Value)));

    private static IEnumerable<Source> FromFile(StateDictReader reader) =>
        reader.Tensors.Select(t => new Source(t.Name, t.Shape, target => reader.ReadInto(t, target)));

    private static void Load(FineTuneModel model, IEnumerable<Source> checkpoint, bool includeHead)
    {
        var family = model.Family;
        bool Wanted(string key) => includeHead || !family.IsClassifierKey(key);
        var target = model.Module.state_dict().Where(kv => Wanted(kv.Key)).ToDictionary();
        var source = checkpoint
            .Select(s => s with { Key = family.UpgradeKey?.Invoke(s.Key) ?? s.Key })
            .Where(s => Wanted(s.Key) && !family.IgnoredPrefixes.Any(p => s.Key.StartsWith(p, StringComparison.Ordinal)))
            .ToDictionary(s => s.Key);

        // Checkpoints from before PyTorch 0.4.1 lack BatchNorm's step counter; it does not affect the output.
        var missing = target.Keys.Where(k => !source.ContainsKey(k) && !k.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).ToList();
        var unexpected = source.Keys.Where(k => !target.ContainsKey(k)).ToList();
        var wrongKeys = source.Keys.Where(k => target.TryGetValue(k, out var t) && !t.shape.SequenceEqual(source[k].Shape)).ToList();
        var wrongShape = wrongKeys
            .Select(k => $"{k} (checkpoint [{string.Join(", ", source[k].Shape)}], model [{string.Join(", ", target[k].shape)}])")
            .ToList();
        if (missing.Count + unexpected.Count + wrongShape.Count > 0)
        {
            var problems = new List<string>();
            if (missing.Count > 0) problems.Add($"missing {Describe(missing)}");
            // Named by count only: the checkpoint's own names are its content.
            if (unexpected.Count > 0) problems.Add($"{unexpected.Count} {(unexpected.Count == 1 ? "tensor" : "tensors")} the model does not have");
            if (wrongShape.Count > 0) problems.Add($"wrong shape {Describe(wrongShape)}");
            // A ViT's position embedding has one entry per patch of the crop it was built for.
            if (family.LayoutForSize is not null && wrongKeys.Any(k => !family.IsClassifierKey(k)))
                problems.Add($"{family.Name} is built for the crop of its weights ({family.Preprocessing.CropSize} px here): keep torchvision's file name, or name the weights by tag ({string.Join(", ", family.Weights.Select(w => $"{w.Tag}: {w.FileName}, {w.Preprocessing.CropSize} px"))})");
            throw new InvalidWeightsException($"checkpoint does not fit {family.Name}: {string.Join("; ", problems)}");
        }

        using var _ = no_grad();
        foreach (var (key, tensor) in source)
            tensor.CopyInto(target[key]);
    }

    private static string Describe(List<string> keys) =>
        string.Join(", ", keys.Take(MismatchesNamed)) + (keys.Count > MismatchesNamed ? $" and {keys.Count - MismatchesNamed} more" : "");
}
