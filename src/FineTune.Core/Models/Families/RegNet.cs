using FineTune.Core.Data;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's RegNet X and Y (<c>models/regnet.py</c>), built by <see cref="Models.RegNet"/>: stages stem and
/// trunk_output.block1..block4 for <c>last:N</c>. Every batch norm sits in a Conv2dNormActivation Sequential, so
/// fusion needs no pairs. The SWAG tags (regnet_y_16gf, 32gf, 128gf) take 384-pixel bicubic crops; the layout is
/// the same at any size.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp regnet_y_400mf regnet_y_800mf regnet_y_1_6gf regnet_y_3_2gf regnet_y_8gf regnet_y_16gf regnet_y_32gf regnet_y_128gf regnet_x_400mf regnet_x_800mf regnet_x_1_6gf regnet_x_3_2gf regnet_x_8gf regnet_x_16gf regnet_x_32gf</c>.</remarks>
internal static class RegNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("RegNet",
    [
        new("regnet_y_400mf", Builder("regnet_y_400mf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_400mf-c65dace8.pth", Preprocessing.ImageNet(256, 224), 1000, 4344144),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_400mf-e6988f5f.pth", Preprocessing.ImageNet(232, 224), 1000, 4344144),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_800mf", Builder("regnet_y_800mf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_800mf-1b27b58c.pth", Preprocessing.ImageNet(256, 224), 1000, 6432512),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_800mf-58fc7688.pth", Preprocessing.ImageNet(232, 224), 1000, 6432512),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_1_6gf", Builder("regnet_y_1_6gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_1_6gf-b11a554e.pth", Preprocessing.ImageNet(256, 224), 1000, 11202430),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_1_6gf-0d7bc02a.pth", Preprocessing.ImageNet(232, 224), 1000, 11202430),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_3_2gf", Builder("regnet_y_3_2gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_3_2gf-b5a9779c.pth", Preprocessing.ImageNet(256, 224), 1000, 19436338),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_3_2gf-9180c971.pth", Preprocessing.ImageNet(232, 224), 1000, 19436338),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_8gf", Builder("regnet_y_8gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_8gf-d0d0e4a8.pth", Preprocessing.ImageNet(256, 224), 1000, 39381472),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_8gf-dc2b1b54.pth", Preprocessing.ImageNet(232, 224), 1000, 39381472),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_16gf", Builder("regnet_y_16gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_16gf-9e6ed7dd.pth", Preprocessing.ImageNet(256, 224), 1000, 83590140),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_16gf-3e4a00f9.pth", Preprocessing.ImageNet(232, 224), 1000, 83590140),
                new("IMAGENET1K_SWAG_E2E_V1", "https://download.pytorch.org/models/regnet_y_16gf_swag-43afe44d.pth", Preprocessing.ImageNet(384, 384, Interpolation.Bicubic), 1000, 83590140),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/regnet_y_16gf_lc_swag-f3ec0043.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 83590140),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_32gf", Builder("regnet_y_32gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_y_32gf-4dee3f7a.pth", Preprocessing.ImageNet(256, 224), 1000, 145046770),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_y_32gf-8db6d4b5.pth", Preprocessing.ImageNet(232, 224), 1000, 145046770),
                new("IMAGENET1K_SWAG_E2E_V1", "https://download.pytorch.org/models/regnet_y_32gf_swag-04fdfa75.pth", Preprocessing.ImageNet(384, 384, Interpolation.Bicubic), 1000, 145046770),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/regnet_y_32gf_lc_swag-e1583746.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 145046770),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_y_128gf", Builder("regnet_y_128gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_SWAG_E2E_V1", "https://download.pytorch.org/models/regnet_y_128gf_swag-c8ce3e52.pth", Preprocessing.ImageNet(384, 384, Interpolation.Bicubic), 1000, 644812894),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/regnet_y_128gf_lc_swag-cbe8ce12.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 644812894),
            ],
            DefaultWeights = "IMAGENET1K_SWAG_E2E_V1",
            Stages = Stages,
        },
        new("regnet_x_400mf", Builder("regnet_x_400mf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_400mf-adf1edd5.pth", Preprocessing.ImageNet(256, 224), 1000, 5495976),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_400mf-62229a5f.pth", Preprocessing.ImageNet(232, 224), 1000, 5495976),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_x_800mf", Builder("regnet_x_800mf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_800mf-ad17e45c.pth", Preprocessing.ImageNet(256, 224), 1000, 7259656),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_800mf-94a99ebd.pth", Preprocessing.ImageNet(232, 224), 1000, 7259656),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_x_1_6gf", Builder("regnet_x_1_6gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_1_6gf-e3633e7f.pth", Preprocessing.ImageNet(256, 224), 1000, 9190136),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_1_6gf-a12f2b72.pth", Preprocessing.ImageNet(232, 224), 1000, 9190136),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_x_3_2gf", Builder("regnet_x_3_2gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_3_2gf-f342aeae.pth", Preprocessing.ImageNet(256, 224), 1000, 15296552),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_3_2gf-7071aa85.pth", Preprocessing.ImageNet(232, 224), 1000, 15296552),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_x_8gf", Builder("regnet_x_8gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_8gf-03ceed89.pth", Preprocessing.ImageNet(256, 224), 1000, 39572648),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_8gf-2b70d774.pth", Preprocessing.ImageNet(232, 224), 1000, 39572648),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_x_16gf", Builder("regnet_x_16gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_16gf-2007eb11.pth", Preprocessing.ImageNet(256, 224), 1000, 54278536),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_16gf-ba3796d7.pth", Preprocessing.ImageNet(232, 224), 1000, 54278536),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
        new("regnet_x_32gf", Builder("regnet_x_32gf"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/regnet_x_32gf-9d47f8d0.pth", Preprocessing.ImageNet(256, 224), 1000, 107811560),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/regnet_x_32gf-6eb8fdc6.pth", Preprocessing.ImageNet(232, 224), 1000, 107811560),
            ],
            DefaultWeights = "IMAGENET1K_V2",
            Stages = Stages,
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(RegNet)] = ["stem", "trunk_output", "avgpool", ForwardStep.Flatten, "fc"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(RegNet)] = (w, m, path, x) => w.Child(m, path, "fc", w.Flatten(path, w.Children(m, path, x, "stem", "trunk_output", "avgpool"))),
            ["ResBottleneckBlock"] = (w, m, path, x) =>
            {
                var shortcut = m.named_children().Any(c => c.name == "proj") ? w.Child(m, path, "proj", x) : x;
                return w.Relu(path, w.Add(path, w.Child(m, path, "f", x), shortcut));
            },
        },
    };

    private static Func<nn.Module<Tensor, Tensor>> Builder(string name) => Models.RegNet.Builders.Single(b => b.Name == name).Create;

    /// <summary>The stem, then trunk_output's four stages (trunk_output alone would make <c>last:1</c> the whole trunk).</summary>
    private static IReadOnlyList<string> Stages(nn.Module _) =>
        ["stem", "trunk_output.block1", "trunk_output.block2", "trunk_output.block3", "trunk_output.block4"];
}
