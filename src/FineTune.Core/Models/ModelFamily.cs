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
    Func<Dictionary<string, Tensor>>? BundledWeights = null,
    IReadOnlyList<string>? AuxiliaryHeads = null)
{
    /// <summary>Whether pretrained weights ship with the app, so the family fine-tunes with no download.</summary>
    public bool HasBundledWeights => BundledWeights is not null;

    /// <summary>Checkpoint keys under these prefixes exist in torchvision but not here (googlenet's aux heads).</summary>
    public IReadOnlyList<string> IgnoredPrefixes => IgnoredCheckpointPrefixes ?? [];

    /// <summary>
    /// Classifiers besides the head that torchvision sizes to the classes too (inception's AuxLogits.fc), so a
    /// published state dict loads into torchvision's model built for those classes. Forward never uses them:
    /// they are swapped like the head but neither trained nor loaded from pretrained weights.
    /// </summary>
    public IReadOnlyList<string> AuxiliaryHeadPaths => AuxiliaryHeads ?? [];

    public bool IsHeadKey(string key) => key.StartsWith(HeadPath + ".", StringComparison.Ordinal);

    /// <summary>Whether the key belongs to the head or an auxiliary head: what the fine-tune replaces.</summary>
    public bool IsClassifierKey(string key) =>
        IsHeadKey(key) || AuxiliaryHeadPaths.Any(path => key.StartsWith(path + ".", StringComparison.Ordinal));

    public override string ToString() => Name;
}
