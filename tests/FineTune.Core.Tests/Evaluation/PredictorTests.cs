using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Evaluation;

public sealed class PredictorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("predictor-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The bundled CNTK backbone with a seeded 3-class head: real features, so each photo gets its own probabilities.</summary>
    private Predictor LoadPredictor()
    {
        var family = ModelRegistry.Get(CntkResNet18.FamilyName);
        string weights = Path.Combine(_dir, "model.safetensors");
        using (var model = FineTuneModel.Create(family, numClasses: 3, seed: 7))
        {
            PretrainedWeights.LoadBackbone(model, family.BundledWeights!());
            StateDictFile.Write(model.Module.state_dict(), weights, StateDictFormat.Safetensors);
        }
        return Predictor.Load(family, ["a", "b", "c"], weights, family.Preprocessing);
    }

    [Fact]
    public void BatchesGiveOneAtATimesProbabilitiesInOrderWithBadImagesAsTheirOwnOutcome()
    {
        string notAnImage = Path.Combine(_dir, "notes.png");
        File.WriteAllText(notAnImage, "not a picture");
        string[] photos = [.. TuxPaintStamps.Images("animals", 3), .. TuxPaintStamps.Images("food", 2), .. TuxPaintStamps.Images("town", 2)];
        string[] images = [photos[0], photos[1], notAnImage, .. photos[2..], Path.Combine(_dir, "missing.jpg")];
        using var predictor = LoadPredictor();

        var single = photos.ToDictionary(p => p, p => predictor.Predict(p, 3));
        // Batches of 3 over 9 images: a bad image inside a batch, the last batch with a missing file.
        var outcomes = predictor.PredictAll(images, 3, batchSize: 3).ToList();

        Assert.Equal(images, outcomes.Select(o => o.Image));
        Assert.Equal("not an image", outcomes[2].Error);
        Assert.Null(outcomes[2].Classes);
        Assert.NotNull(outcomes[^1].Error);
        Assert.True(single.Values.Select(s => s[0].Class).Distinct().Count() > 1, "the photos should not all get the same class");
        foreach (var outcome in outcomes.Where(o => o.Error is null))
        {
            var expected = single[outcome.Image];
            Assert.Equal(expected.Select(p => p.Class), outcome.Classes!.Select(p => p.Class));
            foreach (var (e, a) in expected.Zip(outcome.Classes!))
                Assert.True(Math.Abs(e.Probability - a.Probability) <= 1e-5, $"{outcome.Image} {e.Class}: one at a time {e.Probability}, batched {a.Probability}");
        }
        Assert.Throws<InvalidImageException>(() => predictor.PredictBatch([photos[0], notAnImage], 1));
    }

    [Fact]
    public void ACallerThatStopsEarlyLeavesNothingRunning()
    {
        using var predictor = LoadPredictor();
        var photos = TuxPaintStamps.Images("plants", 4);
        int read = 0;
        IEnumerable<string> Counted()
        {
            foreach (var photo in photos)
            {
                Interlocked.Increment(ref read);
                yield return photo;
            }
        }
        var first = predictor.PredictAll(Counted(), 1, batchSize: 1).First();
        Assert.Equal(photos[0], first.Image);
        // One batch classified, at most one more decoded ahead: never the whole input.
        Assert.InRange(read, 1, 2);
    }
}
