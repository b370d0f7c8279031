namespace FineTune.Core.Weights;

/// <summary>One of torchvision's published ImageNet checkpoints for a family (torchvision's <c>*_Weights</c> enums).</summary>
/// <param name="Tag">torchvision's name for it: IMAGENET1K_V1, IMAGENET1K_V2</param>
public sealed record TorchvisionCheckpoint(string Family, string Tag, string Url)
{
    public string FileName => Url[(Url.LastIndexOf('/') + 1)..];

    /// <summary>The leading hex digits of the file's SHA-256, in its name: what torchvision's own download checks.</summary>
    public string Sha256Prefix => WeightsFetcher.TorchvisionHashPrefix(FileName)
        ?? throw new InvalidOperationException($"{FileName} has no hash in its name");
}

/// <summary>
/// Weights by name: <c>torchvision</c> (torchvision's default for the family: V2 where there is one) or a tag,
/// resolved to torchvision's published URL. A download is verified by the SHA-256 prefix in the file's name, as
/// torchvision's own loader does, or by the job's sha256 when it gives one; the model card records the full hash.
/// </summary>
public static class TorchvisionWeights
{
    public const string Default = "torchvision";
    public const string ModelsUrl = "https://download.pytorch.org/models/";

    private static readonly (string Family, string V1, string? V2)[] Files =
    [
        ("resnet18", "resnet18-f37072fd.pth", null),
        ("resnet34", "resnet34-b627a593.pth", null),
        ("resnet50", "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
        ("resnet101", "resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
        ("resnet152", "resnet152-394f9c45.pth", "resnet152-f82ba261.pth"),
        ("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth", "resnext50_32x4d-1a0047aa.pth"),
        ("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth", "wide_resnet50_2-9ba9bcbe.pth"),
        ("vgg11", "vgg11-8a719046.pth", null),
        ("vgg11_bn", "vgg11_bn-6002323d.pth", null),
        ("vgg13", "vgg13-19584684.pth", null),
        ("vgg13_bn", "vgg13_bn-abd245e5.pth", null),
        ("vgg16", "vgg16-397923af.pth", null),
        ("vgg16_bn", "vgg16_bn-6c64b313.pth", null),
        ("vgg19", "vgg19-dcbb9e9d.pth", null),
        ("vgg19_bn", "vgg19_bn-c79401a0.pth", null),
        ("mobilenet_v2", "mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"),
        ("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", null),
        ("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", "mobilenet_v3_large-5c1a4163.pth"),
        ("alexnet", "alexnet-owt-7be5be79.pth", null),
        ("googlenet", "googlenet-1378be20.pth", null),
        ("inception_v3", "inception_v3_google-0cc3c7bd.pth", null),
        ("densenet121", "densenet121-a639ec97.pth", null),
        ("densenet161", "densenet161-8d451a50.pth", null),
        ("densenet169", "densenet169-b2777c0a.pth", null),
        ("densenet201", "densenet201-c1103571.pth", null),
    ];

    public static IReadOnlyList<TorchvisionCheckpoint> All { get; } =
    [
        .. Files.SelectMany(f => f.V2 is null
            ? new[] { new TorchvisionCheckpoint(f.Family, "IMAGENET1K_V1", ModelsUrl + f.V1) }
            : [new TorchvisionCheckpoint(f.Family, "IMAGENET1K_V1", ModelsUrl + f.V1), new TorchvisionCheckpoint(f.Family, "IMAGENET1K_V2", ModelsUrl + f.V2)]),
    ];

    /// <summary>Whether a weights source is a name this table resolves (rather than a file, URL or blob).</summary>
    public static bool IsName(string source) => source == Default || All.Any(c => c.Tag == source);

    /// <summary>The checkpoint a name stands for; null when the family has none by that name.</summary>
    public static TorchvisionCheckpoint? Resolve(string family, string name)
    {
        var published = All.Where(c => c.Family == family).ToList();
        return name == Default ? published.LastOrDefault() : published.FirstOrDefault(c => c.Tag == name);
    }

    /// <summary>"IMAGENET1K_V1 or IMAGENET1K_V2": the names a family has, for error messages.</summary>
    public static string NamesFor(string family) =>
        string.Join(" or ", All.Where(c => c.Family == family).Select(c => c.Tag).Prepend(Default));
}
