using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;

namespace FineTune.Core.Engine;

/// <summary>A run's estimated peak resident memory, by part, in bytes.</summary>
/// <param name="Runtime">the process with TorchSharp loaded and a run's fixed costs (dataset scan, pooled models, buffers)</param>
/// <param name="Weights">the model's parameters (weights files are read into them tensor by tensor)</param>
/// <param name="TrainingState">gradients and optimizer state of what trains</param>
/// <param name="Activations">what one batch keeps for the backward pass (or passes through, when nothing before the head trains)</param>
public sealed record MemoryEstimate(long Runtime, long Weights, long TrainingState, long Activations)
{
    /// <summary>Decoded images the run may keep at the input size (for its feature pass, or across its epochs on images).</summary>
    public long DecodedImages { get; init; }

    public long TotalBytes => Runtime + Weights + TrainingState + Activations + DecodedImages;

    public long TotalMegabytes => (TotalBytes + (1L << 20) - 1) >> 20;

    public override string ToString() =>
        $"~{TotalMegabytes} MB (weights {Weights >> 20} MB, gradients and optimizer state {TrainingState >> 20} MB, activations {Activations >> 20} MB, {(DecodedImages > 0 ? $"decoded images {DecodedImages >> 20} MB, " : "")}runtime {Runtime >> 20} MB)";
}

/// <summary>
/// Tensor-free arithmetic for a run's peak memory, so a job that cannot fit a worker is refused when submitted instead
/// of being killed for memory mid-run. Calibrated on resnet18-cntk (the figures at <see cref="ActivationFactor"/>); other
/// families scale by their parameter count and by the activations one image produces (torchvision's builders, counted
/// by <c>bench/memory_table.py</c> with torchvision 0.14: every leaf module's output and what attention computes inside
/// (ViT's and Swin's query, key and value projections, every attention's weights)
/// for one image at the largest crop of the builder's weights).
/// </summary>
public static class PeakMemory
{
    // Calibration: peak RSS of `finetune train` (/usr/bin/time -v; resnet18-cntk, 100 tuxpaint photos of 2 classes,
    // 1 epoch, CPU, 2 cores), in MiB, against this estimate:
    //   freeze head, feature cache, batch 16:    767 measured,   939 estimated
    //   freeze full, batch 16:                  1147 measured,  1099 estimated
    //   freeze full, batch 64:                  1819 measured,  2194 estimated
    //   freeze last:1, batch 64:                1131 measured,  2194 estimated (counted as full: an upper bound)
    //   freeze full, batch 256 (issue 23):     ~6600 measured,  6576 estimated
    //   swin_t, freeze full, batch 16:          3174 measured,  2718 estimated (48 photos, 224 px)
    // The runs at 16 and 256 give the runtime (~600 MiB) and the slope: 22.7 MiB per image, 0.8 × 4 bytes × resnet18's
    // 7.48 M counted elements (in-place ReLUs are counted twice; libtorch frees some outputs once used). Smaller batches
    // take less per image (14 MiB from 16 to 64): the estimate errs on the side of refusing.
    // Without a graph (the feature pass, evaluation) a forward holds a layer's input and output and a residual at once:
    // three of the family's largest activation, not a share of them all (a deep transformer holds 1/32 of its layers').

    /// <summary>Bytes a run takes besides its model and batches: the process with libtorch loaded, the scan, buffers.</summary>
    public const long RuntimeBytes = 600L << 20;

    /// <summary>Bytes kept per counted float of one image's activations through a training forward and backward (see above).</summary>
    public const double ActivationFactor = 0.8;

    /// <summary>How many of the family's largest activation a forward without a graph holds at once (see above).</summary>
    public const int InferenceHeldActivations = 3;

    /// <summary>The most images the feature pass and evaluation push through the model at once (the engine's inference batch).</summary>
    public const int InferenceBatch = 32;

