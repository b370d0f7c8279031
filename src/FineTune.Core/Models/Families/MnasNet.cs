using FineTune.Core.Export;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's MNASNet (<c>models/mnasnet.py</c>), built by <see cref="Models.MnasNet"/>: stages layers.N (the stem's
/// layers, the six stacks and the head convolution, those with parameters) for <c>last:N</c>. Its batch norms all follow
/// a convolution inside a Sequential, so fusion needs no pairs.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp mnasnet0_5 mnasnet0_75 mnasnet1_0 mnasnet1_3</c>.</remarks>
internal static class MnasNetFamily
{
    /// <summary>
    /// torchvision's MNASNet._load_from_state_dict refuses a state dict that does not state its version (a plain dict, as
    /// safetensors' load_file gives, states none); ours are all version 2, whose stem scales with the width.
    /// </summary>
    private const int StateDictVersion = 2;

    public static ModelArchitecture Architecture { get; } = new("MNASNet",
    [
        new("mnasnet0_5", Builder("mnasnet0_5"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mnasnet0.5_top1_67.823-3ffadce67e.pth", Preprocessing.ImageNet(256, 224), 1000, 2218512),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            Stages = Stages,
            StateDictVersion = StateDictVersion,
        },
        new("mnasnet0_75", Builder("mnasnet0_75"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mnasnet0_75-7090bc5f.pth", Preprocessing.ImageNet(232, 224), 1000, 3170208),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            Stages = Stages,
            StateDictVersion = StateDictVersion,
        },
        new("mnasnet1_0", Builder("mnasnet1_0"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mnasnet1.0_top1_73.512-f206786ef8.pth", Preprocessing.ImageNet(256, 224), 1000, 4383312),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            Stages = Stages,
            StateDictVersion = StateDictVersion,
        },
        new("mnasnet1_3", Builder("mnasnet1_3"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mnasnet1_3-a4c69d6f.pth", Preprocessing.ImageNet(232, 224), 1000, 6282256),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            Stages = Stages,
            StateDictVersion = StateDictVersion,
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(Models.MnasNet)] = ["layers", ForwardStep.Op(x => x.mean([2, 3])), "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(Models.MnasNet)] = (w, m, path, x) => w.Child(m, path, "classifier", w.ReduceMean(path, w.Child(m, path, "layers", x), 2, 3)),
            // One Sequential, its input added exactly when the shape stays (same channels, stride 1).
            ["InvertedResidual"] = (w, m, path, x) =>
            {
                var output = w.Child(m, path, "layers", x);
                return output.Trace.shape.SequenceEqual(x.Trace.shape) ? w.Add(path, output, x) : output;
            },
        },
    };

    /// <summary>The builder's constructor, owned by <see cref="Models.MnasNet.Builders"/>.</summary>
    private static Func<Models.MnasNet> Builder(string name) => Models.MnasNet.Builders.Single(b => b.Name == name).Create;

    /// <summary>All of torchvision's backbone is one Sequential, <c>layers</c>: its children with parameters, like a <c>features</c>.</summary>
    private static IReadOnlyList<string> Stages(nn.Module model) =>
        [.. model.named_children().Single(c => c.name == "layers").module.named_children()
            .Where(c => c.module.parameters().Any()).Select(c => $"layers.{c.name}")];
}
