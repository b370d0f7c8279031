using FineTune.Core.Models;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

/// <summary>
/// What a checkpoint holds of a training run, as named byte parts: the state of every module that trains
/// (its parameters and buffers, e.g. a trainable BatchNorm's statistics) and the optimizer state. Frozen
/// weights are left out: they are the pretrained weights, which the run keeps anyway. Together with the
/// <see cref="TrainerPosition"/> this continues training bit for bit.
/// </summary>
public static class TrainingSnapshot
{
    public const string ModelPart = "trainable.safetensors";
    public const string OptimizerPart = "optimizer.bin";

    public static Dictionary<string, byte[]> Capture(FineTuneModel model, Trainer trainer)
    {
        var parts = CaptureWeights(model);
        // Sized for one state tensor per trainable parameter (SGD's momentum), so it does not grow by copying as it fills.
        using var optimizer = new MemoryStream(StateDictFile.SizeHint(model.Module.named_parameters()
            .Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => (Tensor)p.parameter)));
        trainer.SaveOptimizer(optimizer);
        parts[OptimizerPart] = optimizer.ToArray();
        return parts;
    }

    /// <summary>Only the weights of what trains, for a checkpoint that is evaluated or published but never continued.</summary>
    public static Dictionary<string, byte[]> CaptureWeights(FineTuneModel model)
    {
        using var scope = NewDisposeScope();
        var state = TrainableState(model);
        using var weights = new MemoryStream(StateDictFile.SizeHint(state));
        StateDictFile.Write(state, weights, StateDictFormat.Safetensors);
        return new Dictionary<string, byte[]> { [ModelPart] = weights.ToArray() };
    }

    /// <summary>Puts the captured state back into a freshly prepared model (same family, classes, freezing) and trainer.</summary>
    public static void Restore(FineTuneModel model, Trainer trainer, IReadOnlyDictionary<string, byte[]> parts, TrainerPosition position)
    {
        RestoreWeights(model, parts);
        // Outside any dispose scope: the optimizer keeps the state tensors it loads.
        using var optimizer = new MemoryStream(parts[OptimizerPart], writable: false);
        trainer.Restore(position, optimizer);
    }

    /// <summary>Only the weights, for evaluating or exporting a checkpoint (no optimizer to continue).</summary>
    public static void RestoreWeights(FineTuneModel model, IReadOnlyDictionary<string, byte[]> parts)
    {
        using var scope = NewDisposeScope();
        var expected = TrainableState(model);
        Dictionary<string, Tensor> saved;
        using (var weights = new MemoryStream(parts[ModelPart], writable: false))
            saved = StateDictFile.Read(weights);
        var missing = expected.Keys.Except(saved.Keys).ToList();
        var unexpected = saved.Keys.Except(expected.Keys).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InvalidWeightsException($"checkpoint does not fit the prepared model: missing [{string.Join(", ", missing.Take(5))}], unexpected [{string.Join(", ", unexpected.Take(5))}]");
        using (no_grad())
        {
            foreach (var (key, tensor) in saved)
            {
                expected[key].copy_(tensor);
                tensor.Dispose();
            }
        }
    }

    /// <summary>Parameters and buffers of every module holding a trainable parameter.</summary>
    private static Dictionary<string, Tensor> TrainableState(FineTuneModel model)
    {
        var trainingModules = model.Module.named_parameters().Where(p => p.parameter.requires_grad)
            .Select(p => ModuleOf(p.name)).ToHashSet(StringComparer.Ordinal);
        return model.Module.state_dict().Where(kv => trainingModules.Contains(ModuleOf(kv.Key))).ToDictionary();
    }

    private static string ModuleOf(string key) => key[..Math.Max(0, key.LastIndexOf('.'))];
}
