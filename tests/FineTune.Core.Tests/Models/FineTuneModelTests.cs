using FineTune.Core.Models;
using FineTune.Core.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

public class FineTuneModelTests
{
    [Theory]
    [InlineData("resnet18", "fc", 512)]
    [InlineData("vgg11", "classifier.6", 4096)]
    [InlineData("mobilenet_v3_small", "classifier.3", 1024)]
    [InlineData("densenet121", "classifier", 1024)]
    [InlineData("alexnet", "classifier.6", 4096)]
    public void HeadIsReplacedBySizedLinearUnderTorchvisionNames(string name, string head, long inFeatures)
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get(name), numClasses: 3, seed: 1);
        model.EvalMode();

        using (no_grad())
            Assert.Equal(new long[] { 2, 3 }, model.Forward(randn(2, 3, 64, 64)).shape);
        var state = model.Module.state_dict();
        Assert.Equal(new[] { 3, inFeatures }, state[$"{head}.weight"].shape);
        Assert.Equal(new long[] { 3 }, state[$"{head}.bias"].shape);
        Assert.Single(model.Module.named_modules(), m => m.name == head);
    }

    [Fact]
    public void SameSeedGivesIdenticalModelsAndAnotherSeedDoesNot()
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get("resnet18");
        using var a = FineTuneModel.Create(family, 4, seed: 42);
        using var b = FineTuneModel.Create(family, 4, seed: 42);
        using var c = FineTuneModel.Create(family, 4, seed: 43);
        foreach (var (key, value) in a.Module.state_dict())
            Assert.True(value.SameAs(b.Module.state_dict()[key]), key);
        Assert.False(((Linear)a.Head).weight!.SameAs(((Linear)c.Head).weight!));
    }

    /// <summary>A built model reused for another run's cached-feature training gets the heads a fresh build would have.</summary>
    [Theory]
    [InlineData("resnet18")]
    [InlineData("inception_v3")]
    public void ResetHeadsGivesTheHeadsOfAFreshBuild(string name)
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get(name);
        using var reused = FineTuneModel.Create(family, 4, seed: 43);
        using (no_grad()) ((Linear)reused.Head).weight!.add_(1);
        using var fresh = FineTuneModel.Create(family, 4, seed: 42);

        reused.ResetHeads(42);

        foreach (var path in (string[])[family.HeadPath, .. family.AuxiliaryHeadPaths])
            foreach (var suffix in new[] { ".weight", ".bias" })
                Assert.True(reused.Module.state_dict()[path + suffix].SameAs(fresh.Module.state_dict()[path + suffix]), path + suffix);
    }

    [Fact]
    public void HeadInitialisationIsTorchsLinearUnderTheSeed()
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 5, seed: 9);
        Linear expected;
        lock (FineTune.Core.Runtime.TorchRandom.Gate)
        {
            manual_seed(9);
            expected = nn.Linear(512, 5);
        }
        Assert.True(((Linear)model.Head).weight!.SameAs(expected.weight!));
        Assert.True(((Linear)model.Head).bias!.SameAs(expected.bias!));
    }

    [Fact]
    public void HeadDropoutActsWhileTrainingOnlyAndKeepsTheHeadAPlainLinear()
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 3, seed: 1, headDropout: 0.5);
        model.Freeze(FreezeMode.Head);
        var batch = randn(4, 3, 64, 64);

        model.TrainMode();
        var a = model.Forward(batch);
        var b = model.Forward(batch);
        model.EvalMode();
        var c = model.Forward(batch);
        var d = model.Forward(batch);

        Assert.False(a.SameAs(b), "dropout should make two training passes differ");
        Assert.True(c.SameAs(d), "no dropout in eval mode");
        Assert.IsType<Linear>(ModuleAt(model, "fc"));
        Assert.Equal(["fc.weight", "fc.bias"], model.Module.state_dict().Keys.Where(k => k.StartsWith("fc", StringComparison.Ordinal)));
    }

    private static nn.Module ModuleAt(FineTuneModel model, string path) =>
        model.Module.named_modules().Single(m => m.name == path).module;

    [Fact]
    public void HeadModeTrainsOnlyTheHead()
    {
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 5, seed: 1);
        var report = model.Freeze(FreezeMode.Head);

        Assert.Equal(512 * 5 + 5, report.TrainableParameters);
        Assert.Equal(model.Module.parameters().Sum(p => p.numel()), report.TotalParameters);
        Assert.Empty(report.TrainableStages);
        Assert.All(model.Module.named_parameters(), p => Assert.Equal(p.name.StartsWith("fc.", StringComparison.Ordinal), p.parameter.requires_grad));
    }

    [Fact]
    public void LastStagesModeTrainsTheLastStagesAndTheHead()
    {
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 5, seed: 1);
        Assert.Equal(["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"], model.Stages);

        var report = model.Freeze(FreezeMode.Parse("last:2"));

        Assert.Equal(["layer3", "layer4"], report.TrainableStages);
        Assert.All(model.Module.named_parameters(), p => Assert.Equal(
            p.name.StartsWith("fc.", StringComparison.Ordinal) || p.name.StartsWith("layer3.", StringComparison.Ordinal) || p.name.StartsWith("layer4.", StringComparison.Ordinal), p.parameter.requires_grad));
    }

    [Fact]
    public void FullModeTrainsEverything()
    {
        using var model = FineTuneModel.Create(ModelRegistry.Get("mobilenet_v2"), 5, seed: 1);
        var report = model.Freeze(FreezeMode.Full);
        Assert.Equal(report.TotalParameters, report.TrainableParameters);
        Assert.Equal(model.Stages, report.TrainableStages);
    }

    [Fact]
    public void StagesOfFeatureBasedFamiliesAreTheFeatureBlocksThenTheClassifierBody()
    {
        using var vgg = FineTuneModel.Create(ModelRegistry.Get("vgg11"), 2, seed: 1);
        Assert.Equal("classifier", vgg.Stages[^1]);
        Assert.StartsWith("features.", vgg.Stages[0]);
        using var densenet = FineTuneModel.Create(ModelRegistry.Get("densenet121"), 2, seed: 1);
        Assert.Equal(["features.conv0", "features.norm0", "features.denseblock1", "features.transition1",
            "features.denseblock2", "features.transition2", "features.denseblock3", "features.transition3",
            "features.denseblock4", "features.norm5"], densenet.Stages);
    }

    [Theory]
    [InlineData("last:0")]
    [InlineData("last:x")]
    [InlineData("heads")]
    [InlineData("")]
    public void BadFreezeModesAreRejectedWithTheAllowedOnes(string text)
    {
        var error = Assert.Throws<FormatException>(() => FreezeMode.Parse(text));
        Assert.Contains("head, last:N (N >= 1) or full", error.Message);
    }

    [Fact]
    public void FrozenBatchNormKeepsItsRunningStatisticsWhileTraining()
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 3, seed: 1);
        model.Freeze(FreezeMode.Parse("last:1"));
        var frozenBefore = model.Module.state_dict()["layer3.1.bn2.running_mean"].clone();
        var trainableBefore = model.Module.state_dict()["layer4.1.bn2.running_mean"].clone();

        model.TrainMode();
        var optimizer = optim.SGD(model.Module.parameters().Where(p => p.requires_grad), 0.01, momentum: 0.9);
        var loss = nn.functional.cross_entropy(model.Forward(randn(4, 3, 64, 64)), tensor(new long[] { 0, 1, 2, 0 }));
        loss.backward();
        optimizer.step();

        Assert.True(model.Module.state_dict()["layer3.1.bn2.running_mean"].SameAs(frozenBefore), "a frozen BatchNorm's statistics moved");
        Assert.False(model.Module.state_dict()["layer4.1.bn2.running_mean"].SameAs(trainableBefore), "a trainable BatchNorm's statistics did not move");
        Assert.All(model.Module.modules().OfType<BatchNorm2d>(), bn => Assert.Equal(bn.parameters().Any(p => p.requires_grad), bn.training));
    }

    [Theory]
    [InlineData("resnet18", "last:1")]
    [InlineData("mobilenet_v2", "last:2")]
    [InlineData("resnet18", "head")]
    public void FusingTheFrozenPartKeepsTheLossTheGradientsAndTheLayoutOfWhatTrains(string name, string freeze)
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get(name);
        using var plain = FineTuneModel.Create(family, 3, seed: 5);
        // Batch norms away from the identity, their statistics those of a batch, so that a misfolded one shows.
        SmallModels.RandomiseBatchNorms(plain, new Generator(3));
        plain.Module.train();
        using (no_grad()) plain.Forward(randn([8, 3, 64, 64], generator: new Generator(4)));
        using var fused = FineTuneModel.Create(family, 3, seed: 5);
        fused.Module.load_state_dict(plain.Module.state_dict());
        plain.Freeze(FreezeMode.Parse(freeze));
        fused.Freeze(FreezeMode.Parse(freeze));

        Assert.True(fused.FuseFrozenPart());
        Assert.NotEqual(plain.Module.state_dict().Keys.Order(), fused.Module.state_dict().Keys.Order());
        var input = randn([4, 3, 64, 64], generator: new Generator(5));
        var labels = tensor(new long[] { 0, 1, 2, 0 });
        var losses = new[] { plain, fused }.Select(model =>
        {
            model.TrainMode();
            // Each draws the same dropout masks (MobileNetV2's classifier).
            manual_seed(11);
            var loss = nn.functional.cross_entropy(model.Forward(input), labels);
            loss.backward();
            return loss.item<float>();
        }).ToArray();

        Assert.Equal(losses[0], losses[1], 1e-4);
        var trained = plain.Module.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Assert.Equal(trained.Select(p => p.name), fused.Module.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name));
        var fusedParameters = fused.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (key, parameter) in trained)
        {
            var gradient = fusedParameters[key].grad!;
            double largest = parameter.grad!.abs().max().item<float>();
            Assert.True((gradient - parameter.grad).abs().max().item<float>() <= 1e-3 * Math.Max(largest, 1e-3), $"{key}: gradients differ");
            // A checkpoint stores what trains and its optimizer's state as contiguous tensors.
            Assert.True(fusedParameters[key].is_contiguous() && gradient.is_contiguous(), $"{key} is not contiguous");
        }
        // Fused for this freeze mode only.
        fused.Freeze(FreezeMode.Parse(freeze));
        Assert.Throws<InvalidOperationException>(() => fused.Freeze(FreezeMode.Full));
    }

    [Fact]
    public void NothingFrozenHasNothingToFuse()
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 3, seed: 1);
        model.Freeze(FreezeMode.Full);
        Assert.False(model.FuseFrozenPart());
    }

    [Fact]
    public void UnknownFamilyNamesTheKnownOnes()
    {
        var error = Assert.Throws<UnknownModelFamilyException>(() => ModelRegistry.Get("resnet19"));
        Assert.Contains("resnet18", error.Message);
        Assert.Contains("densenet201", error.Message);
    }

    [Fact]
    public void CheckpointOfAnotherFamilyFailsNamingTheFirstMismatchingKeys()
    {
        using var scope = NewDisposeScope();
        using var resnet = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 2, seed: 1);
        using var other = FineTuneModel.Create(ModelRegistry.Get("resnet50"), 2, seed: 1);

        var error = Assert.Throws<InvalidWeightsException>(() => PretrainedWeights.LoadBackbone(resnet, other.Module.state_dict()));

        Assert.Contains("does not fit resnet18", error.Message);
        Assert.Contains("tensors the model does not have", error.Message);
        Assert.DoesNotContain("conv3", error.Message);
        Assert.Contains("wrong shape layer1.0.conv1.weight (checkpoint [64, 64, 1, 1], model [64, 64, 3, 3])", error.Message);
        Assert.Contains(" more", error.Message);
    }

    [Fact]
    public void BackboneLoadIgnoresTheCheckpointHeadWhateverItsSize()
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get("resnet18");
        using var source = FineTuneModel.Create(family, 1000, seed: 1);
        using var target = FineTuneModel.Create(family, 7, seed: 2);
        var head = ((Linear)target.Head).weight!.clone();

        PretrainedWeights.LoadBackbone(target, source.Module.state_dict());

        Assert.True(((Linear)target.Head).weight!.SameAs(head));
        Assert.True(target.Module.state_dict()["layer4.1.conv2.weight"].SameAs(source.Module.state_dict()["layer4.1.conv2.weight"]));
    }

    [Fact]
    public void InceptionAuxiliaryHeadIsSizedToTheClassesAsTorchvisionsButNotLoadedNorTrained()
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get("inception_v3");
        using var imageNet = FineTuneModel.Create(family, 1000, seed: 1);
        using var model = FineTuneModel.Create(family, 3, seed: 2);
        var aux = model.Module.state_dict()["AuxLogits.fc.weight"].clone();

        PretrainedWeights.LoadBackbone(model, imageNet.Module.state_dict());
        model.Freeze(FreezeMode.Head);

        Assert.Equal(new long[] { 3, 768 }, aux.shape);
        Assert.True(model.Module.state_dict()["AuxLogits.fc.weight"].SameAs(aux));
        Assert.True(model.Module.state_dict()["AuxLogits.conv1.conv.weight"].SameAs(imageNet.Module.state_dict()["AuxLogits.conv1.conv.weight"]));
        Assert.All(model.Module.named_parameters(), p => Assert.Equal(p.name.StartsWith("fc.", StringComparison.Ordinal), p.parameter.requires_grad));
    }

    [Theory]
    [InlineData("mobilenet_v3_small")]
    [InlineData("mobilenet_v3_large")]
    public void MobileNetV3ExcitationsUseTorchvisionsReLU(string name)
    {
        using var model = FineTuneModel.Create(ModelRegistry.Get(name), 2, seed: 1);
        var activations = model.Module.named_modules().Where(m => m.name.EndsWith(".activation", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(activations);
        Assert.All(activations, m => Assert.IsType<ReLU>(m.module));
    }
}
