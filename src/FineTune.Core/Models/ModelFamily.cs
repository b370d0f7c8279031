using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>
/// One architecture the service can fine-tune: how to build it with torchvision's parameter names,
/// where its classifier head is, what input its pretrained weights expect, and its stages for
/// partial freezing.
/// </summary>
public sealed record ModelFamily(
    string Name,
    Func<nn.Module<Tensor, Tensor>> CreateImageNetLayout,
    string HeadPath,
    Preprocessing Preprocessing,
    IReadOnlyList<string>? IgnoredCheckpointPrefixes = null,
    Func<Dictionary<string, Tensor>>? BundledWeights = null)
{
    /// <summary>Whether pretrained weights ship with the app, so the family fine-tunes with no download.</summary>
    public bool HasBundledWeights => BundledWeights is not null;

    /// <summary>Checkpoint keys under these prefixes exist in torchvision but not here (googlenet's aux heads).</summary>
    public IReadOnlyList<string> IgnoredPrefixes => IgnoredCheckpointPrefixes ?? [];

    public bool IsHeadKey(string key) => key.StartsWith(HeadPath + ".", StringComparison.Ordinal);

    public override string ToString() => Name;
}
