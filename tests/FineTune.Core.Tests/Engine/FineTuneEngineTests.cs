using FineTune.Core.Data;
using FineTune.Core.Engine;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Engine;

/// <summary>
/// The engine reuses built models between calls (the backbone of a pooled model is random until loaded): what it
/// exports and scores must be what a model built from scratch for the checkpoint gives.
/// </summary>
public sealed class FineTuneEngineTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("engine-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ExportAndEvaluationAfterTrainingAreThoseOfAModelBuiltForTheCheckpoint(bool featureCache)
    {
        var family = ModelRegistry.Get("resnet18-cntk");
        string weights = Path.Combine(_root, "weights.safetensors");
        var pretrained = family.BundledWeights!();
        StateDictFile.Write(pretrained, weights, StateDictFormat.Safetensors);
        foreach (var tensor in pretrained.Values) tensor.Dispose();
        var dataset = DatasetLoader.Load(TuxPaintStamps.CreateImageFolder(Path.Combine(_root, "data"), perClass: 5, ["animals", "food"]),
            new DatasetOptions { ValidationFraction = 0.4 });
        var recipe = new Recipe(family.Name, weights, FreezeMode.Head, HeadDropout: 0, ResizeMode.Pad,
            new TrainingOptions { Epochs = 1, BatchSize = 4, UseFeatureCache = featureCache });
        using var engine = new FineTuneEngine();

        var (prepared, cached) = engine.Prepare(recipe, dataset, default);
        using var _ = cached;
        Assert.Equal(featureCache, prepared.FeatureCache);
        Assert.Equal(featureCache, cached is not null);
        var state = engine.Train(recipe, dataset, null, cached, maxSteps: 100, default).State;
        using var exported = new MemoryStream();
        engine.Export(recipe, dataset, state, new Dictionary<StateDictFormat, Stream> { [StateDictFormat.Safetensors] = exported });
        var evaluation = engine.Evaluate(recipe, dataset, state, cached, default);

        using var scope = NewDisposeScope();
        var published = StateDictFile.Read(exported);
        using var reference = FineTuneModel.Create(family, dataset.ClassCount, seed: 0);
        var expected = StateDictFile.Read(weights);
        expected.Remove("fc.weight");
        expected.Remove("fc.bias");
        using (var trained = new MemoryStream(state.Parts[TrainingSnapshot.ModelPart]))
            foreach (var (key, tensor) in StateDictFile.Read(trained)) expected[key] = tensor;
        // The pretrained file carries no BatchNorm batch counters, which nothing reads in eval mode.
        Assert.Equal(expected.Keys.Order(), published.Keys.Where(k => !k.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).Order());
        foreach (var (key, tensor) in expected)
            Assert.True(tensor.eq(published[key]).all().item<bool>(), $"{key} differs from the pretrained weights and the checkpoint");

        PretrainedWeights.LoadAll(reference, published);
        reference.EvalMode();
        var source = new FileImageSource(dataset.Validation, recipe.Preprocessing);
        using (no_grad())
        {
            var predictions = reference.Forward(source.Range(0, source.Count)).argmax(1).data<long>().ToArray();
            double accuracy = predictions.Where((p, i) => p == dataset.Validation[i].Label).Count() / (double)predictions.Length;
            Assert.Equal(accuracy, evaluation.Top1Accuracy, 9);
        }
    }
}
