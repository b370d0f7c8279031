using FineTune.Core.Data;
using FineTune.Core.Engine;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using FineTune.Testing;

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

    /// <summary>The tags trained at another size than the builder's 224 pixels (the SWAG end-to-end ones); vit_b_16's in CI.</summary>
    public static TheoryData<string, string> OtherSizes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var family in ModelRegistry.Families.Where(f => f.Architecture == "VisionTransformer" && (AllFamilies.Enabled || f.Name == "vit_b_16")))
                foreach (var tag in family.Weights.Where(w => w.Preprocessing.CropSize != family.Preprocessing.CropSize))
                    data.Add(family.Name, tag.Tag);
            return data;
        }
    }

    /// <summary>
    /// torchvision builds a ViT for its weights' image size (<c>image_size=weights.meta["min_size"]</c>): the layout for a
    /// tag's preprocessing has the parameters torchvision's meta counts for the tag, and the state-dict keys and shapes of
    /// the model the published script's constructor builds in PyTorch. One copy of the weights at a time (vit_h_14: 2.5 GB).
    /// </summary>
    [Theory]
    [MemberData(nameof(OtherSizes))]
    public void ATagAtAnotherSizeGetsTorchvisionsLayoutForIt(string name, string tagName)
    {
        var family = ModelRegistry.Get(name);
        var tag = TorchvisionWeights.Resolve(family, tagName)!;
        var sized = family.For(tag.Preprocessing);
        string[] ours;
        using (var module = sized.CreateImageNetLayout())
        {
            Assert.Equal(tag.NumParams, module.parameters().Sum(p => p.numel()));
            ours = [.. module.state_dict().Select(kv => $"{kv.Key} {string.Join(',', kv.Value.shape)}")];
        }
        string constructor = sized.PyTorchConstructor(tag.Categories);
        Assert.Contains($"image_size={tag.Preprocessing.CropSize}", constructor);
        Assert.Equal(PythonReference.Run("shapes", constructor).Split('\n').Select(line => line.Trim()), ours);
    }

    /// <summary>
    /// Weights fetched by hand (an offline machine, a mirror, an upload) keep torchvision's file name: the run takes that
    /// tag's preprocessing and the layout for its crop, as naming the tag would; any other name gets the builder's.
    /// </summary>
    [Theory]
    [InlineData("/data/weights/vit_b_16_swag-9ac1b537.pth")]
    [InlineData("https://mirror.example/models/vit_b_16_swag-9ac1b537.pth?sv=2024&sig=x")]
    [InlineData("blob:weights/vit_b_16_swag-9ac1b537.pth")]
    [InlineData("vit_b_16_swag-9ac1b537.pth")]
    [InlineData("/data/run#2/vit_b_16_swag-9ac1b537.pth")]
    [InlineData("C:\\weights\\vit_b_16_swag-9ac1b537.pth")]
    [InlineData("https://mirror.example/models%20v2/vit_b_16_swag%2D9ac1b537.pth#frag")]
    public void AWeightsFileWithTorchvisionsNameGetsItsTagsPreprocessing(string source)
    {
        var family = ModelRegistry.Get("vit_b_16");
        var tag = TorchvisionWeights.Resolve(family, "IMAGENET1K_SWAG_E2E_V1")!;
        var recipe = new Recipe("vit_b_16", "/cache/a797a71f.pth", FreezeMode.Head, 0, ResizeMode.CenterCrop, new TrainingOptions(), Weights: source);

        Assert.Equal(tag, TorchvisionWeights.ByFileName(family, source));
        Assert.Equal(tag.Preprocessing, recipe.Preprocessing);
        Assert.Contains("image_size=384", recipe.ModelFamily.PyTorchConstructor(2));
        Assert.Equal(family.Preprocessing, family.PreprocessingFor("/data/weights/my-vit_b_16_swag-9ac1b537.pth"));
        Assert.Equal(family.Preprocessing, family.PreprocessingFor("/data/vit_b_16_swag-9ac1b537.pth/"));
    }

    /// <summary>A file trained at another crop than the layout built says how to get the right one.</summary>
    [Fact]
    public void APositionEmbeddingOfAnotherCropIsRefusedSayingHowToNameTheWeights()
    {
        using var at384 = FineTuneModel.Create(ModelRegistry.Get("vit_b_32").For(Preprocessing.ImageNet(384, 384, Interpolation.Bicubic)), numClasses: 3, seed: 1);
        using var at224 = FineTuneModel.Create(ModelRegistry.Get("vit_b_32"), numClasses: 3, seed: 1);

        var error = Assert.Throws<InvalidWeightsException>(() => PretrainedWeights.LoadBackbone(at224, at384.Module.state_dict()));

        Assert.Contains("wrong shape encoder.pos_embedding (checkpoint [1, 145, 768], model [1, 50, 768])", error.Message);
        Assert.Contains("keep torchvision's file name, or name the weights by tag (IMAGENET1K_V1: vit_b_32-d86f8d99.pth, 224 px)", error.Message);
    }
}
