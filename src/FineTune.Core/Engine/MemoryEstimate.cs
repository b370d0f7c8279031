using System.Collections.Concurrent;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;

namespace FineTune.Core.Engine;

/// <summary>A run's estimated peak resident memory, by part, in bytes.</summary>
/// <param name="Runtime">the process with TorchSharp loaded and a run's fixed costs (dataset scan, pooled models, buffers)</param>
/// <param name="Weights">the model's parameters and the checkpoint read beside them</param>
/// <param name="TrainingState">gradients and optimizer state of what trains</param>
/// <param name="Activations">what one batch keeps for the backward pass (or passes through, when nothing before the head trains)</param>
public sealed record MemoryEstimate(long Runtime, long Weights, long TrainingState, long Activations)
{
    public long TotalBytes => Runtime + Weights + TrainingState + Activations;

    public long TotalMegabytes => (TotalBytes + (1L << 20) - 1) >> 20;

    public override string ToString() =>
        $"~{TotalMegabytes} MB (weights {Weights >> 20} MB, gradients and optimizer state {TrainingState >> 20} MB, activations {Activations >> 20} MB, runtime {Runtime >> 20} MB)";
}

/// <summary>
/// Tensor-free arithmetic for a run's peak memory, so a job that cannot fit a worker is refused when submitted instead
/// of being killed for memory mid-run. Calibrated on resnet18-cntk (the figures at <see cref="ActivationFactor"/>); other
/// families scale by their parameter count and by the activations one image produces (torchvision's builders, counted
/// by <c>bench/memory_table.py</c> with torchvision 0.14: every leaf module's output elements for one image at the family's input size).
/// </summary>
public static class PeakMemory
{
    // Calibration: peak RSS of `finetune train` (/usr/bin/time -v; resnet18-cntk, 100 tuxpaint photos of 2 classes,
    // 1 epoch, CPU, 2 cores), in MiB, against this estimate:
    //   freeze head, feature cache, batch 16:    767 measured,   871 estimated
    //   freeze full, batch 16:                  1147 measured,  1143 estimated
    //   freeze full, batch 64:                  1819 measured,  2237 estimated
    //   freeze last:1, batch 64:                1131 measured,  2237 estimated (counted as full: an upper bound)
    //   freeze full, batch 256 (issue 23):     ~6600 measured,  6615 estimated
    // The runs at 16 and 256 give the runtime (~600 MiB) and the slope: 22.7 MiB per image, 0.8 × 4 bytes × resnet18's
    // 7.48 M counted elements (in-place ReLUs are counted twice; libtorch frees some outputs once used). Smaller batches
    // take less per image (14 MiB from 16 to 64): the estimate errs on the side of refusing.

    /// <summary>Bytes a run takes besides its model and batches: the process with libtorch loaded, the scan, buffers.</summary>
    public const long RuntimeBytes = 600L << 20;

    /// <summary>Bytes kept per counted float of one image's activations through a training forward and backward (see above).</summary>
    public const double ActivationFactor = 0.8;

    /// <summary>Share of the activations alive at once when nothing before the head trains (no graph is kept).</summary>
    public const double InferenceActivationShare = 0.25;

    /// <summary>The most images the feature pass and evaluation push through the model at once (the engine's inference batch).</summary>
    public const int InferenceBatch = 32;

    // torchvision 0.14 (/usr/bin/python3): parameters and activation elements per image at 224 px (inception_v3: 299 px).
    private static readonly Dictionary<string, (long Parameters, long Activations)> Measured = new()
    {
        ["resnet18"] = (11689512, 7477736),
        ["resnet34"] = (21797672, 11240936),
        ["resnet50"] = (25557032, 32040424),
        ["resnet101"] = (44549160, 47394280),
        ["resnet152"] = (60192808, 66360808),
        ["resnext50_32x4d"] = (25028904, 41900008),
        ["wide_resnet50_2"] = (68883240, 41900008),
        ["vgg11"] = (132863336, 16433128),
        ["vgg11_bn"] = (132868840, 23859176),
        ["vgg13"] = (133047848, 26066920),
        ["vgg13_bn"] = (133053736, 38309864),
        ["vgg16"] = (138357544, 28676072),
        ["vgg16_bn"] = (138365992, 42223592),
        ["vgg19"] = (143667240, 31285224),
        ["vgg19_bn"] = (143678248, 46137320),
        ["mobilenet_v2"] = (3504872, 19464296),
        ["mobilenet_v3_small"] = (2542856, 4106768),
        ["mobilenet_v3_large"] = (5483032, 12643984),
        ["inception_v3"] = (23834568, 18516328),
        ["googlenet"] = (6624904, 7872840),
        ["densenet121"] = (7978856, 38561256),
        ["densenet161"] = (28681000, 70363432),
        ["densenet169"] = (14149480, 45648616),
        ["densenet201"] = (20013928, 57565416),
        ["alexnet"] = (61100840, 1098216),
    };

    private static readonly ConcurrentDictionary<string, long> BuiltCounts = new();

    /// <summary>
    /// The family's parameter count and activation elements per image. A family missing from the table is built once
    /// (its parameters counted and cached) and assumed as activation-heavy per parameter as the densest family measured.
    /// </summary>
    public static (long Parameters, long Activations) Shape(ModelFamily family)
    {
        string name = family.Name == CntkResNet18.FamilyName || family.Name == CntkResNet18.RgbFamilyName ? "resnet18" : family.Name;
        if (Measured.TryGetValue(name, out var known)) return Scaled(known, family.Preprocessing.CropSize, name == "inception_v3" ? 299 : 224);
        long parameters = BuiltCounts.GetOrAdd(family.Name, _ =>
        {
            using var module = family.CreateImageNetLayout();
            return module.parameters().Sum(p => p.numel());
        });
        double perParameter = Measured.Values.Max(m => (double)m.Activations / m.Parameters);
        return (parameters, Math.Max((long)(parameters * Math.Min(perParameter, 10)), Measured["resnet152"].Activations));
    }

    /// <summary>Activations grow with the input's pixels.</summary>
    private static (long, long) Scaled((long Parameters, long Activations) shape, int size, int measuredAt) =>
        (shape.Parameters, (long)(shape.Activations * ((double)size * size / (measuredAt * measuredAt))));

    /// <summary>The estimate for one run of <paramref name="family"/> trained so.</summary>
    /// <param name="featureCache">whether training runs on cached backbone features (head freezing without augmentation)</param>
    public static MemoryEstimate Estimate(ModelFamily family, FreezeMode freeze, int batchSize, OptimizerKind optimizer, double momentum, bool featureCache)
    {
        var (parameters, activations) = Shape(family);
        // The model, and the pretrained state dict read beside it while it loads.
        long weights = 2 * parameters * sizeof(float);
        bool backboneTrains = freeze.TrainableStages > 0;
        // last:N trains a tail of the backbone: counted as all of it, an upper bound that needs no model built.
        long trainable = backboneTrains ? parameters : 0;
        int optimizerSlots = optimizer switch
        {
            OptimizerKind.Adam or OptimizerKind.AdamW => 2,
            _ => momentum > 0 ? 1 : 0,
        };
        long state = trainable * sizeof(float) * (1 + optimizerSlots);
        double perImage = activations * sizeof(float) * ActivationFactor;
        long batchActivations = backboneTrains
            ? (long)(perImage * batchSize)
            : (long)(perImage * InferenceActivationShare * Math.Max(featureCache ? 0 : batchSize, InferenceBatch));
        return new MemoryEstimate(RuntimeBytes, weights, state, batchActivations);
    }
}
