using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>
/// One builder the service can fine-tune, by its torchvision name (what <c>--model</c> names: resnet50,
/// vgg16_bn ...): how to build it with torchvision's parameter names, where its classifier head is, what
/// input it takes without named weights, its weights tags and its stages for partial freezing. Builders are
/// declared by their architecture's file (<see cref="ModelArchitecture"/>, under Models/Families).
/// </summary>
/// <param name="Preprocessing">the input without named weights (random init, a file, a URL); each weights tag has its own</param>
public sealed record ModelFamily(
    string Name,
    Func<nn.Module<Tensor, Tensor>> CreateImageNetLayout,
    string HeadPath,
    Preprocessing Preprocessing)
{
    /// <summary>The architecture (<see cref="ModelArchitecture.Name"/>: ResNet, VGG …) that declares this builder; set by <see cref="ModelRegistry"/>.</summary>
    public string Architecture { get; init; } = "";

    /// <summary>torchvision's published weights of this builder, in torchvision's order (<c>get_model_weights(name)</c>).</summary>
    public IReadOnlyList<WeightsTag> Weights { get; init; } = [];

    /// <summary>The tag torchvision's <c>DEFAULT</c> (and our <c>torchvision</c>) stands for.</summary>
    public string? DefaultWeights { get; init; }

    /// <summary>Checkpoint keys under these prefixes exist in torchvision but not here (googlenet's aux heads).</summary>
    public IReadOnlyList<string> IgnoredPrefixes { get; init; } = [];

    /// <summary>
    /// A checkpoint key as this builder names it, where published checkpoints predate its layout (ViT's MLP); applied
    /// to every checkpoint key on loading, as torchvision's load hooks do.
    /// </summary>
    public Func<string, string>? UpgradeKey { get; init; }

    /// <summary>Weights that ship with the app, so the family fine-tunes with no download.</summary>
    public Func<Dictionary<string, Tensor>>? BundledWeights { get; init; }

    /// <summary>Whether pretrained weights ship with the app, so the family fine-tunes with no download.</summary>
    public bool HasBundledWeights => BundledWeights is not null;

    /// <summary>
    /// Classifiers besides the head that torchvision sizes to the classes too (inception's AuxLogits.fc), so a
    /// published state dict loads into torchvision's model built for those classes. Forward never uses them:
    /// they are swapped like the head but neither trained nor loaded from pretrained weights.
    /// </summary>
    public IReadOnlyList<string> AuxiliaryHeadPaths { get; init; } = [];

    /// <summary>
    /// The Python expression that builds this builder in torchvision for <c>classes</c> classes, ready for a
    /// published state dict (strict). torchvision's <c>torchvision.models.NAME(num_classes=N)</c> unless the
    /// architecture says otherwise.
    /// </summary>
    public Func<int, string>? Constructor { get; init; }

    /// <summary>
    /// What the model's forward applies to the head's output to give the logits, for training and evaluating the head on
    /// cached features, which calls the head alone (SqueezeNet's 1×1 convolution head: ReLU, global average pooling,
    /// flatten); null where the head's output is the logits (a Linear head).
    /// </summary>
    public Func<Tensor, Tensor>? AfterHead { get; init; }

    /// <summary>
    /// The version torchvision's model class requires a state dict to state in its <c>_metadata</c> (MNASNet refuses
    /// one that states none); a plain dict, as safetensors' <c>load_file</c> gives, states none, so the published script
    /// sets it. Null where the class needs none.
    /// </summary>
    public int? StateDictVersion { get; init; }

    /// <summary>
    /// The backbone's stages, input to output, for <c>last:N</c>; where null, the model's top-level children that
    /// hold backbone parameters, a <c>features</c> Sequential counted child by child.
    /// </summary>
    public Func<nn.Module, IReadOnlyList<string>>? Stages { get; init; }

    /// <summary>
    /// Where the builder's layout fixes the input's size (ViT's position embedding has one entry per patch): the layout and
    /// its PyTorch constructor (for a number of classes) at a square input's size, as torchvision builds it for weights
    /// trained at another size (<c>image_size=weights.meta["min_size"]</c>). Null where the layout takes any size.
    /// </summary>
    public SizedLayout? LayoutForSize { get; init; }

    /// <summary>
    /// This builder for <paramref name="input"/>: laid out for its crop where <see cref="LayoutForSize"/> says the layout
    /// depends on it (ViT's SWAG end-to-end weights at 384 to 518 pixels), else itself. What builds a model for a run's
    /// preprocessing (training, prediction, export, the published script) asks for it so.
    /// </summary>
    public ModelFamily For(Preprocessing input) =>
        LayoutForSize is not { } sized || input.CropSize == Preprocessing.CropSize ? this : this with
        {
            CreateImageNetLayout = () => sized.Create(input.CropSize),
            Constructor = classes => sized.Constructor(classes, input.CropSize),
            Preprocessing = input,
        };

    public string PyTorchConstructor(int classes) =>
        Constructor?.Invoke(classes) ?? $"torchvision.models.{Name}(num_classes={classes})";

    /// <summary>
    /// The preprocessing for a weights source: the named tag's own, or that of the tag whose torchvision file it names
    /// (<see cref="TorchvisionWeights.ByFileName"/>), else <see cref="Preprocessing"/>.
    /// </summary>
    public Preprocessing PreprocessingFor(string? weightsSource) =>
        weightsSource is null ? Preprocessing
            : (TorchvisionWeights.Resolve(this, weightsSource) ?? TorchvisionWeights.ByFileName(this, weightsSource))?.Preprocessing ?? Preprocessing;

    /// <summary>A preprocessing read back from JSON, with the mean image it stated attached again.</summary>
    public Preprocessing Restore(Preprocessing stored) => stored with { MeanImage = Preprocessing.MeanImage };

    public bool IsHeadKey(string key) => key.StartsWith(HeadPath + ".", StringComparison.Ordinal);

    /// <summary>Whether the key belongs to the head or an auxiliary head: what the fine-tune replaces.</summary>
    public bool IsClassifierKey(string key) =>
        IsHeadKey(key) || AuxiliaryHeadPaths.Any(path => key.StartsWith(path + ".", StringComparison.Ordinal));

    public override string ToString() => Name;
}

/// <summary>A layout built for one input size (<see cref="ModelFamily.LayoutForSize"/>).</summary>
/// <param name="Create">the ImageNet layout for square inputs of the given size</param>
/// <param name="Constructor">the PyTorch expression building it for (classes, size)</param>
public sealed record SizedLayout(Func<int, nn.Module<Tensor, Tensor>> Create, Func<int, int, string> Constructor);
