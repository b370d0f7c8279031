using FineTune.Core.Models;

namespace FineTune.Core.Weights;

/// <summary>
/// One published checkpoint of a builder (an entry of torchvision's <c>*_Weights</c> enums), with the
/// preprocessing its weights were trained with (<c>weights.transforms()</c>) and its meta.
/// </summary>
/// <param name="Tag">torchvision's name for it: IMAGENET1K_V1, IMAGENET1K_V2, IMAGENET1K_SWAG_E2E_V1 ...</param>
/// <param name="Categories">how many classes its head has (<c>len(meta["categories"])</c>)</param>
/// <param name="NumParams">torchvision's <c>meta["num_params"]</c></param>
public sealed record WeightsTag(string Tag, string Url, Preprocessing Preprocessing, int Categories, long NumParams)
{
    public string FileName => Url[(Url.LastIndexOf('/') + 1)..];

    /// <summary>The leading hex digits of the file's SHA-256, in its name: what torchvision's own download checks.</summary>
    public string Sha256Prefix => WeightsFetcher.TorchvisionHashPrefix(FileName)
        ?? throw new InvalidOperationException($"{FileName} has no hash in its name");
}

/// <summary>A builder's weights tag, as the table lists it.</summary>
public sealed record TorchvisionCheckpoint(ModelFamily Family, WeightsTag Weights)
{
    public string Tag => Weights.Tag;
    public string Url => Weights.Url;
    public string FileName => Weights.FileName;
    public string Sha256Prefix => Weights.Sha256Prefix;
}

/// <summary>
/// Weights by name: <c>torchvision</c> or <c>DEFAULT</c> (torchvision's best weights for the builder) or a tag,
/// resolved through the builders' weights tables (<see cref="ModelFamily.Weights"/>) to torchvision's published URL.
/// A download is verified by the SHA-256 prefix in the file's name, as torchvision's own loader does, or by the
/// job's sha256 when it gives one; the model card records the full hash.
/// </summary>
public static class TorchvisionWeights
{
    public const string Default = "torchvision";
    /// <summary>torchvision's own name for the best weights of a builder.</summary>
    public const string DefaultTag = "DEFAULT";
    public const string ModelsUrl = "https://download.pytorch.org/models/";

    /// <summary>Every tag of every builder.</summary>
    public static IReadOnlyList<TorchvisionCheckpoint> All { get; } =
        [.. ModelRegistry.Families.SelectMany(f => f.Weights.Select(w => new TorchvisionCheckpoint(f, w)))];

    /// <summary>Whether a weights source is a name this table resolves (rather than a file, URL or blob).</summary>
    public static bool IsName(string source) => source is Default or DefaultTag || All.Any(c => c.Tag == source);

    /// <summary>The weights a name stands for; null when the builder has none by that name.</summary>
    public static WeightsTag? Resolve(ModelFamily family, string name) =>
        name is Default or DefaultTag
            ? family.Weights.FirstOrDefault(w => w.Tag == family.DefaultWeights)
            : family.Weights.FirstOrDefault(w => w.Tag == name);

    /// <summary>
    /// The tag whose torchvision file a weights source names: a local copy, a mirror's URL or an uploaded blob that keeps
    /// torchvision's file name (<c>vit_h_14_swag-80465313.pth</c>) holds that tag's weights, trained with its preprocessing.
    /// </summary>
    public static WeightsTag? ByFileName(ModelFamily family, string source)
    {
        string name = WeightsFetcher.FileName(source);
        return family.Weights.FirstOrDefault(w => w.FileName == name);
    }

    /// <inheritdoc cref="Resolve(ModelFamily, string)"/>
    public static WeightsTag? Resolve(string family, string name) =>
        ModelRegistry.Families.FirstOrDefault(f => f.Name == family) is { } builder ? Resolve(builder, name) : null;

    /// <summary>"torchvision, DEFAULT, IMAGENET1K_V1 or IMAGENET1K_V2": the names a builder has, for error messages.</summary>
    public static string NamesFor(string family)
    {
        var tags = ModelRegistry.Families.FirstOrDefault(f => f.Name == family)?.Weights ?? [];
        var names = tags.Select(w => w.Tag).Prepend(DefaultTag).Prepend(Default).ToList();
        return string.Join(", ", names[..^1]) + " or " + names[^1];
    }
}
