using FineTune.Core.Models.Families;

namespace FineTune.Core.Models;

/// <summary>Every model family the service knows (one file each, under Models/Families) and their builders by name.</summary>
public static class ModelRegistry
{
    /// <summary>The families, in the order <c>finetune models</c> lists their builders.</summary>
    internal static IReadOnlyList<ModelArchitecture> Architectures { get; } =
    [
        CntkResNetFamily.Architecture,
        ResNetFamily.Architecture,
        VggFamily.Architecture,
        MobileNetFamily.Architecture,
        AlexNetFamily.Architecture,
        GoogLeNetFamily.Architecture,
        InceptionFamily.Architecture,
        DenseNetFamily.Architecture,
        RegNetFamily.Architecture,
        EfficientNetFamily.Architecture,
        ConvNeXtFamily.Architecture,
        ShuffleNetV2Family.Architecture,
        MnasNetFamily.Architecture,
        SqueezeNetFamily.Architecture,
        VisionTransformerFamily.Architecture,
        SwinFamily.Architecture,
        MaxVitFamily.Architecture,
    ];

    private static readonly ModelFamily[] All = [.. Architectures.SelectMany(a => a.Builders.Select(b => b with { Architecture = a.Name }))];

    public static IReadOnlyList<ModelFamily> Families => All;

    /// <summary>
    /// The architecture that declares the builder; one that is none of the registry's (a test's) declares nothing. Forwards and
    /// fusion pairs are looked up in the model's own architecture: type names need only be unique within a family
    /// (MobileNet, MNASNet and ShuffleNetV2 all have an InvertedResidual).
    /// </summary>
    internal static ModelArchitecture ArchitectureOf(ModelFamily family) =>
        Architectures.FirstOrDefault(a => a.Name == family.Architecture) ?? new ModelArchitecture(family.Architecture, []);

    public static ModelFamily Get(string name) =>
        Array.Find(All, f => f.Name == name)
        ?? throw new UnknownModelFamilyException(name, All.Select(f => f.Name));
}

public sealed class UnknownModelFamilyException(string name, IEnumerable<string> known)
    : BadInputException($"unknown model family '{name}'; known: {string.Join(", ", known)}")
{
    public string Family { get; } = name;
}
