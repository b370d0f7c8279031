using FineTune.Core.Export;
using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>Writes one module type's forward as ONNX operators (see <see cref="OnnxModuleWriter"/>).</summary>
internal delegate OnnxValue OnnxForward(OnnxModuleWriter writer, nn.Module module, string path, OnnxValue x);

/// <summary>
/// One model family, declared by one file under Models/Families (like torchvision's <c>models/resnet.py</c>): its
/// builders with their heads, stages, weights tables and PyTorch constructors, the ONNX forwards of the module types
/// it defines and the (convolution, batch norm) pairs those types apply back to back. <see cref="ModelRegistry"/>
/// is the list of them; nothing else knows a family by name.
/// </summary>
/// <param name="Name">the family as torchvision's documentation names it (ResNet, VGG, MobileNet ...)</param>
internal sealed record ModelArchitecture(string Name, IReadOnlyList<ModelFamily> Builders)
{
    /// <summary>The ONNX forward of each module type this family defines, by its type's name (<c>GetType().Name</c>).</summary>
    public IReadOnlyDictionary<string, OnnxForward> OnnxForwards { get; init; } = new Dictionary<string, OnnxForward>();

    /// <summary>
    /// For <see cref="InferenceFusion"/>: the (convolution, batch norm) pairs, by child name, that a module type's forward
    /// applies back to back with nothing between, by the type's name. Pairs inside a plain Sequential are found without this.
    /// </summary>
    public IReadOnlyDictionary<string, (string Conv, string Norm)[]> FusionPairs { get; init; } = new Dictionary<string, (string Conv, string Norm)[]>();

    /// <summary>
    /// A model type's forward as its steps in order, by the type's name, so it can be split at a stage: where a type has
    /// them, <c>last:N</c> trains on the frozen stages' cached output (<see cref="StageForward"/>); where not, on images.
    /// </summary>
    public IReadOnlyDictionary<string, ForwardStep[]> ForwardSteps { get; init; } = new Dictionary<string, ForwardStep[]>();
}