    // bench/memory_table.py: parameters, activation elements per image, the largest of them, and the input size counted at.
    private static readonly Dictionary<string, (long Parameters, long Activations, long Largest, int Size)> Measured = new()
    {
        ["alexnet"] = (61100840, 1098216, 193600, 224),
        ["convnext_base"] = (88591464, 67189736, 1605632, 224),
        ["convnext_large"] = (197767336, 100784104, 2408448, 224),
        ["convnext_small"] = (50223688, 50392552, 1204224, 224),
        ["convnext_tiny"] = (28589128, 31426024, 1204224, 224),
        ["densenet121"] = (7978856, 38561256, 802816, 224),
        ["densenet161"] = (28681000, 70363432, 1204224, 224),
        ["densenet169"] = (14149480, 45648616, 802816, 224),
        ["densenet201"] = (20013928, 57565416, 802816, 224),
        ["efficientnet_b0"] = (5288548, 19874240, 1204224, 224),
        ["efficientnet_b1"] = (7794184, 32224200, 1382400, 240),
        ["efficientnet_b2"] = (9109994, 47979388, 1990656, 288),
        ["efficientnet_b3"] = (12233232, 70559480, 3240000, 300),
        ["efficientnet_b4"] = (19341616, 146922928, 5198400, 380),
        ["efficientnet_b5"] = (30389784, 294158008, 7485696, 456),
        ["efficientnet_b6"] = (43040704, 498299320, 13381632, 528),
        ["efficientnet_b7"] = (66347960, 864484392, 17280000, 600),
        ["efficientnet_v2_l"] = (118515272, 479459688, 3686400, 480),
        ["efficientnet_v2_m"] = (54139356, 272195024, 2764800, 480),
        ["efficientnet_v2_s"] = (21458488, 108275864, 1769472, 384),
        ["googlenet"] = (6624904, 7872840, 802816, 224),
        ["inception_v3"] = (23834568, 18516328, 1382976, 299),
        ["maxvit_t"] = (30919624, 87462568, 3211264, 224),
        ["mnasnet0_5"] = (2218512, 8822280, 301056, 224),
        ["mnasnet0_75"] = (3170208, 13690136, 602112, 224),
        ["mnasnet1_0"] = (4383312, 15713640, 602112, 224),
        ["mnasnet1_3"] = (6282256, 21145192, 903168, 224),
        ["mobilenet_v2"] = (3504872, 19464296, 1204224, 224),
        ["mobilenet_v3_large"] = (5483032, 12643984, 802816, 224),
        ["mobilenet_v3_small"] = (2542856, 4106768, 225792, 224),
        ["regnet_x_16gf"] = (54278536, 75066344, 3211264, 224),
        ["regnet_x_1_6gf"] = (9190136, 23317288, 903168, 224),
        ["regnet_x_32gf"] = (107811560, 106939552, 4214784, 224),
        ["regnet_x_3_2gf"] = (15296552, 33515656, 1204224, 224),
        ["regnet_x_400mf"] = (5495976, 9320808, 401408, 224),
        ["regnet_x_800mf"] = (7259656, 15054472, 802816, 224),
        ["regnet_x_8gf"] = (39572648, 41504744, 1003520, 224),
        ["regnet_y_128gf"] = (644812894, 620543468, 19464192, 384),
        ["regnet_y_16gf"] = (83590140, 198756128, 8257536, 384),
        ["regnet_y_1_6gf"] = (11202430, 23777492, 602112, 224),
        ["regnet_y_32gf"] = (145046770, 261536836, 8552448, 384),
        ["regnet_y_3_2gf"] = (19436338, 33205460, 903168, 224),
        ["regnet_y_400mf"] = (4344144, 11380576, 602112, 224),
        ["regnet_y_800mf"] = (6432512, 15845768, 802816, 224),
        ["regnet_y_8gf"] = (39381472, 57844760, 2809856, 224),
        ["resnet101"] = (44549160, 47394280, 802816, 224),
        ["resnet152"] = (60192808, 66360808, 802816, 224),
        ["resnet18"] = (11689512, 7477736, 802816, 224),
        ["resnet34"] = (21797672, 11240936, 802816, 224),
        ["resnet50"] = (25557032, 32040424, 802816, 224),
        ["resnext101_32x8d"] = (88791336, 92326888, 1605632, 224),
        ["resnext101_64x4d"] = (83455272, 92326888, 1605632, 224),
        ["resnext50_32x4d"] = (25028904, 41900008, 802816, 224),
        ["shufflenet_v2_x0_5"] = (1366792, 2945704, 301056, 224),
        ["shufflenet_v2_x1_0"] = (2278604, 5464696, 301056, 224),
        ["shufflenet_v2_x1_5"] = (3503624, 7687336, 301056, 224),
        ["shufflenet_v2_x2_0"] = (7393996, 10356856, 382592, 224),
        ["squeezenet1_0"] = (1248424, 9333112, 1140576, 224),
        ["squeezenet1_1"] = (1235496, 5596408, 788544, 224),
        ["swin_b"] = (87768224, 75564968, 1605632, 224),
        ["swin_s"] = (49606258, 56673976, 1204224, 224),
        ["swin_t"] = (28288354, 35421304, 1204224, 224),
        ["swin_v2_b"] = (87930848, 105756256, 2097152, 256),
        ["swin_v2_s"] = (49737442, 80699842, 1572864, 256),
        ["swin_v2_t"] = (28351570, 49591090, 1572864, 256),
        ["vgg11"] = (132863336, 16433128, 3211264, 224),
        ["vgg11_bn"] = (132868840, 23859176, 3211264, 224),
        ["vgg13"] = (133047848, 26066920, 3211264, 224),
        ["vgg13_bn"] = (133053736, 38309864, 3211264, 224),
        ["vgg16"] = (138357544, 28676072, 3211264, 224),
        ["vgg16_bn"] = (138365992, 42223592, 3211264, 224),
        ["vgg19"] = (143667240, 31285224, 3211264, 224),
        ["vgg19_bn"] = (143678248, 46137320, 3211264, 224),
        ["vit_b_16"] = (86859496, 160941688, 3995148, 384),
        ["vit_b_32"] = (88224232, 10152232, 153600, 224),
        ["vit_h_14"] = (633470440, 2144652520, 30030400, 518),
        ["vit_l_16"] = (305174504, 935587176, 16810000, 512),
        ["vit_l_32"] = (306535400, 26918376, 204800, 224),
        ["wide_resnet101_2"] = (126886696, 62371816, 802816, 224),
        ["wide_resnet50_2"] = (68883240, 41900008, 802816, 224),
    };

