using FineTune.Core.Models;
using FineTune.Core.Weights;

namespace FineTune.Core.Tests.Weights;

public sealed class VisionTransformerWeightsTests
{
    /// <summary>
    /// torchvision's published ViT checkpoints name the MLP's linears mlp.linear_1 and mlp.linear_2, as before torchvision
    /// 0.14: they load into mlp.0 and mlp.3, as torchvision's load hook renames them.
    /// </summary>
    [Fact]
    public void ACheckpointWithThePublishedMlpNamesLoads()
    {
        var family = ModelRegistry.Get("vit_b_32");
        using var source = FineTuneModel.Create(family, numClasses: 3, seed: 1);
        using var target = FineTuneModel.Create(family, numClasses: 3, seed: 2);
        var published = source.Module.state_dict().ToDictionary(
            kv => kv.Key.Replace(".mlp.0.", ".mlp.linear_1.", StringComparison.Ordinal).Replace(".mlp.3.", ".mlp.linear_2.", StringComparison.Ordinal),
            kv => kv.Value);
        Assert.Contains(published.Keys, key => key.Contains(".mlp.linear_1.", StringComparison.Ordinal));

        PretrainedWeights.LoadBackbone(target, published);

        var loaded = target.Module.state_dict();
        Assert.All(source.Module.state_dict().Where(kv => !family.IsHeadKey(kv.Key)),
            kv => Assert.True(kv.Value.allclose(loaded[kv.Key], rtol: 0, atol: 0), kv.Key));
    }
}
