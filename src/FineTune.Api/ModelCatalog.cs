using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Weights;

namespace FineTune.Api;

/// <summary>GET /api/models: the model families (architectures), their builders (a job's <c>model</c>) and each builder's weights.</summary>
public sealed record ModelCatalog(IReadOnlyList<ModelFamilyView> Families)
{
    /// <summary>The registry's families in <c>finetune models</c>' order.</summary>
    public static ModelCatalog Current { get; } = new(
        [.. ModelRegistry.Families.GroupBy(f => f.Architecture).Select(g => new ModelFamilyView(g.Key, [.. g.Select(ModelBuilderView.Of)]))]);
}

public sealed record ModelFamilyView(string Name, IReadOnlyList<ModelBuilderView> Builders);

/// <summary>
/// One builder: its name (a job's <c>model</c>), whether weights ship with the app (<c>weights.source</c> <see cref="WeightsFetcher.Bundled"/>),
/// the tag torchvision's <c>DEFAULT</c> stands for, its input without named weights, and torchvision's weights tags (a job's <c>weights.source</c>).
/// </summary>
public sealed record ModelBuilderView(string Name, string HeadPath, bool Bundled, string? DefaultWeights, PreprocessingView Preprocessing,
    IReadOnlyList<WeightsView> Weights)
{
    public static ModelBuilderView Of(ModelFamily family) => new(family.Name, family.HeadPath, family.HasBundledWeights, family.DefaultWeights,
        PreprocessingView.Of(family.Preprocessing), [.. family.Weights.Select(w => new WeightsView(w.Tag, w.Categories, w.NumParams, PreprocessingView.Of(w.Preprocessing)))]);
}

/// <param name="Categories">classes of the head the weights were trained with</param>
public sealed record WeightsView(string Tag, int Categories, long NumParams, PreprocessingView Preprocessing);

/// <summary>
/// <see cref="Preprocessing"/> by the names job specs and model cards use: the <see cref="CropSize"/> square input, the short side resized to
/// <see cref="ResizeSize"/> before the crop, the resize mode, the interpolation, channel order and per-channel mean and std (after scaling
/// to 0–1 unless <see cref="Scale"/> says otherwise), and whether a per-pixel mean image is subtracted first.
/// </summary>
public sealed record PreprocessingView(int CropSize, int ResizeSize, string Resize, string Interpolation, string ChannelOrder, float Scale,
    IReadOnlyList<float> Mean, IReadOnlyList<float> Std, bool MeanImage)
{
    public static PreprocessingView Of(Preprocessing p) => new(p.CropSize, p.ResizeSize, ResizeModes.Choices[p.Resize].Name,
        Interpolations.Choices[p.Interpolation].Name, p.ChannelOrder.ToString().ToLowerInvariant(), p.Scale, p.Mean, p.Std, p.SubtractsMeanImage);
}