    /// <summary>Every family the registry has, at its own input size (a family missing from the table is a build error a test catches).</summary>
    public static (long Parameters, long Activations, long Largest) Shape(ModelFamily family)
    {
        string name = family.Name == CntkResNet18.FamilyName || family.Name == CntkResNet18.RgbFamilyName ? "resnet18" : family.Name;
        if (!Measured.TryGetValue(name, out var known))
            throw new InvalidOperationException($"{family.Name} has no row in PeakMemory's table: run bench/memory_table.py {family.Name}");
        // Activations grow with the input's pixels (a ViT's attention faster: each is counted at its largest input).
        double scale = (double)family.Preprocessing.CropSize * family.Preprocessing.CropSize / ((double)known.Size * known.Size);
        return (known.Parameters, (long)(known.Activations * scale), (long)(known.Largest * scale));
    }

    /// <summary>The estimate for one run of <paramref name="family"/> trained so.</summary>
    /// <param name="featureCache">whether training runs on cached backbone features (head freezing without augmentation)</param>
    public static MemoryEstimate Estimate(ModelFamily family, FreezeMode freeze, int batchSize, OptimizerKind optimizer, double momentum, bool featureCache)
    {
        var (parameters, activations, largest) = Shape(family);
        // The model once: weights are read into it tensor by tensor (StateDictReader).
        long weights = parameters * sizeof(float);
        bool backboneTrains = freeze.TrainableStages > 0;
        // last:N trains a tail of the backbone: counted as all of it, an upper bound that needs no model built.
        long trainable = backboneTrains ? parameters : 0;
        int optimizerSlots = optimizer switch
        {
            OptimizerKind.Adam or OptimizerKind.AdamW => 2,
            _ => momentum > 0 ? 1 : 0,
        };
        long state = trainable * sizeof(float) * (1 + optimizerSlots);
        long batchActivations = backboneTrains
            ? (long)(activations * sizeof(float) * ActivationFactor * batchSize)
            : largest * sizeof(float) * InferenceHeldActivations * Math.Max(featureCache ? 0 : batchSize, InferenceBatch);
        return new MemoryEstimate(RuntimeBytes, weights, state, batchActivations);
    }
}
